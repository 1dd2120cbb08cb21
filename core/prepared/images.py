"""Image checks: each distinct image once, in a process pool for large sets.

A reference is first read as a path (:func:`resolve_ref`): URLs, absolute paths and ``..``
parts are refused; Windows separators (``images\\a.jpg``), ``./`` and ``//`` are normalised.
The file is then looked up without opening anything: ``lstat`` of the name (when the exact
name is missing, its NFC and NFD Unicode spellings are tried, then a case-preserving
Unicode-insensitive match in its folder); a symlink is resolved, and the resolved file must lie
inside the image root (``Path.is_relative_to`` on resolved paths, so a root of ``/`` works) and be
a regular file (named pipes, devices and sockets are refused, never opened). Only then is it
opened (``O_NONBLOCK``, no final symlink followed, the same inode checked again) and decoded:
JPEG files that end with the EOI marker pass on Pillow's header parse; any other JPEG is decoded
(at 1/8 scale, which still reads every scan) so truncation shows; PNG runs ``verify()`` (every
chunk's CRC) and then decodes its pixels (chunks can verify while the compressed pixels do not
decode); other formats are fully decoded.
Duplicates need equal content, so only files whose size and last 32 bytes
(compressed data, near unique) equal another file's are hashed in full.

Every good :class:`ImageInfo` carries ``path``, the reference as it is on disk (``/``-separated,
normalised, in the file system's Unicode spelling), and ``real``, the resolved file: two spellings
of one file share ``real``, which the validation uses to rewrite records and group the split.
"""
from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import threading
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO, Iterable, Sequence

from vlhub.core.types import Progress, ProgressCallback

if TYPE_CHECKING:
    from concurrent.futures import Executor, Future

#: below this many images a pool costs more than it saves
POOL_MIN = 512
CHUNK = 128
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
NONBLOCK = getattr(os, "O_NONBLOCK", 0)
CLOEXEC = getattr(os, "O_CLOEXEC", 0)
#: ``scheme://`` (http, https, s3, gs, file, ...) or an inline ``data:`` URI
_URL = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.\-]*://|data:)")
#: ``ImageInfo.code`` values: why an image is bad ("" for a good one)
MISSING, OUTSIDE, SPECIAL, FOLDER, EMPTY, UNDECODABLE, UNREADABLE, URL, BAD_PATH = (
    "missing", "outside", "not_regular", "folder", "empty", "undecodable", "unreadable", "url", "bad_path")
_KINDS = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


@dataclass
class ImageInfo:
    """What the check found for one image reference.

    ``error`` is empty for a good image, else the reason (e.g. ``image not found: a.jpg (looked for
    /data/a.jpg)``) and ``code`` its kind (:data:`MISSING`, :data:`OUTSIDE`, ...); ``path`` the
    reference as found on disk, relative to the root (normalised: ``/`` separators, no ``./`` or
    ``//``, the file system's Unicode spelling), ``real`` the resolved file (for a missing image: where
    it was looked for), ``size`` its bytes, ``format`` Pillow's name (``JPEG``, ``PNG``), ``sha`` a
    content hash, set only for files that may have an equal twin (same size and tail).
    """

    ref: str
    error: str = ""
    real: str = ""
    size: int = 0
    width: int = 0
    height: int = 0
    format: str = ""
    sha: str = ""
    tail: bytes = b""
    path: str = ""
    code: str = ""


def shown(ref: str, limit: int = 80) -> str:
    """``ref`` quoted for a message, shortened to ``limit`` characters (a data: URI can be huge)."""
    return repr(ref if len(ref) <= limit else ref[:limit - 3] + "...")


def path_error(ref: str) -> str:
    """Why ``ref`` may not be used as a path relative to an image root: a URL, absolute, or with a
    ``..`` part (the reason as one line), or ``""`` when it may (the file is not looked at)."""
    return _ref_problem(ref)[0]


