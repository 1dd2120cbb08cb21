"""Publish planning shared by every publisher: start a plan from one scan, compare it with the remote.

A publisher's preflight is three steps, each here once:

1. :func:`start` scans the folder (:func:`~vlhub.core.publishing.folder.scan`) and runs the
   local checks (:func:`~vlhub.core.publishing.checks.local_problems`): a
   :class:`~vlhub.core.types.PublishPlan` with the files, problems and checks.
2. The publisher adds its own checks (token, name) and reads the remote into
   ``path -> RemoteFile`` (a hub's listing, or the git engine's tree).
3. :func:`plan_files` compares every file (and every generated file) with the remote and
   fills the plan's table, git blob ids and known SHA-256s.

The publish then executes that plan as it is: :func:`pending` (hashes deferred to the real
publish), :func:`check_listing` and :func:`mismatch` (what landed is what was planned).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from vlhub.core.errors import VlhubError
from vlhub.core.home import vlhub_home
from vlhub.core.types import PlannedFile, PublishPlan

from . import folder as fld
from .checks import local_problems
from .hashing import HashCache, git_blob_sha


@dataclass(frozen=True)
class RemoteFile:
    """One file the remote holds.

    ``blob_id``: its git blob id (``None`` where the hub lists none); ``sha256``: the LFS
    object id when it is stored through LFS; ``size``: the file's size (the LFS object's
    size for LFS files; ``None`` when unknown); ``link``: stored as a symbolic link (git mode
    120000), never "the same" as a local file, so that a publish replaces it with the content.
    """

    blob_id: str | None = None
    sha256: str | None = None
    size: int | None = None
    link: bool = False


def staging_dir(label: str, folder: Path) -> Path:
    """``$VLHUB_HOME/publish/<key>``: per folder + target state (hash cache, resume trackers).

    Args:
        label: the target (``hf:org/name``).
        folder: the model folder.

    Returns:
        The folder, created.
    """
    key = hashlib.sha256(f"{folder}\n{label}".encode()).hexdigest()[:16]
    path = vlhub_home() / "publish" / key
    path.mkdir(parents=True, exist_ok=True)
    return path


def staging_space(staging: Path, plan: PublishPlan, label: str) -> None:
    """Refuse a publish whose staging cannot hold what it will write there, before it writes.

    The staging (``$VLHUB_HOME/publish/...``) receives the generated files and the git
    objects of the small files (plus the hash cache and trees); the weights are never copied
    there (the LFS store holds links), so they do not count.

    Raises:
        VlhubError: (exit 1) less space is free than needed: ``the publish staging of TARGET
            needs N in PLACE, but only M is free. Fix: free ... there``.
    """
    from vlhub.core.boundary import require_free_space

    small = sum(f.size for f in plan.sources if not f.lfs and f.path not in plan.extras)
    generated = sum(len(data) for data in plan.extras.values())
    needed = small + 2 * generated + 1024 * (len(plan.sources) + len(plan.extras)) + 1024 * 1024
    require_free_space(staging, needed, f"the publish staging of {label}")


def rerun_command(plan: PublishPlan, options: Mapping[str, Any]) -> str:
    """The ``vlhub publish`` command that publishes this plan's folder to its target again (shown as a fix)."""
    import shlex

    from vlhub.core.secrets import redact

    args = ["vlhub", "publish", str(plan.folder), "--to", plan.target]
    if options.get("via"):
        args += ["--via", str(options["via"])]
    if options.get("follow_symlinks"):
        args.append("--follow-symlinks")
    return redact(shlex.join(args))


def start(label: str, folder: Path, repo_id: str, options: Mapping[str, Any]) -> PublishPlan:
    """Scan ``folder`` once and run the local checks: the start of every publisher's plan.

    Args:
        label: the target as shown (``hf:org/name``).
        folder: the model folder.
        repo_id: the repository's name, for ``require_keyword``.
        options: the publish options (``follow_symlinks``, ``require_keyword``).

    Returns:
        A :class:`PublishPlan` listing every scanned file as to be sent, with the problems and
        checks found so far; the publisher completes it with :func:`plan_files`.

    Raises:
        BadInput: ``folder`` is not a folder.
    """
    folder = Path(folder)
    scanned = fld.scan(folder, bool(options.get("follow_symlinks")))
    problems, checks = local_problems(folder, scanned, repo_id, options)
    files = [PlannedFile(f.path, f.size, f.lfs) for f in scanned.files]
    return PublishPlan(label, files, sum(f.size for f in scanned.files), problems, checks,
                       folder=folder, scanned=scanned, sources=list(scanned.files))


