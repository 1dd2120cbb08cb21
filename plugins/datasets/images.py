"""Image checks: each distinct image once, in a process pool for large sets.

A reference is rejected when it is absolute, contains ``..``, resolves (through
symlinks) outside the image root, is missing, empty, or does not decode. JPEG
files that end with the EOI marker pass on Pillow's header parse; any other
JPEG is decoded (at 1/8 scale, which still reads every scan) so truncation shows;
PNG runs ``verify()`` (every chunk's CRC); other formats are fully decoded.
Duplicates need equal content, so only files whose size and last 32 bytes
(compressed data, near unique) equal another file's are hashed in full.
"""
from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Iterable, Sequence

from vlhub.core.types import Progress, ProgressCallback

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

#: below this many images a pool costs more than it saves
POOL_MIN = 512
CHUNK = 128
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


@dataclass
class ImageInfo:
    """What the check found for one image reference."""

    ref: str
    error: str = ""
    real: str = ""
    size: int = 0
    width: int = 0
    height: int = 0
    format: str = ""
    sha: str = ""
    tail: bytes = b""


def path_error(ref: str) -> str:
    """Why a reference may not be used as a relative path ('' when it may)."""
    if ref.startswith(("/", "\\")) or ref[1:3] in (":\\", ":/"):
        return f"absolute image path {ref!r} (paths must be relative to the image root)"
    if ".." in ref.replace("\\", "/").split("/"):
        return f"image path {ref!r} contains '..' (it must stay inside the image root)"
    return ""


def check_one(root: str, ref: str, folders: dict[str, str] | None = None) -> ImageInfo:
    """Check one reference against the image root ``root`` (already resolved).

    ``folders`` caches resolved parent folders; the file itself is opened without
    following a final symlink, and a symlink is resolved and must stay inside ``root``.
    """
    reason = path_error(ref)
    if reason:
        return ImageInfo(ref, reason)
    folders = {} if folders is None else folders
    parent, name = os.path.split(os.path.join(root, ref))
    if parent not in folders:
        folders[parent] = os.path.realpath(parent)
    real = os.path.join(folders[parent], name)
    try:
        try:
            fd = os.open(real, os.O_RDONLY | NOFOLLOW)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            real = os.path.realpath(real)
            fd = os.open(real, os.O_RDONLY)
        if not real.startswith(root + os.sep):
            os.close(fd)
            return ImageInfo(ref, f"image {ref!r} resolves outside the image root (a symlink to {real})")
        with open(fd, "rb") as handle:
            return _decode(ref, real, handle)
    except FileNotFoundError:
        return ImageInfo(ref, f"image not found: {ref}")
    except IsADirectoryError:
        return ImageInfo(ref, f"image path is a folder: {ref}")
    except Exception as exc:  # any decoder failure is a bad image
        return ImageInfo(ref, f"image {ref} does not decode ({type(exc).__name__}: {exc})", real)


def _decode(ref: str, real: str, handle: BinaryIO) -> ImageInfo:
    from PIL import Image

    status = os.fstat(handle.fileno())
    if stat.S_ISDIR(status.st_mode):
        raise IsADirectoryError(real)
    size = status.st_size
    if size == 0:
        return ImageInfo(ref, f"image {ref} is empty (0 bytes)", real)
    handle.seek(max(0, size - 32))
    tail = handle.read()
    handle.seek(0)
    with Image.open(handle) as image:
        info = ImageInfo(ref, "", real, size, image.width, image.height, image.format or "", tail=tail)
        if image.format == "JPEG":
            if not tail.rstrip(b"\x00\r\n ").endswith(b"\xff\xd9"):
                image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
                image.load()
        elif image.format == "PNG":
            image.verify()
        else:
            image.load()
    return info


def _check_chunk(root: str, refs: Sequence[str]) -> list[ImageInfo]:
    folders: dict[str, str] = {}
    return [check_one(root, ref, folders) for ref in refs]


def _hash_chunk(paths: Sequence[str]) -> list[str]:
    out = []
    for path in paths:
        digest = hashlib.blake2b(digest_size=16)
        with open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
        out.append(digest.hexdigest())
    return out


def _pool(workers: int) -> ProcessPoolExecutor:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # fork is fast, but unsafe in a threaded process (the launcher): spawn there
    method = "fork" if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method))


def default_workers() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def check_images(root: str, refs: Iterable[str], progress: ProgressCallback | None = None,
                 workers: int | None = None) -> dict[str, ImageInfo]:
    """Check each distinct reference once; hash the files that may be duplicates."""
    root = os.path.realpath(root)
    distinct = list(dict.fromkeys(refs))
    workers = workers or default_workers()
    chunks = [distinct[i:i + CHUNK] for i in range(0, len(distinct), CHUNK)]
    found: dict[str, ImageInfo] = {}
    report = progress or (lambda event: None)
    report(Progress("check images", 0, len(distinct), "img"))
    if workers > 1 and len(distinct) >= POOL_MIN:
        from concurrent.futures import as_completed

        with _pool(workers) as pool:
            futures = [pool.submit(_check_chunk, root, chunk) for chunk in chunks]
            for future in as_completed(futures):
                found.update((i.ref, i) for i in future.result())
                report(Progress("check images", len(found), len(distinct), "img"))
            _hash_candidates(found, pool)
    else:
        for chunk in chunks:
            found.update((i.ref, i) for i in _check_chunk(root, chunk))
            report(Progress("check images", len(found), len(distinct), "img"))
        _hash_candidates(found, None)
    return found


def _hash_candidates(found: dict[str, ImageInfo], pool: ProcessPoolExecutor | None) -> None:
    """Fill ``sha`` for good images whose size and tail equal another distinct file's."""
    alike: dict[tuple[int, bytes], set[str]] = defaultdict(set)
    for info in found.values():
        if not info.error:
            alike[info.size, info.tail].add(info.real)
    paths = sorted(p for group in alike.values() if len(group) > 1 for p in group)
    chunks = [paths[i:i + CHUNK] for i in range(0, len(paths), CHUNK)]
    hashes = pool.map(_hash_chunk, chunks) if pool else map(_hash_chunk, chunks)
    sha = {p: h for chunk, result in zip(chunks, hashes) for p, h in zip(chunk, result)}
    for info in found.values():
        info.sha = sha.get(info.real, "")
