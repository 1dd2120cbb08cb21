"""Content ids for publishing: streamed SHA-256 with a cache, git blob ids, Git LFS pointers.

- :func:`sha256_file` streams a file in fixed 4 MiB chunks (memory stays flat); it is the
  object id of Git LFS (``oid sha256:...``) and what the hubs list for LFS files.
- :class:`HashCache` keeps one SHA-256 per file outside the model folder, valid while the
  file's size, mtime and inode stay the same, so an unchanged folder is never read twice.
- :class:`Hasher` hashes several files at once on background threads (one per usable CPU
  core, hashlib releases the GIL while it hashes), so that hashing overlaps the preflight's
  network round trips and the upload of the files hashed before.
- :func:`git_blob_sha` is git's object id of a blob (``sha1("blob <size>\\0" + data)``,
  gitformat-object); :func:`lfs_pointer` / :func:`parse_pointer` write and read the Git LFS
  pointer file (https://github.com/git-lfs/git-lfs/blob/main/docs/spec.md).
"""
from __future__ import annotations

import hashlib
import heapq
import os
import queue
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from vlhub.core.fsutil import atomic_write_json, read_cache

if TYPE_CHECKING:
    from .folder import LocalFile

#: Bytes read per step while hashing.
CHUNK = 4 * 1024 * 1024
#: Pointer files are small; anything longer is content.
POINTER_MAX = 1024
#: Most threads a :class:`Hasher` runs (each holds one :data:`CHUNK` buffer).
MAX_HASH_THREADS = 8


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

    def take(self, hasher: "Hasher", folder: Path, files: "list[LocalFile]",
             progress: Callable[[int, int], None] | None = None) -> dict[str, str]:
        """Wait for ``hasher`` and remember the SHA-256 of each of ``files`` it hashed (saved when any).

        A file whose size, mtime or inode changed since its scan is left out (its hash may be
        of neither content).

        Args:
            hasher: the hashing a preflight started.
            folder: the model folder.
            files: the scanned files (their stamps are what the cache keeps).
            progress: ``(bytes hashed, total bytes)`` while waiting.

        Returns:
            ``path -> sha256 hex`` of every file of ``files`` now in the cache.

        Raises:
            OSError: a file could not be read.
        """
        from .folder import changed_files

        oids = hasher.wait(progress)
        changed = {path for path, _ in changed_files(folder, [f for f in files if f.path in oids])}
        for f in files:
            if f.path in oids and f.path not in changed:
                self.put(f, oids[f.path])
        if oids:
            self.save()
        return {f.path: oid for f in files if (oid := self.get(f)) is not None}


