"""Whether the folder loads as its files say: checked for every target before any byte is sent.

:func:`check_loadable` reads only headers and small text files (never whole weights):

1. every weight file is what it claims: ``*.safetensors`` headers parse (8-byte little-endian
   length, then JSON) and the tensors' ``data_offsets`` end exactly at the file's end;
   ``.bin``/``.pth``/``.pt`` files are not text (a Git LFS pointer or an HTML error page saved
   instead of the weights); a sharded index names only shards that exist, and every shard is named;
2. ``config.json`` parses and has ``architectures``; its ``auto_map`` modules (and those of
   ``llm_config``/``vision_config``) are in the folder, with the files they import relatively;
   the tokenizer has a ``tokenizer_config.json`` and its vocabulary (``tokenizer.json``,
   ``tokenizer.model`` or vocab files);
3. the chat template is the one the template catalog matches for the config (a warning only,
   silenced by ``--allow-template-mismatch``);
4. the README.md's metadata parses as the hub parses it (YAML front matter).

Each problem is one line: the file (and line or field), what is wrong, ``Fix:`` and how.
"""
from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any, Mapping

from .folder import LocalFile

#: The largest header the safetensors format allows (100 MB).
MAX_HEADER = 100 * 1024 * 1024
#: Text files larger than this are not read (config, index, template, README, remote code).
MAX_TEXT = 16 * 1024 * 1024
INDEXES = {"model.safetensors.index.json": ".safetensors", "pytorch_model.bin.index.json": ".bin"}
VOCAB_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "merges.txt", "spiece.model",
               "sentencepiece.bpe.model", "qwen.tiktoken")
LFS_POINTER = b"version https://git-lfs.github.com/spec"
#: huggingface_hub's repocard.REGEX_YAML_BLOCK: how the hub finds a card's metadata.
YAML_BLOCK = re.compile(r"^(\s*---(?:\r\n|\r|\n))([\S\s]*?)((?:\r\n|\r|\n)---[ \t]*(\r\n|\n|$))")
_RELATIVE = re.compile(r"^[ \t]*from[ \t]+\.([A-Za-z_][\w.]*)[ \t]+import\b", re.M)
_DOWNLOAD_FIX = ("download the real file again (`git lfs pull` in the clone it came from, or "
                 "`huggingface-cli download`) and copy it in")


def _read_head(path: Path, n: int) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(n)


def _text_kind(head: bytes) -> str:
    """What a weight file that is really text is (``""`` when it looks binary)."""
    if head.startswith(LFS_POINTER):
        return "a Git LFS pointer (the weights were never downloaded)"
    low = head.lstrip().lower()
    if low.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")):
        return "an HTML page (an error page saved instead of the weights)"
    if not head or b"\0" in head:
        return ""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return ""
    if all(c.isprintable() or c in "\r\n\t" for c in text):
        return "text, not weights"
    return ""


def _safetensors(name: str, path: Path, size: int) -> str:
    """The problem with one safetensors file, or ``""``."""
    head = _read_head(path, 512)
    kind = _text_kind(head)
    if kind and (head.startswith(LFS_POINTER) or "HTML" in kind):
        return f"{name} is {kind}. Fix: {_DOWNLOAD_FIX}"
    if size < 8:
        return (f"{name} is {size} bytes, too short for a safetensors file (8-byte header length, then a JSON "
                f"header). Fix: {_DOWNLOAD_FIX}, or save the weights again")
    (length,) = struct.unpack("<Q", head[:8])
    if 8 + length > size:
        return (f"{name}: its header length ({length} bytes) runs past the end of the file ({size} bytes): "
                f"not a safetensors file, or truncated. Fix: {_DOWNLOAD_FIX}, or save the weights again")
    if length > MAX_HEADER:
        return f"{name}: its header length ({length} bytes) is over 100 MB. Fix: save the weights again"
    with open(path, "rb") as handle:
        handle.seek(8)
        raw = handle.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return (f"{name}: its safetensors header is not valid JSON ({exc}). "
                f"Fix: {_DOWNLOAD_FIX}, or save the weights again")
    if not isinstance(header, dict):
        return f"{name}: its safetensors header is not a JSON object. Fix: save the weights again"
    end = 0
    for key, info in header.items():
        if key == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
                and 0 <= offsets[0] <= offsets[1]):
            return f"{name}: tensor {key!r} has no valid data_offsets in its header. Fix: save the weights again"
        end = max(end, offsets[1])
    data = size - 8 - length
    if end != data:
        how = "the file is truncated" if end > data else "the file has bytes after its last tensor"
        return (f"{name}: its tensors end at data byte {end} but the file holds {data} data bytes ({how}). "
                f"Fix: {_DOWNLOAD_FIX}, or save the weights again")
    return ""


