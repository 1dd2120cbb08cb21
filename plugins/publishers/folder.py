"""The model folder as a publish sees it: its files, which go through LFS, content checks, hashes.

Nothing here writes into the model folder. Hashes are cached outside it (keyed by path,
size, mtime and inode), so an unchanged folder is never read twice.
"""
from __future__ import annotations

import errno
import fnmatch
import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from vlhub.core.errors import BadInput
from vlhub.core.fsutil import atomic_write_json, read_cache

#: Weights go through LFS by name; any other file over BIG_FILE does too.
LFS_PATTERNS = ("*.safetensors", "*.bin", "*.pth", "*.pt", "*.model", "*.onnx", "*.gguf")
BIG_FILE = 10 * 1024 * 1024
#: Never published: VCS data, caches, resume trackers, editor and notebook litter.
SKIP_DIRS = frozenset({".git", ".cache", ".ms_upload_cache", "__pycache__", ".ipynb_checkpoints"})
SKIP_FILES = frozenset({".DS_Store", ".msc", ".mdl", ".mv"})
CHUNK = 4 * 1024 * 1024
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".gguf")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "vocab.json")


@dataclass(frozen=True)
class LocalFile:
    """One file of the model folder (``path`` is relative, with ``/``; ``real`` is where its bytes are read).

    ``real`` is the file's resolved absolute path: for a file reached through symbolic
    links, the regular file at the end of the chain. Every publisher reads and sends the
    content found there, never a link.
    """

    path: str
    size: int
    mtime_ns: int
    inode: int
    lfs: bool
    real: str = ""

    @property
    def stamp(self) -> list[int]:
        """What must not change for a cached hash to stay valid."""
        return [self.size, self.mtime_ns, self.inode]

    def source(self, folder: Path) -> Path:
        """The path to read this file's content from."""
        return Path(self.real) if self.real else Path(folder) / self.path


@dataclass
class FolderScan:
    """What :func:`scan` found: the files to send and what refuses the folder.

    ``outside`` names every link (``path -> target``) that leads out of the folder and was
    followed (``--follow-symlinks``); ``links`` counts the entries reached through a
    symbolic link (all sent as their content).
    """

    files: list[LocalFile]
    problems: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    links: int = 0
    refused: set[str] = field(default_factory=set)


def is_lfs(path: str, size: int) -> bool:
    """Whether a file goes through LFS: a weight pattern or over 10 MB."""
    name = path.rsplit("/", 1)[-1]
    return size > BIG_FILE or any(fnmatch.fnmatch(name, p) for p in LFS_PATTERNS)