def _ref_problem(ref: str) -> tuple[str, str]:
    if _URL.match(ref):
        return (f"image {shown(ref)} is a URL: URLs are not downloaded; download the images and give a local "
                "path relative to the image root", URL)
    if ref.startswith(("/", "\\")) or ref[1:3] in (":\\", ":/"):
        return f"absolute image path {shown(ref)} (paths must be relative to the image root)", BAD_PATH
    if ".." in ref.replace("\\", "/").split("/"):
        return f"image path {shown(ref)} contains '..' (it must stay inside the image root)", BAD_PATH
    if "\0" in ref:
        return f"image path {shown(ref)} contains a NUL character", BAD_PATH
    return "", ""


def normalise(ref: str) -> str:
    """``ref`` as a ``/``-separated relative path: backslashes (Windows) become ``/``, and empty
    (``//``) and ``.`` parts are dropped (``./imgs//a.jpg`` -> ``imgs/a.jpg``); ``""`` when nothing is left."""
    return "/".join(part for part in ref.replace("\\", "/").split("/") if part not in ("", "."))


def inside(path: str, root: str) -> bool:
    """Whether the resolved ``path`` is ``root`` or lies under it (``root`` resolved; ``/`` holds everything):
    ``Path.is_relative_to``, with a string test first for the common case."""
    return path.startswith(root.rstrip("/") + "/") or PurePosixPath(path).is_relative_to(root)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "a special file")