def plan_files(plan: PublishPlan, remote: Mapping[str, RemoteFile], cache: HashCache, *, hash_all: bool,
               sent: Mapping[str, str] | None = None, lfs_as_planned: bool = False,
               progress: Callable[[int], None] | None = None) -> PublishPlan:
    """Compare the plan's files and generated files with the remote: the one planning rule.

    A file is on the remote (skipped) when the remote holds the same content: the same
    SHA-256 where the remote stores it through LFS, else the same git blob id (or the blob
    id this staging last sent, ``sent``, for hubs that list none), with the same size. A
    remote symbolic link is never the same. LFS files are hashed only from the cache unless
    ``hash_all`` (a dry run: the table is then exact; a real publish hashes once, as it sends).
    Small files are read to compute their blob id (the content a git tree check expects).

    Args:
        plan: from :func:`start` (``folder``, ``sources``, ``extras`` set; no problems).
        remote: ``path -> RemoteFile`` of the remote branch (``{}`` for a new repository).
        cache: the SHA-256 cache of this folder + target (saved when anything was hashed).
        hash_all: hash every LFS file the cache does not know.
        sent: ``path -> blob id`` this staging committed last (ModelScope lists no blob ids).
        lfs_as_planned: the local LFS decision is what is committed (the git engine): a file
            is only the same when the remote stores it the same way (pointer or blob).
        progress: called with byte counts while hashing.

    Returns:
        ``plan``, with ``files`` (one :class:`PlannedFile` per source not replaced by a
        generated file, then each generated file), ``bytes_to_send``, ``blobs`` (blob id of
        every small and generated file) and ``hashes`` (SHA-256s known) filled in.
    """
    sent = sent or {}
    planned: list[PlannedFile] = []
    blobs: dict[str, str] = {}
    hashes: dict[str, str] = {}
    hashed = False
    for f in plan.sources:
        if f.path in plan.extras:
            continue
        have = remote.get(f.path)
        if have is not None and have.link:
            have = None
        if not f.lfs:
            blobs[f.path] = git_blob_sha(f.source(plan.folder).read_bytes())
        if f.lfs or (have is not None and have.sha256 and not lfs_as_planned):
            oid = cache.get(f)
            if oid is None and hash_all:
                oid, hashed = cache.hash(f, plan.folder, progress), True
            if oid:
                hashes[f.path] = oid
        same = False
        if have is not None and (have.size is None or have.size == f.size):
            if have.sha256:
                same = hashes.get(f.path) == have.sha256 and (f.lfs or not lfs_as_planned)
            elif not (f.lfs and lfs_as_planned):
                blob = blobs.get(f.path) or git_blob_sha(f.source(plan.folder).read_bytes())
                same = (have.blob_id or sent.get(f.path)) == blob
        planned.append(PlannedFile(f.path, f.size, f.lfs, same))
    if hashed:
        cache.save()
    plan.files, plan.blobs, plan.hashes = planned, blobs, hashes
    _plan_extras(plan, remote, sent)
    return plan


def _plan_extras(plan: PublishPlan, remote: Mapping[str, RemoteFile], sent: Mapping[str, str]) -> None:
    """Append one row per generated file (on the remote when its blob id matches) and set ``bytes_to_send``."""
    for path, data in sorted(plan.extras.items()):
        plan.blobs[path] = blob = git_blob_sha(data)
        have = remote.get(path)
        same = have is not None and not have.link and not have.sha256 and have.size in (None, len(data)) \
            and (have.blob_id or sent.get(path)) == blob
        plan.files.append(PlannedFile(path, len(data), False, same))
    plan.bytes_to_send = sum(p.size for p in plan.files if not p.on_remote)