def hash_threads() -> int:
    """How many files :class:`Hasher` hashes at once: the CPU cores this process may run on, 1 to 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_HASH_THREADS))


class _Cancelled(Exception):
    """Raised inside a hashing thread to stop it between two chunks (:meth:`Hasher.cancel`)."""


class Hasher:
    """SHA-256 of files on background threads, started as soon as the files are added.

    A publish starts one at its preflight, so that the weights are hashed while the
    preflight talks to the remote and renders the card, and consumes the results as they
    finish (:meth:`finished`): an upload starts as soon as its file is hashed, while the
    others are still being hashed. Files are taken smallest first (the first upload can
    start soonest); up to ``threads`` files are read at once, each streamed in
    :data:`CHUNK` pieces, so memory stays at one buffer per thread whatever the folder's size.

    Nothing is cached here: the consumer checks that each file is still what the scan saw
    (:func:`~vlhub.core.publishing.folder.changed_during_upload`) and puts it in its
    :class:`HashCache`. A file that cannot be read is reported by :meth:`finished` as its
    ``OSError``.

    Args:
        folder: the model folder (each file is read from ``LocalFile.source(folder)``).
        files: the files to hash (more can be added with :meth:`add`).
        threads: files hashed at once (default :func:`hash_threads`).
    """

    def __init__(self, folder: Path, files: "Iterable[LocalFile]" = (), threads: int | None = None) -> None:
        self.folder = Path(folder)
        self.threads = threads or hash_threads()
        self._lock = threading.Lock()
        self._queue: list[tuple[int, str, "LocalFile"]] = []
        self._read: dict[str, int] = {}
        self._done: queue.SimpleQueue[tuple["LocalFile", str | OSError]] = queue.SimpleQueue()
        self._running = 0
        self._unreported = 0
        self._cancel = threading.Event()
        self.total = 0
        self.add(files)

    def add(self, files: "Iterable[LocalFile]") -> None:
        """Queue more files (a file already added is ignored) and start threads for them."""
        with self._lock:
            for f in files:
                if f.path not in self._read:
                    self._read[f.path] = 0
                    heapq.heappush(self._queue, (f.size, f.path, f))
                    self.total += f.size
                    self._unreported += 1
            start = min(self.threads - self._running, len(self._queue))
            self._running += max(start, 0)
        for _ in range(start):
            threading.Thread(target=self._work, name="vlhub-hash", daemon=True).start()

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._queue or self._cancel.is_set():
                    self._running -= 1
                    return
                f = heapq.heappop(self._queue)[2]

            def count(n: int, path: str = f.path) -> None:
                if self._cancel.is_set():
                    raise _Cancelled
                self._read[path] += n

            try:
                result: str | OSError = sha256_file(f.source(self.folder), count)
            except _Cancelled:
                continue
            except OSError as exc:
                result = exc
            self._done.put((f, result))

    @property
    def hashed(self) -> int:
        """Bytes hashed so far (all files)."""
        with self._lock:
            return sum(self._read.values())

    @property
    def cancelled(self) -> bool:
        """:meth:`cancel` was called."""
        return self._cancel.is_set()

    @property
    def busy(self) -> bool:
        """Some added file's result has not been returned by :meth:`finished` yet."""
        return self._unreported > 0

    def finished(self, timeout: float | None = None) -> "list[tuple[LocalFile, str]]":
        """The files hashed since the last call, as ``(file, sha256 hex)`` in the order they finished.

        Args:
            timeout: seconds to wait for the first one (``None``: until one finishes; ``0``: no wait).

        Returns:
            Possibly empty (nothing finished in time, or nothing is left: see :attr:`busy`).

        Raises:
            OSError: a file could not be read (the others keep their place for the next call).
        """
        items = []
        if self.cancelled:
            return []
        try:
            if self.busy:
                items.append(self._done.get(timeout=timeout) if timeout != 0 else self._done.get_nowait())
            while True:
                items.append(self._done.get_nowait())
        except queue.Empty:
            pass
        with self._lock:
            self._unreported -= len(items)
        failed = [(f, r) for f, r in items if isinstance(r, OSError)]
        if failed:
            for item in items:
                if item not in failed:  # returned by the next call
                    self._done.put(item)
                    with self._lock:
                        self._unreported += 1
            raise failed[0][1]
        return [(f, str(r)) for f, r in items]

    def wait(self, progress: Callable[[int, int], None] | None = None, interval: float = 0.25) -> dict[str, str]:
        """Every added file's SHA-256 (``path -> hex``), waiting for the threads.

        Args:
            progress: called with ``(bytes hashed, total bytes)`` about every ``interval`` seconds.
            interval: seconds between progress calls.

        Raises:
            OSError: a file could not be read.
        """
        oids: dict[str, str] = {}
        while self.busy:
            oids.update((f.path, oid) for f, oid in self.finished(timeout=interval))
            if progress:
                progress(self.hashed, self.total)
        return oids

    def cancel(self) -> None:
        """Stop hashing: each thread stops after its current chunk; results not yet returned are dropped."""
        self._cancel.set()
        with self._lock:
            self._queue.clear()
            self._unreported = 0