#: The fix for a link that leads out of the folder (shown in the preflight and in docs/publishing.md).
OUTSIDE_FIX = "remove the link, copy the files in, or rerun with --follow-symlinks to send them"
_KINDS = ((stat.S_ISFIFO, "named pipe"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
          (stat.S_ISBLK, "block device"))


def _names(items: list[tuple[str, str]], sep: str, limit: int = 8) -> str:
    """``'path' -> 'target'`` (or ``'path' (kind)``) for each item, quoted so that no name runs into the text."""
    shown = ", ".join(f"{path!r}{sep}{detail!r}" if sep == " -> " else f"{path!r} ({detail})"
                      for path, detail in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def scan(folder: Path, follow_symlinks: bool = False) -> FolderScan:
    """Every publishable file under ``folder``, sorted, and what stops the folder from being published.

    One rule for every publisher: an entry (file or folder, through any chain of links)
    that resolves outside ``folder`` is refused unless ``follow_symlinks``; a folder that
    contains itself through links (a loop), a broken link and anything that is not a
    regular file or folder (named pipe, socket, device) are refused with the path. Files
    are only ``lstat``/``stat``-ed here, never opened. Linked files are sent as content.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInput(f"{folder} is not a folder", "give the model folder written by `vlhub convert`")
    root = os.path.realpath(folder)
    result = FolderScan([])
    outside: list[tuple[str, str]] = []  # (path, where it resolves)
    loops: list[tuple[str, str]] = []  # (path, link target)
    dangling: list[tuple[str, str]] = []  # (path, link target)
    special: list[tuple[str, str]] = []  # (path, kind)
    unreadable: list[tuple[str, str]] = []  # (path, why)

    def inside(real: str) -> bool:
        return real == root or real.startswith(root.rstrip(os.sep) + os.sep)

    def walk(path: str, rel: str, real_dir: str, out: bool, ancestors: frozenset[tuple[int, int]]) -> None:
        try:
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            unreadable.append((rel or ".", str(exc.strerror or exc)))
            return
        for entry in entries:
            name = entry.name
            relp = f"{rel}/{name}" if rel else name
            try:
                link = entry.is_symlink()
                if link:
                    target = os.readlink(entry.path)
                    try:
                        st = os.stat(entry.path)  # follows the whole chain
                    except FileNotFoundError:
                        if name not in SKIP_FILES and name not in SKIP_DIRS:
                            dangling.append((relp, target))
                        continue
                    except OSError as exc:
                        if exc.errno == errno.ELOOP:
                            loops.append((relp, target))
                        else:
                            unreadable.append((relp, str(exc.strerror or exc)))
                        continue
                    real = os.path.realpath(entry.path)
                    leaves = not inside(real)
                else:
                    st = entry.stat(follow_symlinks=False)
                    real, leaves = os.path.join(real_dir, name), out
            except OSError as exc:
                unreadable.append((relp, str(exc.strerror or exc)))
                continue
            if stat.S_ISDIR(st.st_mode):
                if name in SKIP_DIRS:
                    continue
                if (st.st_dev, st.st_ino) in ancestors:
                    loops.append((relp, target if link else "(bind mount)"))
                    continue
                if link and leaves and not out:
                    outside.append((relp, real))
                    if not follow_symlinks:
                        result.refused.add(relp)
                        continue
                walk(entry.path, relp, real, leaves, ancestors | {(st.st_dev, st.st_ino)})
                continue
            if name in SKIP_FILES:
                continue
            if not stat.S_ISREG(st.st_mode):
                kind = next((k for test, k in _KINDS if test(st.st_mode)), "special file")
                special.append((relp, kind))
                result.refused.add(relp)
                continue
            if link and leaves and not out:
                outside.append((relp, real))
                if not follow_symlinks:
                    result.refused.add(relp)
                    continue
            if link or out:
                result.links += 1
            result.files.append(LocalFile(relp, st.st_size, st.st_mtime_ns, st.st_ino, is_lfs(relp, st.st_size), real))

    root_st = os.stat(root)
    walk(str(folder), "", root, False, frozenset({(root_st.st_dev, root_st.st_ino)}))
    result.files.sort(key=lambda f: f.path)
    if outside and not follow_symlinks:
        result.problems.append(f"symbolic links lead outside the model folder: {_names(outside, ' -> ')}; "
                               f"nothing was sent. Fix: {OUTSIDE_FIX}")
    elif outside:
        result.outside = [f"{path} -> {real}" for path, real in outside]
    if loops:
        result.refused.update(path for path, _ in loops)
        result.problems.append(f"symbolic link loop (a folder that contains itself): {_names(loops, ' -> ')}. "
                               "Fix: remove the link")
    if dangling:
        result.refused.update(path for path, _ in dangling)
        result.problems.append(f"broken symbolic links (their target does not exist): {_names(dangling, ' -> ')}. "
                               "Fix: restore the target, copy the file in, or remove the link")
    if special:
        result.problems.append(f"not a regular file (never opened): {_names(special, '')}. "
                               "Fix: remove it from the model folder")
    if unreadable:
        result.problems.append(f"cannot read {_names(unreadable, '')}. Fix: check the permissions")
    return result


def refuse(scanned: FolderScan, label: str) -> None:
    """Raise when the folder changed after its preflight into one the preflight refuses (nothing is sent)."""
    if scanned.problems:
        raise BadInput(f"{label}: the folder changed since its preflight: " + "; ".join(scanned.problems))


def check_contents(folder: Path, files: list[LocalFile],
                   refused: set[str] | frozenset[str] = frozenset()) -> tuple[list[str], dict[str, object]]:
    """Problems that make the folder unusable by others, and what was found.

    ``refused`` (paths the scan already refused, with their own problem line) count as
    present here, so that a refused ``config.json`` link is not reported twice; they are
    never read.
    """
    names = {f.path for f in files}
    present = names | set(refused)
    weights = [p for p in sorted(present) if p.endswith(WEIGHT_SUFFIXES)]
    tokenizer = [n for n in TOKENIZER_FILES if n in present]
    template = chat_template_source(folder, names, {f.path: f for f in files})
    if not template and refused & {"tokenizer_config.json", "chat_template.jinja", "chat_template.json"}:
        template = "(refused)"
    checks: dict[str, object] = {"config": "config.json" in names, "weights": len(weights),
                                 "tokenizer": tokenizer, "chat_template": template}
    problems = []
    if not present:
        return [f"{folder} is empty: nothing to publish. Fix: give the model folder `vlhub convert` wrote"], checks
    if "config.json" not in present:
        problems.append("config.json is missing (is this a model folder?). Fix: give the folder `vlhub convert` wrote")
    if not weights:
        problems.append("no weights (*.safetensors, *.bin, *.pth) in the folder. Fix: copy the weight files in")
    if not tokenizer:
        problems.append("no tokenizer files (tokenizer.model, tokenizer.json or tokenizer_config.json). "
                        "Fix: copy the base model's tokenizer files in")
    if not template:
        problems.append("no chat template (tokenizer_config.json 'chat_template' or chat_template.jinja/.json): "
                        "others would hit 'failed to match chat template'. Fix: convert with `vlhub convert`, "
                        "which writes the template")
    return problems, checks


def chat_template_source(folder: Path, names: set[str], files: dict[str, LocalFile] | None = None) -> str:
    """Which file carries the chat template, or ``""`` (reads only a scanned, regular tokenizer_config.json)."""
    for name in ("chat_template.jinja", "chat_template.json"):
        if name in names:
            return name
    if "tokenizer_config.json" in names:
        entry = (files or {}).get("tokenizer_config.json")
        path = entry.source(folder) if entry else Path(folder) / "tokenizer_config.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return ""
        if isinstance(data, dict) and data.get("chat_template"):
            return "tokenizer_config.json"
    return ""


def sha256_file(path: Path, progress: Callable[[int], None] | None = None) -> str:
    """The SHA-256 of a file, streamed in fixed chunks (memory stays flat)."""
    digest = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as handle:
        while n := handle.readinto(buf):
            digest.update(view[:n])
            if progress:
                progress(n)
    return digest.hexdigest()


def git_blob_sha(data: bytes) -> str:
    """The object id git gives a blob with this content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(oid: str, size: int) -> bytes:
    """The Git LFS pointer file for an object."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


def parse_pointer(data: bytes) -> tuple[str, int] | None:
    """``(oid, size)`` when ``data`` is an LFS pointer."""
    if len(data) > 1024 or not data.startswith(b"version https://git-lfs"):
        return None
    fields = dict(line.split(" ", 1) for line in data.decode("ascii", "replace").splitlines() if " " in line)
    oid, size = fields.get("oid", ""), fields.get("size", "")
    if oid.startswith("sha256:") and size.isdigit():
        return oid[7:], int(size)
    return None


class HashCache:
    """SHA-256 per file, valid while the file's size, mtime and inode stay the same."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, list] = read_cache(path, {})

    def get(self, f: LocalFile) -> str | None:
        entry = self.data.get(f.path)
        return entry[3] if entry and entry[:3] == f.stamp else None

    def put(self, f: LocalFile, oid: str) -> None:
        self.data[f.path] = [*f.stamp, oid]

    def save(self) -> None:
        atomic_write_json(self.path, self.data)
