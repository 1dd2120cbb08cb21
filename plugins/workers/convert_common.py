"""Helpers shared by the conversion workers (run inside the train or swift stage env)."""
from __future__ import annotations

import contextlib
import json
import random
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

import _protocol


def read_job(argv: list[str]) -> dict[str, Any]:
    """The job description: the JSON file named by the only argument."""
    if len(argv) != 2:
        _protocol.fail(f"usage: {Path(argv[0]).name} JOB.json", "this worker is started by vlhub", code=1)
    return json.loads(Path(argv[1]).read_text(encoding="utf-8"))


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Keep library prints (xtuner prints the whole model) off the JSON-lines channel."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


@contextlib.contextmanager
def loadable(folder: Path) -> Iterator[Path]:
    """``folder`` under a plain name: transformers names remote-code modules after the folder, and the
    temporary output folder's name starts with a dot."""
    with tempfile.TemporaryDirectory(prefix="vlhub-verify-") as tmp:
        link = Path(tmp) / "model"
        link.symlink_to(Path(folder).resolve(), target_is_directory=True)
        yield link


def verification_image(path: str | None) -> Any:
    """The image of the verification chat turn.

    Args:
        path: an image file, or ``None`` for a generated 448 x 448 gradient.
    Returns:
        A ``PIL.Image.Image`` in RGB.
    Raises:
        OSError: ``path`` cannot be read as an image.
    """
    from PIL import Image

    if path:
        return Image.open(path).convert("RGB")
    image = Image.new("RGB", (448, 448))
    image.putdata([(x % 256, y % 256, (x + y) % 256) for y in range(448) for x in range(448)])
    return image


def load_config(path: str) -> Any:
    """An xtuner config, with its folder and its ``code/`` folder importable (vlhub runs keep model code there)."""
    from mmengine.config import Config

    folder = Path(path).resolve().parent
    for extra in (folder / "code", folder.parent / "code", folder):
        if extra.is_dir() and str(extra) not in sys.path:
            sys.path.insert(0, str(extra))
    return Config.fromfile(path)


def copy_remote_code(base: Path, out: Path) -> list[str]:
    """Copy the base model's top-level ``*.py`` (remote code) that the output lacks."""
    copied = []
    for src in sorted(Path(base).glob("*.py")):
        if not (out / src.name).exists():
            shutil.copy2(src, out / src.name)
            copied.append(src.name)
    return copied


def set_chat_template(out: Path, jinja: str) -> None:
    """Store the chat template in the saved tokenizer (``tokenizer_config.json``)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(out), trust_remote_code=True)
    tokenizer.chat_template = jinja
    tokenizer.save_pretrained(str(out))


def write_generation_config(out: Path, base: Path, stop_words: list[str]) -> list[int]:
    """``generation_config.json`` whose ``eos_token_id`` lists the template's stop tokens; returns them."""
    from transformers import AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(str(out), trust_remote_code=True)
    config = None
    for folder in (out, base):
        if (Path(folder) / "generation_config.json").exists():
            config = GenerationConfig.from_pretrained(str(folder))
            break
    config = config or GenerationConfig()
    eos = config.eos_token_id
    ids = [] if eos is None else list(eos) if isinstance(eos, (list, tuple)) else [eos]
    for word in stop_words:
        token = tokenizer.convert_tokens_to_ids(word)
        if token is None or token == tokenizer.unk_token_id:
            _protocol.fail(f"the tokenizer has no stop token {word!r} of the chat template",
                           "choose the template that matches the model (--template)")
        if token not in ids:
            ids.append(token)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    config.eos_token_id = ids
    if config.pad_token_id is None and tokenizer.pad_token_id is not None:
        config.pad_token_id = tokenizer.pad_token_id
    config.save_pretrained(str(out))
    return ids


def finish_folder(base: Path, out: Path, template: Mapping[str, Any]) -> tuple[list[str], list[int]]:
    """What xtuner's save leaves out: remote code, the chat template, stop tokens; returns (copied, stop ids)."""
    copied = copy_remote_code(base, out)
    set_chat_template(out, template["jinja"])
    return copied, write_generation_config(out, base, template["stop_words"])


def lora_scale(lora: Any) -> float | None:
    """``lora_alpha / r`` (``/ sqrt(r)`` with rsLoRA) of a LoraConfig dict, None without LoRA."""
    if lora is None:
        return None
    r, alpha = lora.get("r", 8), lora.get("lora_alpha", 8)
    return alpha / (r ** 0.5) if lora.get("use_rslora") else alpha / r


def _official_key(lora_key: str) -> str:
    """``model.language_model.base_model.model.X.lora_A.default.weight`` -> ``language_model.X.weight``."""
    key = lora_key.split(".lora_A.")[0] + ".weight"
    return key.replace("base_model.model.", "", 1)


def _tensors(folder: Path, keys: set[str]) -> dict[str, Any]:
    """Some tensors of a saved model folder (safetensors or PyTorch ``.bin`` shards)."""
    import torch
    from safetensors import safe_open

    found: dict[str, Any] = {}
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            found.update({k: handle.get_tensor(k) for k in handle.keys() if k in keys})
    for path in sorted(folder.glob("*.bin")):
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        found.update({k: v for k, v in state.items() if k in keys})
    return found


def check_merge(state: Mapping[str, Any], part: str, wrapper: str, base: Path, out: Path, scale: float,
                samples: int, seed: int = 0) -> dict[str, Any]:
    """Check ``merged == base + scale * B @ A`` on sampled LoRA layers whose keys start with ``part``.

    ``state`` is the training checkpoint (LoRA A/B tensors), ``base`` and ``out`` the model folders
    before and after merging; ``wrapper`` (``model.`` or ``llm.``) is the prefix xtuner's model adds.
    """
    pairs = sorted(k for k in state if ".lora_A." in k and k.startswith(part))
    chosen = random.Random(seed).sample(pairs, min(samples, len(pairs)))
    names = {k: _official_key(k[len(wrapper):]) for k in chosen}
    before, after = _tensors(base, set(names.values())), _tensors(out, set(names.values()))
    rows = []
    for key, name in names.items():
        a, b = state[key].float(), state[key.replace(".lora_A.", ".lora_B.")].float()
        delta = scale * (b @ a)
        expected = before[name].float() + delta
        merged = after[name].float()
        tolerance = 2.0 ** -6 * float(expected.abs().max()) + 1e-6   # bf16/fp16 rounding of the saved weight
        error = float((merged - expected).abs().max())
        rows.append({"tensor": name, "max_error": error, "tolerance": tolerance,
                     "max_delta": float(delta.abs().max()), "ok": error <= tolerance})
    return {"ok": bool(rows) and all(r["ok"] for r in rows), "checked": rows}