class _Lookup:
    """Per-root caches shared by the checks of one chunk: resolved folders, and folder listings
    by Unicode-normalised name (built only when a non-ASCII name is missing)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.folders: dict[str, str] = {}
        self.listings: dict[str, dict[str, str]] = {}

    def folder(self, rel: str) -> str:
        found = self.folders.get(rel)
        if found is None:
            found = self.folders[rel] = os.path.realpath(os.path.join(self.root, rel)) if rel else self.root
        return found

    def stat(self, rel: str) -> tuple[str, str, os.stat_result] | None:
        """``(rel, path, lstat)`` of the name ``rel`` (without following a final symlink), or None."""
        folder, _, name = rel.rpartition("/")
        path = os.path.join(self.folder(folder), name)
        try:
            return rel, path, os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None

    def find(self, rel: str) -> tuple[str, str, os.stat_result] | None:
        """The name ``rel``, or its NFC/NFD spelling, or a folder entry equal to it once normalised."""
        found = self.stat(rel)
        if found is not None or rel.isascii():
            return found
        for form in ("NFC", "NFD"):
            other = unicodedata.normalize(form, rel)
            if other != rel and (found := self.stat(other)) is not None:
                return found
        folder, _, name = unicodedata.normalize("NFC", rel).rpartition("/")
        parent = self.stat(folder) if folder else (folder, self.root, None)
        if parent is None:
            return None
        listing = self.listings.get(parent[1])
        if listing is None:
            try:
                listing = {unicodedata.normalize("NFC", entry): entry for entry in os.listdir(parent[1])}
            except OSError:
                listing = {}
            self.listings[parent[1]] = listing
        entry = listing.get(name)
        return self.stat(f"{parent[0]}/{entry}" if parent[0] else entry) if entry else None


def check_one(root: str, ref: str, folders: dict[str, str] | _Lookup | None = None) -> ImageInfo:
    """Check one reference against the image root ``root`` (already resolved).

    Nothing is opened before the file is known to be a regular file inside ``root``.

    Args:
        root: the resolved image root (``os.path.realpath``).
        ref: the image path as the record gives it.
        folders: a cache shared between calls (a :class:`_Lookup` for ``root``; a plain dict is
            accepted for compatibility and ignored).
    Returns:
        :class:`ImageInfo`; a bad image has ``error`` and ``code`` set (never raised).
    """
    reason, code = _ref_problem(ref)
    if reason:
        return ImageInfo(ref, reason, code=code)
    rel = normalise(ref)
    if not rel:
        return ImageInfo(ref, f"image path {shown(ref)} names no file", code=BAD_PATH)
    lookup = folders if isinstance(folders, _Lookup) else _Lookup(root)
    try:
        found = lookup.find(rel)
        if found is None:
            looked = os.path.join(root, rel)
            return ImageInfo(ref, f"image not found: {ref} (looked for {looked})", looked, path=rel, code=MISSING)
        rel, real, status = found
        link = stat.S_ISLNK(status.st_mode)
        if link:
            real = os.path.realpath(real)
        if not inside(real, root):
            how = "through a symlink, " if link or not inside(os.path.dirname(real), root) else ""
            return ImageInfo(ref, f"image {shown(ref)} resolves outside the image root {root} ({how}to {real})",
                             real, path=rel, code=OUTSIDE)
        if link:
            status = os.stat(real)
        if stat.S_ISDIR(status.st_mode):
            return ImageInfo(ref, f"image path is a folder: {ref}", real, path=rel, code=FOLDER)
        if not stat.S_ISREG(status.st_mode):
            return ImageInfo(ref, f"image {shown(ref)} is not a regular file: it is {_kind(status.st_mode)}; "
                             "give the path of an image file", real, path=rel, code=SPECIAL)
        if status.st_size == 0:
            return ImageInfo(ref, f"image {ref} is empty (0 bytes)", real, path=rel, code=EMPTY)
        fd = os.open(real, os.O_RDONLY | NOFOLLOW | NONBLOCK | CLOEXEC)
        with open(fd, "rb") as handle:
            opened = os.fstat(fd)
            if (opened.st_dev, opened.st_ino) != (status.st_dev, status.st_ino) or not stat.S_ISREG(opened.st_mode):
                return ImageInfo(ref, f"image {ref} changed while it was checked", real, path=rel, code=UNREADABLE)
            info = _decode(ref, real, handle, opened.st_size)
            info.path = rel
            return info
    except FileNotFoundError:  # a symlink to a missing file, or a file removed meanwhile
        return ImageInfo(ref, f"image not found: {ref} (a symlink to a missing file)", path=rel, code=MISSING)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EACCES, errno.EPERM, errno.ENAMETOOLONG, errno.EIO, errno.ENOTDIR):
            return ImageInfo(ref, f"image {ref} cannot be read ({exc.strerror or exc})", path=rel, code=UNREADABLE)
        return ImageInfo(ref, f"image {ref} does not decode ({type(exc).__name__}: {exc})", path=rel,
                         code=UNDECODABLE)
    except Exception as exc:  # any decoder failure is a bad image
        return ImageInfo(ref, f"image {ref} does not decode ({type(exc).__name__}: {exc})", path=rel,
                         code=UNDECODABLE)


def _decode(ref: str, real: str, handle: BinaryIO, size: int) -> ImageInfo:
    from PIL import Image

    tail = os.pread(handle.fileno(), 32, max(0, size - 32))
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
    if info.format == "PNG":  # verify() reads the chunks only: decode the pixels too
        handle.seek(0)
        with Image.open(handle) as image:
            image.load()
    return info


def _check_chunk(root: str, refs: Sequence[str]) -> list[ImageInfo]:
    lookup = _Lookup(root)
    return [check_one(root, ref, lookup) for ref in refs]


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
        """Each distinct reference (added, or in ``refs``) checked once; possible duplicates hashed.

    Args:
        refs: more references to check (non-strings and repeats are skipped).
        progress: receives ``check images`` events (done / total, unit ``img``).
    Returns:
        ``{ref: ImageInfo}`` for every distinct string reference given so far.
    """
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
    """Check each distinct reference once; hash the files that may be duplicates.

    Args:
        root: the image root the references are relative to.
        refs: image references (non-empty strings are checked, repeats once).
        progress: receives ``check images`` events.
        workers: processes (or threads, in a threaded process) to use; default: the CPU cores.
    Returns:
        ``{ref: ImageInfo}``; bad images have ``error`` set (nothing is raised for them).
    """
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