def _small_text(folder: Path, entry: LocalFile) -> str | None:
    try:
        if entry.size > MAX_TEXT:
            return None
        return entry.source(folder).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _weights(folder: Path, files: dict[str, LocalFile]) -> list[str]:
    problems = []
    for name, entry in files.items():
        path = entry.source(folder)
        try:
            if name.endswith(".safetensors"):
                problem = _safetensors(name, path, entry.size)
            elif name.endswith((".bin", ".pth", ".pt")):
                kind = _text_kind(_read_head(path, 1024))
                problem = f"{name} is {kind}. Fix: {_DOWNLOAD_FIX}" if kind else ""
            else:
                continue
        except OSError as exc:
            problem = f"cannot read {name} ({exc.strerror or exc}). Fix: check the permissions"
        if problem:
            problems.append(problem)
    for index, suffix in INDEXES.items():
        if index not in files:
            continue
        text = _small_text(folder, files[index])
        try:
            data = json.loads(text) if text is not None else None
        except ValueError as exc:
            problems.append(f"{index} is not valid JSON ({exc}). Fix: write the index again (save the model again)")
            continue
        wmap = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(wmap, dict):
            problems.append(f"{index} has no 'weight_map'. Fix: write the index again (save the model again)")
            continue
        prefix = index.rsplit("/", 1)[0] + "/" if "/" in index else ""
        named = {prefix + str(v) for v in wmap.values()}
        missing = sorted(n for n in named if n not in files)
        if missing:
            problems.append(f"{index} names shards that are not in the folder: {', '.join(missing[:8])}. "
                            "Fix: copy the missing shards in, or write the index again")
        shards = sorted(n for n in files if n.startswith(prefix) and "/" not in n[len(prefix):]
                        and n.endswith(suffix) and "-of-" in n[len(prefix):] and n not in named)
        if shards:
            problems.append(f"{', '.join(shards[:8])}: not named in {index}'s weight_map (a stray or misnamed "
                            f"shard). Fix: remove it, or write the index again so that it names every shard")
    return problems


