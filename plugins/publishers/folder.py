"""The model folder as a publish sees it: its files, which go through LFS, content checks, hashes.

Nothing here writes into the model folder. Hashes are cached outside it (keyed by path,
size, mtime and inode), so an unchanged folder is never read twice.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vlhub.core.errors import BadInput
from vlhub.core.fsutil import atomic_write_json, read_json

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
    """One file of the model folder (``path`` is relative, with ``/``)."""

    path: str
    size: int
    mtime_ns: int
    inode: int
    lfs: bool

    @property
    def stamp(self) -> list[int]:
        """What must not change for a cached hash to stay valid."""
        return [self.size, self.mtime_ns, self.inode]


def is_lfs(path: str, size: int) -> bool:
    """Whether a file goes through LFS: a weight pattern or over 10 MB."""
    name = path.rsplit("/", 1)[-1]
    return size > BIG_FILE or any(fnmatch.fnmatch(name, p) for p in LFS_PATTERNS)


def scan(folder: Path) -> list[LocalFile]:
    """Every publishable file under ``folder``, sorted (symlinked files are followed)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInput(f"{folder} is not a folder", "give the model folder written by `vlhub convert`")
    found: list[LocalFile] = []
    for root, dirs, names in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in sorted(names):
            if name in SKIP_FILES:
                continue
            full = Path(root) / name
            try:
                st = full.stat()
            except FileNotFoundError:  # a dangling symlink
                continue
            rel = full.relative_to(folder).as_posix()
            found.append(LocalFile(rel, st.st_size, st.st_mtime_ns, st.st_ino, is_lfs(rel, st.st_size)))
    return sorted(found, key=lambda f: f.path)


def check_contents(folder: Path, files: list[LocalFile]) -> tuple[list[str], dict[str, object]]:
    """Problems that make the folder unusable by others, and what was found."""
    names = {f.path for f in files}
    weights = [f.path for f in files if f.path.endswith(WEIGHT_SUFFIXES)]
    tokenizer = [n for n in TOKENIZER_FILES if n in names]
    template = chat_template_source(folder, names)
    checks: dict[str, object] = {"config": "config.json" in names, "weights": len(weights),
                                 "tokenizer": tokenizer, "chat_template": template}
    problems = []
    if not files:
        return [f"{folder} is empty: nothing to publish. Fix: give the model folder `vlhub convert` wrote"], checks
    if "config.json" not in names:
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


def chat_template_source(folder: Path, names: set[str]) -> str:
    """Which file carries the chat template, or ``""``."""
    for name in ("chat_template.jinja", "chat_template.json"):
        if name in names:
            return name
    if "tokenizer_config.json" in names:
        try:
            data = json.loads((Path(folder) / "tokenizer_config.json").read_text(encoding="utf-8"))
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
        self.data: dict[str, list] = read_json(path, {}) or {}

    def get(self, f: LocalFile) -> str | None:
        entry = self.data.get(f.path)
        return entry[3] if entry and entry[:3] == f.stamp else None

    def put(self, f: LocalFile, oid: str) -> None:
        self.data[f.path] = [*f.stamp, oid]

    def save(self) -> None:
        atomic_write_json(self.path, self.data)
