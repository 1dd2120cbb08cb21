"""Hash LFS files, then upload them with ``git lfs push --object-id`` (public: :func:`send`).

Files whose hash is cached are not read again. Each hashed file is linked (not copied)
into the staging's LFS store; once every file is hashed, the objects the remote lacks go
in one ``git lfs push`` (``lfs.concurrenttransfers`` PUTs in flight). Measured on a local
server, uploading each shard while the next one is hashed took twice as long: the
server's disk writes slowed down for the whole upload. git-lfs asks the server first and
skips objects it already has: that makes an interrupted publish resume where it stopped.
"""
from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from vlhub.core.errors import VlhubError

from .folder import LocalFile
from .gitlfs import Stage, git_error, lfs_env
from .hashing import HashCache

#: ``(stage, done, total)`` byte counts; stage is "hash" or "upload".
ByteProgress = Callable[[str, int, int], None]
#: Objects per ``git lfs push`` call (keeps the command line short).
_BATCH = 64


@dataclass
class LfsResult:
    """Path -> oid of every LFS file, and what was sent."""

    oids: dict[str, str] = field(default_factory=dict)
    bytes_sent: int = 0
    objects_sent: int = 0


def send(stage: Stage, files: list[LocalFile], cache: HashCache, on_remote: set[str],
         progress: ByteProgress | None = None) -> LfsResult:
    """Hash (where needed) every LFS file, then upload those whose object the remote lacks.

    Args:
        stage: the set-up staging repository (its ``origin`` is the remote).
        files: the LFS files to send (each read from ``LocalFile.source``).
        cache: the staging's hash cache (saved, also when hashing is interrupted).
        on_remote: LFS oids the remote's tree already points to (not offered again).
        progress: ``(stage, done, total)`` byte counts; stage is ``hash`` or ``upload``.

    Returns:
        :class:`LfsResult`: path -> oid of every file, bytes and objects sent.

    Raises:
        VlhubError: the upload failed (one redacted line); rerunning resumes it, since
            git-lfs asks the server which objects it lacks first.
    """
    result = LfsResult()
    hash_total = sum(f.size for f in files if cache.get(f) is None)
    hashed = 0

    def count(n: int) -> None:
        nonlocal hashed
        hashed += n
        if progress:
            progress("hash", hashed, hash_total)

    todo: list[tuple[str, int, str]] = []
    try:
        for f in files:
            oid = cache.hash(f, stage.folder, count)
            result.oids[f.path] = oid
            if oid not in on_remote:
                todo.append((oid, f.size, str(f.source(stage.folder))))
    finally:
        cache.save()
    total = sum(size for _, size, _ in todo)
    for start in range(0, len(todo), _BATCH):
        sent, objects = _push(stage, todo[start:start + _BATCH], result.bytes_sent, total, progress)
        result.bytes_sent += sent
        result.objects_sent += objects
    return result


def _push(stage: Stage, items: list[tuple[str, int, str]], before: int, total: int,
          progress: ByteProgress | None) -> tuple[int, int]:
    """One ``git lfs push --object-id`` of ``items`` (oid, size, file to read); bytes and objects sent."""
    for oid, _, source in items:
        _link(stage, oid, Path(source))
    log = stage.dir / "lfs-progress-push.log"
    log.unlink(missing_ok=True)
    env = {**lfs_env(stage), "GIT_LFS_PROGRESS": str(log)}
    proc = subprocess.Popen(["git", "lfs", "push", "--object-id", "origin", *[i[0] for i in items]],
                            env=env, cwd=stage.dir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while proc.poll() is None:
        time.sleep(0.2)
        if progress:
            progress("upload", before + _sent(log, finished=False)[0], total)
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise git_error("git lfs push", stderr, stage.remote.url)
    sent, objects = _sent(log, finished=True)
    if progress:
        progress("upload", before + sent, total)
    return sent, objects


def _sent(log: Path, finished: bool) -> tuple[int, int]:
    """Bytes and objects in git-lfs's progress file (``upload i/n done/total path`` lines, throttled).

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
            done, _, size = parts[2].partition("/")
            if done.isdigit() and size.isdigit():
                seen = per_object.get(parts[3], (0, 0))[0]
                per_object[parts[3]] = (max(seen, int(done)), int(size))
    return sum(size if finished else done for done, size in per_object.values()), len(per_object)


def _link(stage: Stage, oid: str, source: Path) -> None:
    """Make ``source`` (a resolved regular file, never a link) the LFS store's object for ``oid`` without copying it."""
    target = stage.git_dir / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        return
    try:
        os.symlink(source, target)
    except OSError as exc:
        raise VlhubError(f"cannot link {source} into the staging LFS store: {exc}",
                         "check that $VLHUB_HOME is writable") from None
