"""Hash LFS files, upload them, and make sure the server stores every one (public: :func:`send`).

Files whose hash is cached are not read again. The others are hashed on background threads
(:class:`~vlhub.core.publishing.hashing.Hasher`, one file per usable CPU core, smallest
first; a publish starts it at its preflight, so hashing overlaps the preflight's round trips),
and each object the remote lacks is uploaded as soon as its file is hashed, while the others
are still being hashed: a ``git-lfs push --object-id`` per group of objects ready at that
moment, at most :data:`TRANSFERS` objects in flight (each push runs its objects concurrently).
Each hashed file is linked (not copied) into the staging's LFS store for git-lfs to read. The
server is asked first (batch API) which objects it lacks, and only those are pushed: that
makes an interrupted publish resume where it stopped.
Every file is read twice at most: once to hash it, once to send it (the Git LFS batch API
needs an object's oid before its upload can start; the second read usually comes from the
page cache, as the upload follows the hash).

A local remote (``file://`` or a path) gets a real copy of each object, written here
(hashed while copied), never a hard link or a symbolic link into the model folder (git-lfs's
own local transfer hard-links the store's entry, which here is a link to your file).

After the upload nothing is trusted: each file's size, mtime and inode are checked right
after it is hashed and after the uploads (a file changed meanwhile stops the publish before
the commit), and the server is asked, with the Git LFS batch API (``operation: download``;
github.com/git-lfs/git-lfs/blob/main/docs/api/batch.md), whether it holds every object the
commit will point to. git-lfs exits 0 when the server rejects an object (422, content does
not match its oid) or loses it; that check is what makes such a publish fail (exit 1)
instead of pushing pointers to objects the server lacks. Nothing is read again for it.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from vlhub.core.errors import VlhubError
from vlhub.core.secrets import redact

from .folder import LocalFile, changed_during_upload, changed_error
from .gitlfs import Stage, git_error, lfs_env
from .hashing import CHUNK, HashCache, Hasher

#: ``(stage, done, total)`` byte counts; stage is "hash" or "upload".
ByteProgress = Callable[[str, int, int], None]
#: Objects per ``git lfs push`` call (keeps the command line short) and per batch API request.
_BATCH = 64
#: LFS objects uploaded at once (over all ``git lfs push`` processes): each shard is one PUT.
TRANSFERS = 4
#: Seconds between two looks at the upload processes while files are still being hashed.
_POLL = 0.05
#: Seconds between two progress reports.
_REPORT = 0.5
_LFS_JSON = "application/vnd.git-lfs+json"


@dataclass
class LfsResult:
    """Path -> oid of every LFS file, and what was sent."""

    oids: dict[str, str] = field(default_factory=dict)
    bytes_sent: int = 0
    objects_sent: int = 0


def send(stage: Stage, files: list[LocalFile], cache: HashCache, on_remote: set[str],
         progress: ByteProgress | None = None, *, rerun: str = "vlhub publish",
         hasher: Hasher | None = None) -> LfsResult:
    """Hash (where needed) every LFS file, upload those whose object the remote lacks, check the server holds all.

    Uploads start as soon as each file is hashed (see the module's description): the time
    is the first files' hashing, then about the slower of hashing the rest and uploading.

    Args:
        stage: the set-up staging repository (its ``origin`` is the remote).
        files: the LFS files to send (each read from ``LocalFile.source``).
        cache: the staging's hash cache (saved, also when hashing or the upload fails).
        on_remote: LFS oids the remote's tree already points to (not offered again, but
            checked on the server like the others, and sent if the server lacks them).
        progress: ``(stage, done, total)`` byte counts; stage is ``hash`` or ``upload``.
        rerun: the command that publishes again (the fix shown when a file changed).
        hasher: the hashing the preflight started (:meth:`Stage.start_hashing`); the files it
            lacks are added to it. A new one is started when ``None``.

    Returns:
        :class:`LfsResult`: path -> oid of every file, bytes and objects sent.

    Raises:
        VlhubError: a file changed while it was hashed or sent (``PATH changed during
            upload; rerun ... (nothing was committed)``), the upload failed, or the server
            does not hold an object after it (one redacted line each, exit code 1); rerunning
            resumes, since only the objects the server lacks are sent.
        OSError: a file cannot be read.
    """
    result = LfsResult()
    uploads = _Uploads(stage, progress, rerun)
    wanted = {f.path: f for f in files}
    hasher = hasher if hasher is not None else Hasher(stage.folder)
    try:
        for f in files:
            oid = cache.get(f)
            if oid is not None:
                result.oids[f.path] = oid
                if oid not in on_remote:
                    uploads.add(oid, f)
        unhashed = [f for f in files if f.path not in result.oids]
        hasher.add(unhashed)
        uploads.expect(sum(f.size for f in unhashed))
        last = 0.0
        while len(result.oids) < len(wanted) or uploads.active:
            if len(result.oids) < len(wanted):
                if not hasher.busy:  # its results went elsewhere (a hasher shared with another send)
                    hasher = Hasher(stage.folder, [f for f in files if f.path not in result.oids])
                for f, oid in hasher.finished(timeout=_POLL):
                    if f.path not in wanted or f.path in result.oids:
                        continue
                    changed_during_upload(stage.folder, [wanted[f.path]], rerun)  # the hash is the planned file's
                    cache.put(wanted[f.path], oid)
                    result.oids[f.path] = oid
                    uploads.expect(-f.size)
                    if oid not in on_remote:
                        uploads.add(oid, wanted[f.path])
                if progress and len(result.oids) == len(wanted):
                    progress("hash", hasher.total, hasher.total)
            else:
                uploads.wait(_REPORT)
            uploads.pump()
            if progress and time.monotonic() - last >= _REPORT:
                last = time.monotonic()
                if len(result.oids) < len(wanted):
                    progress("hash", hasher.hashed, hasher.total)
                uploads.report()
        uploads.report()
        changed_during_upload(stage.folder, files, rerun)
    except BaseException:
        hasher.cancel()
        uploads.stop()
        changed_during_upload(stage.folder, files, rerun)  # a file changed mid-upload explains a failure best
        raise
    finally:
        cache.save()
    result.bytes_sent, result.objects_sent = uploads.sent, uploads.objects
    paths = {result.oids[f.path]: f.path for f in files}
    wanted_oids = {result.oids[f.path]: f.size for f in files}
    missing = missing_objects(stage, wanted_oids)
    again = [f for f in files if result.oids[f.path] in missing and result.oids[f.path] in on_remote]
    if again:  # the remote's tree points to objects its server lacks (an earlier, broken upload): send them
        sent, objects = _upload(stage, files, [(result.oids[f.path], f) for f in again], progress, rerun)
        result.bytes_sent, result.objects_sent = result.bytes_sent + sent, result.objects_sent + objects
        missing = missing_objects(stage, {oid: wanted_oids[oid] for oid in missing})
    if missing:
        names = sorted(paths[oid] for oid in missing)
        for f in files:  # a rerun hashes them again: their content may differ from the cached oid
            if result.oids[f.path] in missing:
                cache.data.pop(f.path, None)
        cache.save()
        shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
        raise VlhubError(f"after the upload, the LFS server of {redact(stage.remote.url)} does not hold {shown} "
                         "(it rejected or lost the object); nothing was committed",
                         f"rerun `{rerun}`; if it fails again, check the server's storage and logs")
    return result


def _upload(stage: Stage, files: list[LocalFile], items: list[tuple[str, LocalFile]],
            progress: ByteProgress | None, rerun: str) -> tuple[int, int]:
    """Send ``items`` (oid, file) whose files are hashed already, checking the files before and after; bytes, objects."""
    changed_during_upload(stage.folder, files, rerun)
    uploads = _Uploads(stage, progress, rerun)
    try:
        for oid, f in items:
            uploads.add(oid, f)
        while uploads.active:
            uploads.pump()
            uploads.wait(_REPORT)
        uploads.report()
    except BaseException:
        uploads.stop()
        changed_during_upload(stage.folder, files, rerun)
        raise
    changed_during_upload(stage.folder, files, rerun)
    return uploads.sent, uploads.objects


@dataclass
class _Push:
    """One running ``git-lfs push``: its process, stderr file and objects (oid, size, file to read)."""

    proc: subprocess.Popen
    err: Path
    items: list[tuple[str, int, str]]

    @property
    def size(self) -> int:
        return sum(size for _, size, _ in self.items)

    def read(self) -> int:
        """Bytes the process has read so far (``rchar`` of ``/proc/PID/io``: its objects, as it sends them, and a
        few KB of git's answers), at most its objects' size; 0 where ``/proc`` cannot tell."""
        try:
            with open(f"/proc/{self.proc.pid}/io", encoding="ascii") as handle:
                rchar = int(handle.readline().split()[1])
        except (OSError, ValueError, IndexError):
            return 0
        return min(rchar, self.size)


class _Uploads:
    """Objects sent as they are added: ``git-lfs push`` processes (at most :data:`TRANSFERS` objects in
    flight), or copies into a local remote's store. :meth:`pump` starts and reaps; errors are raised there.

    Before a push, the server is asked (batch API, ``operation: upload``) which of its objects it lacks:
    only those are pushed and counted as sent (an interrupted publish resumes without sending again).
    Progress comes from the bytes each ``git-lfs`` process has read. Not ``GIT_LFS_PROGRESS``: git-lfs
    writes one line per 32 KB sent to that file and fsyncs it after each (``tq/meter.go`` ``logBytes``,
    ``tools/sync_writer.go``), 32,768 fsyncs per GB, which slowed a 1 GB push from 2.3 s to 7 s here.
    """

    def __init__(self, stage: Stage, progress: ByteProgress | None, rerun: str) -> None:
        self.stage, self.progress, self.rerun = stage, progress, rerun
        self.local = stage.local_remote()
        self.queued: list[tuple[str, int, str]] = []
        self.seen: set[str] = set()
        self.checked: set[str] = set()
        self.paths: dict[str, str] = {}
        self.running: list[_Push] = []
        self.sent = self.objects = self.total = self.unknown = 0
        self.count = 0

    @property
    def active(self) -> bool:
        """Objects are queued or being sent."""
        return bool(self.queued or self.running)

    def add(self, oid: str, f: LocalFile) -> None:
        """Queue one object (an oid already added is sent once)."""
        if oid not in self.seen:
            self.seen.add(oid)
            self.paths[oid] = f.path
            self.queued.append((oid, f.size, str(f.source(self.stage.folder))))
            self.total += f.size

    def expect(self, size: int) -> None:
        """Bytes of files still being hashed (they may be sent: counted in the progress total)."""
        self.unknown += size

    def pump(self) -> None:
        """Reap finished pushes (raising on a failed one) and start pushes for the queued objects."""
        for push in [p for p in self.running if p.proc.poll() is not None]:
            self.running.remove(push)
            if push.proc.returncode != 0:
                raise git_error("git lfs push", push.err.read_text(errors="replace"), self.stage.remote.url)
            self.sent, self.objects = self.sent + push.size, self.objects + len(push.items)
        if self.local is not None and self.queued:
            items, self.queued = self.queued, []
            for start in range(0, len(items), _BATCH):
                sent, objects = _copy(self.stage, self.local, items[start:start + _BATCH], self.paths, self.sent,
                                      self.total + self.unknown, self.progress, self.rerun)
                self.sent, self.objects = self.sent + sent, self.objects + objects
            return
        free = TRANSFERS - sum(len(p.items) for p in self.running)
        if self.queued and free > 0:
            self._skip_present()
        while self.queued and free > 0:
            items, self.queued = self.queued[:min(free, _BATCH)], self.queued[min(free, _BATCH):]
            free -= len(items)
            self.running.append(self._push(items))

    def _skip_present(self) -> None:
        """Drop the queued objects the server holds already (asked once per object; asking may fail: then all are sent)."""
        ask = [(oid, size) for oid, size, _ in self.queued if oid not in self.checked]
        if not ask:
            return
        self.checked.update(oid for oid, _ in ask)
        try:
            lacking = _lacking(self.stage, ask)
        except VlhubError:
            return  # git-lfs asks the server itself (and reports what fails)
        present = {oid for oid, _ in ask if oid not in lacking}
        self.total -= sum(size for oid, size in ask if oid in present)
        self.queued = [item for item in self.queued if item[0] not in present]

    def _push(self, items: list[tuple[str, int, str]]) -> _Push:
        """Start one ``git-lfs push --object-id`` of ``items`` (oid, size, file to read)."""
        for oid, _, source in items:
            _link(self.stage, oid, Path(source))
        self.count += 1
        err = self.stage.dir / f"lfs-push-{self.count}.err"
        with open(err, "wb") as errors:
            proc = subprocess.Popen(["git-lfs", "push", "--object-id", "origin", *[i[0] for i in items]],
                                    env=lfs_env(self.stage), cwd=self.stage.dir, stdout=subprocess.DEVNULL,
                                    stderr=errors)
        return _Push(proc, err, items)

    def wait(self, timeout: float) -> None:
        """Until the first running push ends, at most ``timeout`` seconds (a copy runs in :meth:`pump`)."""
        if self.running:
            try:
                self.running[0].proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass

    def report(self) -> None:
        """One ``upload`` progress event: bytes sent (running pushes included) of the bytes to send."""
        if self.progress:
            self.progress("upload", self.sent + sum(p.read() for p in self.running), self.total + self.unknown)

    def stop(self) -> None:
        """End the pushes this object started (after a failure)."""
        for push in self.running:
            if push.proc.poll() is None:
                push.proc.terminate()
            try:
                push.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                push.proc.kill()
                push.proc.wait()
        self.running = []
        self.queued = []


def _copy(stage: Stage, git_dir: Path, items: list[tuple[str, int, str]], paths: Mapping[str, str], before: int,
          total: int, progress: ByteProgress | None, rerun: str) -> tuple[int, int]:
    """Copy ``items`` into a local remote's LFS store: a new file per object, hashed while copied; bytes, objects.

    An object already stored there as a regular file of the right size is kept (as git-lfs
    would); a link (left by an earlier publish) or a file of another size is replaced.
    """
    from vlhub.core.boundary import require_free_space

    store = git_dir / "lfs" / "objects"
    need = [(oid, size, source) for oid, size, source in items if not _stored_locally(store, oid, size)]
    if need:
        require_free_space(store if store.exists() else git_dir, sum(s for _, s, _ in need) + 1024 * 1024,
                           f"the LFS objects copied into {redact(stage.remote.url)}")
    sent = 0
    for oid, size, source in need:
        target = store / oid[:2] / oid[2:4] / oid
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{oid}.vlhub-partial")
        digest = hashlib.sha256()
        try:
            with open(source, "rb", buffering=0) as src, open(partial, "wb") as out:
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    sent += len(chunk)
                    if progress:
                        progress("upload", before + sent, total)
            if digest.hexdigest() != oid:
                raise changed_error([paths.get(oid, source)], rerun)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    return sent, len(need)


def _stored_locally(store: Path, oid: str, size: int) -> bool:
    """A local remote holds ``oid``: a regular file (not a link) of ``size`` bytes in its LFS store."""
    try:
        st = os.lstat(store / oid[:2] / oid[2:4] / oid)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size == size


def missing_objects(stage: Stage, objects: Mapping[str, int]) -> set[str]:
    """The oids of ``objects`` (oid -> size) the remote's LFS server does not hold, asked without reading any file.

    A local remote's store is looked at (a regular file of the right size, never a link); any
    other remote is asked with the Git LFS batch API, ``operation: download``, at the endpoint
    git-lfs uses (``git lfs env``; over ssh, the one ``git-lfs-authenticate`` gives): an object
    the server holds comes back with a ``download`` action, one it lacks with an error (404,
    or 422 when its size differs). A server that answers the whole request with 404 when it
    holds none of the objects (giftless does) is asked again with ``operation: upload``: an
    object it holds comes back without an ``upload`` action.

    Raises:
        VlhubError: the server cannot be asked (unreachable, credentials rejected, no LFS API).
    """
    if not objects:
        return set()
    local = stage.local_remote()
    if local is not None:
        store = local / "lfs" / "objects"
        return {oid for oid, size in objects.items() if not _stored_locally(store, oid, size)}
    href, headers = stage.lfs_endpoint()
    items = list(objects.items())
    missing: set[str] = set()
    for start in range(0, len(items), _BATCH):
        body = {"operation": "download", "transfers": ["basic"], "hash_algo": "sha256",
                "objects": [{"oid": oid, "size": size} for oid, size in items[start:start + _BATCH]]}
        answer, action = _batch(stage, href, headers, body), "download"
        if answer is None:
            answer, action = _batch(stage, href, headers, {**body, "operation": "upload"}), "upload"
        if answer is None:
            raise VlhubError(f"the LFS server of {redact(stage.remote.url)} answers 404 (no such repository) to the "
                             "batch API; nothing was committed", "check the remote URL and that the host has Git LFS")
        objects = [o for o in answer.get("objects", []) if isinstance(o, dict) and not o.get("error")]
        present = {str(o.get("oid")) for o in objects
                   if (action in (o.get("actions") or {})) == (action == "download")}
        missing.update(oid for oid, _ in items[start:start + _BATCH] if oid not in present)
    return missing


def _lacking(stage: Stage, objects: list[tuple[str, int]]) -> set[str]:
    """The oids of ``objects`` (oid, size) the server would accept an upload of (batch API, ``operation: upload``:
    an object it holds comes back without an ``upload`` action); all of them when the API answers 404.

    Raises:
        VlhubError: the server cannot be asked.
    """
    href, headers = stage.lfs_endpoint()
    lacking: set[str] = set()
    for start in range(0, len(objects), _BATCH):
        chunk = objects[start:start + _BATCH]
        answer = _batch(stage, href, headers, {"operation": "upload", "transfers": ["basic"], "hash_algo": "sha256",
                                               "objects": [{"oid": oid, "size": size} for oid, size in chunk]})
        held = {str(o.get("oid")) for o in (answer or {}).get("objects", [])
                if isinstance(o, dict) and not o.get("error") and "upload" not in (o.get("actions") or {})}
        lacking.update(oid for oid, _ in chunk if oid not in held)
    return lacking


def _batch(stage: Stage, href: str, headers: Mapping[str, str], body: dict) -> dict | None:
    """POST one batch request; the parsed answer, ``None`` for HTTP 404, or a one-line error."""
    import ssl
    import urllib.error
    import urllib.request

    from vlhub.core.net import timeouts

    where = redact(stage.remote.url)
    request = urllib.request.Request(href.rstrip("/") + "/objects/batch", data=json.dumps(body).encode(),
                                     method="POST", headers={"Accept": _LFS_JSON, "Content-Type": _LFS_JSON,
                                                             **headers})
    context = None
    if os.environ.get("GIT_SSL_NO_VERIFY"):
        context = ssl._create_unverified_context()  # what git and git-lfs do with this variable
    elif os.environ.get("GIT_SSL_CAINFO"):
        context = ssl.create_default_context(cafile=os.environ["GIT_SSL_CAINFO"])
    limits = timeouts()
    try:
        with urllib.request.urlopen(request, timeout=limits.connect + limits.read, context=context) as response:
            answer = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        if exc.code in (401, 403):
            raise VlhubError(f"asking the LFS server of {where} which objects it holds: it rejected the credentials "
                             f"(HTTP {exc.code}); nothing was committed",
                             "check the token variable (`vlhub doctor` shows which one is found)") from None
        raise VlhubError(f"asking the LFS server of {where} which objects it holds failed (HTTP {exc.code}); "
                         "nothing was committed", "rerun the publish; check the server's logs if it repeats") from None
    except (OSError, ValueError) as exc:
        from vlhub.core.boundary import network_error

        known = network_error(exc)
        if known is not None:
            raise known from None
        raise VlhubError(f"asking the LFS server of {where} which objects it holds failed "
                         f"({redact(str(exc))[:200]}); nothing was committed", "rerun the publish") from None
    if not isinstance(answer, dict):
        raise VlhubError(f"the LFS server of {where} answered the batch request with something that is not a "
                         "batch response; nothing was committed", "check that the server supports Git LFS")
    return answer


def basic_auth(user: str, token: str) -> dict[str, str]:
    """The ``Authorization`` header git-lfs sends with the credential helper's answer (none without a token)."""
    if not token:
        return {}
    return {"Authorization": "Basic " + base64.b64encode(f"{user or 'vlhub'}:{token}".encode()).decode()}


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