def settle_extras(plan: PublishPlan, extras: Mapping[str, bytes], remote: Mapping[str, RemoteFile],
                  sent: Mapping[str, str] | None = None) -> None:
    """Replace the plan's generated files, for a repository created after its preflight.

    The preflight of a repository that did not exist yet planned the generated files
    against nothing; the publish reads the new repository right after creating it and
    passes what the publisher generates against it (e.g. no card where the host put a
    README.md). The folder's files stay as planned.

    Args:
        plan: the plan being executed.
        extras: the generated files for the remote as it is now.
        remote: the new repository's files.
        sent: as for :func:`plan_files`.
    """
    for path in plan.extras:
        plan.blobs.pop(path, None)
    plan.files = [p for p in plan.files if p.path not in plan.extras]
    plan.extras = dict(extras)
    _plan_extras(plan, remote, sent or {})


def pending(plan: PublishPlan, remote: Mapping[str, RemoteFile], cache: HashCache,
            progress: Callable[[int], None] | None = None) -> list[PlannedFile]:
    """The planned files a real publish still sends.

    The preflight of a real publish leaves uncached LFS files unhashed (``hash_all`` False),
    so their table row says "send"; here each one the remote holds with the same size is
    hashed once (with the cache) and dropped when its SHA-256 matches. Nothing is re-planned.

    Args:
        plan: the executed plan.
        remote: the remote the plan was made against.
        cache: the plan's hash cache (saved when anything was hashed).
        progress: called with byte counts while hashing.

    Returns:
        The :class:`PlannedFile` rows to send.
    """
    by_path = {f.path: f for f in plan.sources}
    todo, hashed = [], False
    for p in plan.files:
        if p.on_remote:
            continue
        have, f = remote.get(p.path), by_path.get(p.path)
        if f is not None and p.path not in plan.extras and have is not None and have.sha256 \
                and not have.link and have.size in (None, f.size) and p.path not in plan.hashes:
            oid = cache.get(f)
            if oid is None:
                oid, hashed = cache.hash(f, plan.folder, progress), True
            plan.hashes[p.path] = oid
            if oid == have.sha256:
                continue
        todo.append(p)
    if hashed:
        cache.save()
    return todo


def check_listing(listed: Mapping[str, RemoteFile], sent: list[PlannedFile], plan: PublishPlan,
                  cache: HashCache, where: str, *, blobs: bool = False) -> None:
    """After an upload: the remote's listing holds every sent file with the planned size and content.

    Args:
        listed: the remote's files after the upload.
        sent: the rows that were sent.
        plan: the executed plan (its ``hashes`` and ``blobs`` are the planned content).
        cache: the plan's hash cache (an LFS file whose SHA-256 the plan lacks is hashed here).
        where: the new commit, for the message.
        blobs: also compare the git blob id of small files (for hubs whose listing gives real
            git blob ids, such as the Hugging Face Hub).

    Raises:
        VlhubError: a file is missing, or has another size or content (:func:`mismatch`).
    """
    by_path = {f.path: f for f in plan.sources}
    wrong = []
    for p in sent:
        have, f = listed.get(p.path), by_path.get(p.path)
        if have is None:
            wrong.append(f"{p.path} missing")
        elif have.size is not None and have.size != p.size:
            wrong.append(f"{p.path} has {have.size} bytes, not {p.size}")
        elif have.sha256 and f is not None and p.path not in plan.extras \
                and (plan.hashes.get(p.path) or cache.hash(f, plan.folder)) != have.sha256:
            wrong.append(f"{p.path} differs")
        elif blobs and not have.sha256 and p.size < fld.BIG_FILE:
            blob = plan.blobs.get(p.path) or (git_blob_sha(f.source(plan.folder).read_bytes()) if f else None)
            if blob is not None and have.blob_id != blob:
                wrong.append(f"{p.path} differs")
    mismatch(wrong, where)


def mismatch(wrong: list[str], where: str) -> None:
    """Fail the target when what landed on the remote differs from the plan.

    Args:
        wrong: one entry per difference (``PATH missing``, ``PATH differs``, ...).
        where: the commit (its first 12 characters are shown).

    Raises:
        VlhubError: ``wrong`` is not empty (exit code 1; up to eight entries named).
    """
    if wrong:
        shown = ", ".join(wrong[:8]) + (f" and {len(wrong) - 8} more" if len(wrong) > 8 else "")
        raise VlhubError(f"what {where[:12]} holds on the hub differs from what the preflight planned to send: {shown}",
                         "rerun the publish (a file may have changed during it); report this bug if it repeats")