def _auto_map_targets(config: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """``(field, auto class, reference)`` for each auto_map entry of the config and its sub-configs."""
    found = []
    for where, cfg in (("auto_map", config), ("llm_config.auto_map", config.get("llm_config")),
                       ("vision_config.auto_map", config.get("vision_config"))):
        amap = cfg.get("auto_map") if isinstance(cfg, Mapping) else None
        if not isinstance(amap, Mapping):
            continue
        for auto, ref in amap.items():
            for one in (ref if isinstance(ref, list) else [ref]):
                if isinstance(one, str) and one:
                    found.append((where, str(auto), one))
    return found


def _config(folder: Path, files: dict[str, LocalFile]) -> tuple[list[str], dict[str, Any] | None]:
    if "config.json" not in files:
        return [], None  # check_contents says it is missing
    text = _small_text(folder, files["config.json"])
    if text is None:
        return ["config.json cannot be read (or is over 16 MB). Fix: write it again (`vlhub convert`)"], None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        return [f"config.json line {exc.lineno}: not valid JSON ({exc.msg}). Fix: correct it, or write it again "
                "(`vlhub convert`)"], None
    if not isinstance(config, dict):
        return ["config.json is not a JSON object. Fix: write it again (`vlhub convert`)"], None
    problems = []
    if not config.get("architectures"):
        problems.append("config.json has no 'architectures' (transformers cannot tell which model class to load). "
                        'Fix: add it, e.g. "architectures": ["InternVLChatModel"]')
    seen: set[str] = set()
    queue: list[tuple[str, str]] = []  # (module file, who needs it)
    for where, auto, ref in _auto_map_targets(config):
        if "--" in ref:
            continue  # code in another repository ("org/repo--module.Class")
        module = ref.rsplit(".", 1)[0] if "." in ref else ref
        queue.append((module.replace(".", "/") + ".py", f"config.json {where} {auto} ({ref!r})"))
    while queue:
        module, needer = queue.pop(0)
        if module in seen:
            continue
        seen.add(module)
        if module not in files:
            problems.append(f"{needer} needs {module}, which is not in the folder. Fix: copy {module} "
                            "(remote code) from the base model into the folder")
            continue
        code = _small_text(folder, files[module]) or ""
        base = module.rsplit("/", 1)[0] + "/" if "/" in module else ""
        for imported in _RELATIVE.findall(code):
            if imported.startswith("."):
                continue  # from ..x (outside the folder's modules)
            queue.append((base + imported.replace(".", "/") + ".py", f"{module} (from .{imported} import ...)"))
    return problems, config


def _tokenizer(names: set[str]) -> list[str]:
    have = [n for n in ("tokenizer_config.json", *VOCAB_FILES) if n in names]
    if not have:
        return []  # check_contents says so
    problems = []
    if "tokenizer_config.json" not in names:
        problems.append("tokenizer_config.json is missing (AutoTokenizer needs it). Fix: copy the base model's "
                        "tokenizer_config.json in")
    if not any(n in names for n in VOCAB_FILES) and not any(n.endswith(".tiktoken") for n in names):
        problems.append("tokenizer_config.json has no vocabulary beside it (tokenizer.json, tokenizer.model or "
                        "vocab files). Fix: copy the base model's tokenizer files in")
    return problems


def folder_template(folder: Path, files: dict[str, LocalFile]) -> tuple[str, str] | None:
    """``(source file, chat template)`` the folder carries, or ``None``."""
    def from_value(value: Any) -> str | None:
        if isinstance(value, str):
            return value
        if isinstance(value, list):  # [{"name": "default", "template": ...}, ...]
            named = {v.get("name"): v.get("template") for v in value if isinstance(v, dict)}
            pick = named.get("default") or next(iter(named.values()), None)
            return pick if isinstance(pick, str) else None
        return None

    if "chat_template.jinja" in files:
        text = _small_text(folder, files["chat_template.jinja"])
        return ("chat_template.jinja", text) if text is not None else None
    for name in ("chat_template.json", "tokenizer_config.json"):
        if name in files:
            text = _small_text(folder, files[name])
            try:
                data = json.loads(text) if text is not None else None
            except ValueError:
                continue
            value = from_value(data.get("chat_template")) if isinstance(data, dict) else None
            if value:
                return name, value
    return None


def template_warning(folder: Path, files: dict[str, LocalFile], config: Mapping[str, Any] | None) -> str:
    """The warning when the folder's chat template is not the catalog's for its config (``""`` otherwise)."""
    if not isinstance(config, Mapping):
        return ""
    found = folder_template(folder, files)
    if found is None:
        return ""
    from vlhub.core import plugins
    from vlhub.core.errors import VlhubError

    try:
        catalog = dict(plugins.registry("chat_templates"))
    except VlhubError:
        return ""
    matched = [name for name, t in catalog.items() if _safe_match(t, config)]
    if not matched:
        return ""
    source, jinja = found
    expected = catalog[matched[0]]
    if jinja.strip() == str(getattr(expected, "jinja", "")).strip():
        return ""
    same = [name for name, t in catalog.items() if str(getattr(t, "jinja", "")).strip() == jinja.strip()]
    has = f"the catalog's {same[0]!r} template" if same else "a different template"
    return (f"WARNING: {source} carries {has}, not the catalog's {matched[0]!r} template that matches this model's "
            f"config.json; chats served from this folder would not be formatted as it was trained. Fix: write the "
            f"template again (`vlhub convert`), or pass --allow-template-mismatch to publish it as it is")


def _safe_match(template: Any, config: Mapping[str, Any]) -> bool:
    try:
        return bool(template.matches(config))
    except Exception:  # noqa: BLE001 - a plugin's rule that fails on an odd config matches nothing
        return False


def _card(folder: Path, files: dict[str, LocalFile]) -> list[str]:
    if "README.md" not in files:
        return []
    text = _small_text(folder, files["README.md"])
    if text is None:
        return []
    match = YAML_BLOCK.search(text)
    if not match:
        return []
    import yaml

    first = text[:match.start(2)].count("\n") + 1  # the file's line of the block's first line
    try:
        data = yaml.safe_load(match.group(2))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"line {first + mark.line}" if mark is not None else f"the metadata block (line {first - 1})"
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return [f"README.md {where}: its YAML metadata does not parse ({what}); the hub would reject the model "
                "card. Fix: correct the YAML between the '---' lines (quote values with ':' or '#'), or remove "
                "README.md to publish the generated card"]
    if data is not None and not isinstance(data, dict):
        return [f"README.md line {first}: its YAML metadata is not a mapping (key: value lines); the hub would "
                "reject the model card. Fix: write it as key: value lines, or remove README.md"]
    return []


def check_loadable(folder: Path, files: list[LocalFile],
                   options: Mapping[str, Any] | None = None) -> tuple[list[str], list[str]]:
    """``(problems, warnings)``: what stops the folder from loading as its files say.

    Args:
        folder: the model folder.
        files: the scan's files (only those are read; refused ones never are).
        options: the publish options (``allow_template_mismatch``).
    """
    folder = Path(folder)
    by_name = {f.path: f for f in files}
    problems = _weights(folder, by_name)
    config_problems, config = _config(folder, by_name)
    problems += config_problems
    problems += _tokenizer(set(by_name))
    problems += _card(folder, by_name)
    warnings = []
    if not (options or {}).get("allow_template_mismatch"):
        warning = template_warning(folder, by_name, config)
        if warning:
            warnings.append(warning)
    return problems, warnings
