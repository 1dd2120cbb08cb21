"""Content ids for publishing: streamed SHA-256 with a cache, git blob ids, Git LFS pointers.

- :func:`sha256_file` streams a file in fixed 4 MiB chunks (memory stays flat); it is the
  object id of Git LFS (``oid sha256:...``) and what the hubs list for LFS files.
- :class:`HashCache` keeps one SHA-256 per file outside the model folder, valid while the
  file's size, mtime and inode stay the same, so an unchanged folder is never read twice.
- :func:`git_blob_sha` is git's object id of a blob (``sha1("blob <size>\\0" + data)``,
  gitformat-object); :func:`lfs_pointer` / :func:`parse_pointer` write and read the Git LFS
  pointer file (https://github.com/git-lfs/git-lfs/blob/main/docs/spec.md).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from vlhub.core.fsutil import atomic_write_json, read_cache

if TYPE_CHECKING:
    from .folder import LocalFile

#: Bytes read per step while hashing.
CHUNK = 4 * 1024 * 1024
#: Pointer files are small; anything longer is content.
POINTER_MAX = 1024


def sha256_file(path: Path, progress: Callable[[int], None] | None = None) -> str:
    """The hex SHA-256 of a file, streamed in :data:`CHUNK` pieces.

    Args:
        path: the file (a regular file: callers pass ``LocalFile.source``, never a pipe).
        progress: called with the number of bytes of each piece read.

    Returns:
        64 lowercase hex digits.

    Raises:
        OSError: the file cannot be read.
    """
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
    """The object id git gives a blob with this content (SHA-1 of ``blob <size>\\0`` + data)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(oid: str, size: int) -> bytes:
    """The Git LFS pointer file (spec v1) for an object: version, ``oid sha256:OID``, size."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


def parse_pointer(data: bytes) -> tuple[str, int] | None:
    """``(oid, size)`` when ``data`` is a Git LFS pointer file, else ``None``."""
    if len(data) > POINTER_MAX or not data.startswith(b"version https://git-lfs"):
        return None
    fields = dict(line.split(" ", 1) for line in data.decode("ascii", "replace").splitlines() if " " in line)
    oid, size = fields.get("oid", ""), fields.get("size", "")
    if oid.startswith("sha256:") and size.isdigit():
        return oid[7:], int(size)
    return None


class HashCache:
    """SHA-256 per file, valid while the file's size, mtime and inode stay the same.

    Stored as JSON (``path -> [size, mtime_ns, inode, sha256]``) at ``path``, outside the
    model folder (a publish keeps one per folder + target in its staging directory). A
    damaged or missing cache file reads as empty: it costs time, never a failed publish.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.data: dict[str, list] = read_cache(self.path, {})

    def get(self, f: "LocalFile") -> str | None:
        """The cached SHA-256 of ``f``, or ``None`` when unknown or ``f`` changed since."""
        entry = self.data.get(f.path)
        return entry[3] if isinstance(entry, list) and len(entry) == 4 and entry[:3] == f.stamp else None

    def put(self, f: "LocalFile", oid: str) -> None:
        self.data[f.path] = [*f.stamp, oid]

    def hash(self, f: "LocalFile", folder: Path, progress: Callable[[int], None] | None = None) -> str:
        """The SHA-256 of ``f``: cached, or read (from ``f.source(folder)``) and remembered."""
        oid = self.get(f)
        if oid is None:
            oid = sha256_file(f.source(folder), progress)
            self.put(f, oid)
        return oid

    def save(self) -> None:
        """Write the cache (atomically)."""
        atomic_write_json(self.path, self.data)
