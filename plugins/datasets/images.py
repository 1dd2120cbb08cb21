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
from typing import TYPE_CHECKING, Any, BinaryIO, Iterable, Sequence

from vlhub.core.types import Progress, ProgressCallback

if TYPE_CHECKING:
    from concurrent.futures import Executor, Future

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
    folder, _, name = ref.rpartition("/")
    parent = folders.get(folder)
    if parent is None:
        parent = folders[folder] = os.path.realpath(os.path.join(root, folder))
    real = os.path.join(parent, name)
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

    fd = handle.fileno()
    status = os.fstat(fd)
    if stat.S_ISDIR(status.st_mode):
        raise IsADirectoryError(real)
    size = status.st_size
    if size == 0:
        return ImageInfo(ref, f"image {ref} is empty (0 bytes)", real)
    tail = os.pread(fd, 32, max(0, size - 32))
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


def _pool(workers: int) -> Executor:
    """Forked processes when this process has one thread; threads otherwise.

    Forking a threaded process (the launcher) is unsafe, and spawned children re-run
    the ``__main__`` script (a Streamlit page); Pillow's decoders and hashlib release
    the GIL, so threads still use several cores there.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    if can_fork():
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    return ThreadPoolExecutor(workers)


def can_fork() -> bool:
    """Whether this process may fork: it has one thread, and the platform forks."""
    import multiprocessing

    return threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods()


def default_workers() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class Checks:
    """Image checks started while the caller still reads records, collected by :meth:`result`.

    References given to :meth:`add` are checked in a pool (forked processes work while the
    caller converts records) once there are enough of them; the rest when the result is
    asked for. Use it as a context manager so the pool is shut down on errors too.
    """

    def __init__(self, root: str, workers: int | None = None) -> None:
        self.root = os.path.realpath(root)
        self.workers = workers or default_workers()
        self._seen: dict[str, None] = {}
        self._pending: list[str] = []
        self._pool: Executor | None = None
        self._futures: list[Future[list[ImageInfo]]] = []

    def __enter__(self) -> Checks:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool:
            self._pool.shutdown(cancel_futures=True)

    def add(self, refs: Iterable[Any]) -> None:
        """Queue the distinct non-empty string references among ``refs``."""
        for ref in refs:
            if isinstance(ref, str) and ref.strip() and ref not in self._seen:
                self._seen[ref] = None
                self._pending.append(ref)
        if len(self._pending) >= CHUNK and (self._pool or self.workers > 1 and len(self._seen) >= POOL_MIN):
            self._submit()

    def _submit(self) -> None:
        self._pool = self._pool or _pool(self.workers)
        self._futures += [self._pool.submit(_check_chunk, self.root, chunk) for chunk in _chunks(self._pending)]
        self._pending = []

    def result(self, refs: Iterable[str] = (), progress: ProgressCallback | None = None) -> dict[str, ImageInfo]:
        """Each distinct reference (added, or in ``refs``) checked once; possible duplicates hashed."""
        self.add(refs)
        if self._pool and self._pending:
            self._submit()
        found: dict[str, ImageInfo] = {}
        report = progress or (lambda event: None)
        report(Progress("check images", 0, len(self._seen), "img"))
        if self._pool:
            from concurrent.futures import as_completed

            for future in as_completed(self._futures):
                found.update((i.ref, i) for i in future.result())
                report(Progress("check images", len(found), len(self._seen), "img"))
        for chunk in _chunks(self._pending):
            found.update((i.ref, i) for i in _check_chunk(self.root, chunk))
            report(Progress("check images", len(found), len(self._seen), "img"))
        self._pending = []
        _hash_candidates(found, self._pool)
        return found


def _chunks(refs: list[str]) -> list[list[str]]:
    return [refs[i:i + CHUNK] for i in range(0, len(refs), CHUNK)]


def check_images(root: str, refs: Iterable[str], progress: ProgressCallback | None = None,
                 workers: int | None = None) -> dict[str, ImageInfo]:
    """Check each distinct reference once; hash the files that may be duplicates."""
    with Checks(root, workers) as checks:
        checks.add(refs)
        return checks.result(progress=progress)


def _hash_candidates(found: dict[str, ImageInfo], pool: Executor | None) -> None:
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
