"""Hash LFS files and upload them with ``git lfs push --object-id``, the two overlapping.

Files whose hash is cached are not read again. Each hashed file is linked (not copied)
into the staging's LFS store and queued; two uploader threads each send whatever is queued
in one ``git lfs push`` call, so a shard is on its way as soon as it is hashed.
git-lfs asks the server first and skips objects it already has: that makes an
interrupted publish resume where it stopped.
"""
from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from vlhub.core.errors import VlhubError

from . import folder as fld
from .gitlfs import Stage, git_error, lfs_env

#: ``(stage, done, total)`` byte counts; stage is "hash" or "upload".
ByteProgress = Callable[[str, int, int], None]
_BATCH = 64
#: Concurrent ``git lfs push`` calls: each shard starts as soon as it is hashed, while the server
#: still ingests the previous one (two PUTs in flight ingest faster than one on a local server).
_UPLOADERS = 2


@dataclass
class LfsResult:
    """Path -> oid of every LFS file, and what was sent."""

    oids: dict[str, str] = field(default_factory=dict)
    bytes_sent: int = 0
    objects_sent: int = 0


def send(stage: Stage, files: list[fld.LocalFile], cache: fld.HashCache, on_remote: set[str],
         progress: ByteProgress | None = None) -> LfsResult:
    """Hash (where needed) and upload every LFS file whose object the remote lacks."""
    result = LfsResult()
    todo: "queue.Queue[tuple[str, int, str] | None]" = queue.Queue()
    shared = _Counters()
    uploaders = [_Uploader(stage, todo, progress, shared) for _ in range(_UPLOADERS)]
    for uploader in uploaders:
        uploader.start()
    hash_total = sum(f.size for f in files if cache.get(f) is None)
    hashed = 0

    def count(n: int) -> None:
        nonlocal hashed
        hashed += n
        if progress:
            progress("hash", hashed, hash_total)

    try:  # one file at a time: the first upload starts sooner, and hashing outruns any upload
        for f in sorted(files, key=lambda f: cache.get(f) is None):
            oid = cache.get(f) or fld.sha256_file(stage.folder / f.path, count)
            cache.put(f, oid)
            result.oids[f.path] = oid
            if oid not in on_remote:
                todo.put((oid, f.size, f.path))
    finally:
        cache.save()
        for _ in uploaders:
            todo.put(None)
        for uploader in uploaders:
            uploader.join()
    for uploader in uploaders:
        if uploader.error:
            raise uploader.error
    result.bytes_sent = sum(u.bytes_sent for u in uploaders)
    result.objects_sent = sum(u.objects_sent for u in uploaders)
    return result


@dataclass
class _Counters:
    """Bytes sent and queued by all uploader threads together (for one progress bar)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: dict[int, int] = field(default_factory=dict)
    queued: int = 0


class _Uploader(threading.Thread):
    """Drains the queue into ``git lfs push --object-id`` calls."""

    def __init__(self, stage: Stage, todo: "queue.Queue[tuple[str, int, str] | None]",
                 progress: ByteProgress | None, shared: _Counters) -> None:
        super().__init__(daemon=True, name="vlhub-lfs-upload")
        self.stage, self.todo, self.progress, self.shared = stage, todo, progress, shared
        self.error: BaseException | None = None
        self.bytes_sent = self.objects_sent = 0

    def run(self) -> None:
        done = False
        while not done and self.error is None:
            batch = [self.todo.get()]
            while batch[-1] is not None and len(batch) < _BATCH:
                try:
                    batch.append(self.todo.get_nowait())
                except queue.Empty:
                    break
            done = None in batch
            items = [b for b in batch if b is not None]
            if items:
                try:
                    self._push(items)
                except BaseException as exc:  # reported by send() in the calling thread
                    self.error = exc

    def _push(self, items: list[tuple[str, int, str]]) -> None:
        with self.shared.lock:
            self.shared.queued += sum(size for _, size, _ in items)
            for oid, _, path in items:
                _link(self.stage, oid, self.stage.folder / path)
        log = self.stage.dir / f"lfs-progress-{self.ident}.log"
        log.unlink(missing_ok=True)
        env = {**lfs_env(self.stage), "GIT_LFS_PROGRESS": str(log)}
        import subprocess

        proc = subprocess.Popen(["git", "lfs", "push", "--object-id", "origin", *[i[0] for i in items]],
                                env=env, cwd=self.stage.dir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        base = (self.bytes_sent, self.objects_sent)
        while proc.poll() is None:
            time.sleep(0.2)
            self._report(base, log, finished=False)
        stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.returncode != 0:
            raise git_error("git lfs push", stderr, self.stage.remote.url)
        self._report(base, log, finished=True)

    def _report(self, base: tuple[int, int], log: Path, finished: bool) -> None:
        """Read git-lfs's progress file (``upload i/n done/total path`` lines, throttled).

        Objects the server already had never appear there; once the push succeeded,
        every object that appears was sent whole.
        """
        per_object: dict[str, tuple[int, int]] = {}
        try:
            lines = log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            lines = []
        for line in lines:
            parts = line.split(" ", 3)
            if len(parts) == 4 and parts[0] == "upload":
                done, _, total = parts[2].partition("/")
                if done.isdigit() and total.isdigit():
                    seen = per_object.get(parts[3], (0, 0))[0]
                    per_object[parts[3]] = (max(seen, int(done)), int(total))
        self.bytes_sent = base[0] + sum(total if finished else done for done, total in per_object.values())
        self.objects_sent = base[1] + len(per_object)
        with self.shared.lock:
            self.shared.sent[id(self)] = self.bytes_sent
            if self.progress:
                self.progress("upload", sum(self.shared.sent.values()), self.shared.queued)


def _link(stage: Stage, oid: str, source: Path) -> None:
    """Make ``source`` the LFS store's object for ``oid`` without copying it."""
    target = stage.git_dir / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        return
    try:
        os.symlink(source, target)
    except OSError as exc:
        raise VlhubError(f"cannot link {source} into the staging LFS store: {exc}",
                         "check that $VLHUB_HOME is writable") from None
