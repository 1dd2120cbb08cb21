"""Preflight and publish of a model folder to one git + LFS remote (every ``--via git`` path)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from filelock import FileLock

from vlhub.core.types import PlannedFile, Preflight, Progress, ProgressCallback, Published

from . import card
from . import folder as fld
from .checks import local_problems
from .gitlfs import Remote, RemoteState, Stage


@dataclass
class GitJob:
    """One folder to one remote; ``repo_id`` names the model in its card, ``web_url`` is shown to the user."""

    label: str
    folder: Path
    remote: Remote
    repo_id: str
    web_url: str
    modelscope: bool = False


@dataclass
class _Plan:
    state: RemoteState
    files: list[fld.LocalFile]
    extras: dict[str, bytes]
    planned: list[PlannedFile]
    blobs: dict[str, str]  # small file or generated file -> the git blob id its content gives


#: Remote state read by this process's preflight, reused by the publish that follows it.
_SEEN: dict[Path, RemoteState] = {}


def _plan(stage: Stage, job: GitJob, options: Mapping[str, Any], hash_all: bool,
          progress: Callable[[int], None] | None = None) -> _Plan:
    state = _SEEN.pop(stage.git_dir, None) or stage.remote_state()
    scanned = fld.scan(stage.folder, bool(options.get("follow_symlinks")))
    fld.refuse(scanned, job.label)
    files = scanned.files
    lfs, attributes = stage.lfs_paths(files)
    files = [replace(f, lfs=f.path in lfs) for f in files]
    names = {f.path for f in files}
    extras = card.extra_files(stage.folder, names, job.repo_id, stage.read_remote(state, "README.md"),
                              bool(options.get("overwrite_card")), job.modelscope)
    extras[".gitattributes"] = attributes
    cache = fld.HashCache(stage.dir / "hashes.json")
    planned = []
    blobs: dict[str, str] = {}
    for f in files:
        if f.path in extras:
            continue
        # an entry the remote holds as a symbolic link is never "the same": the publish replaces it
        remote = None if f.path in state.links else state.entries.get(f.path)
        if f.lfs:
            oid = cache.get(f)
            if oid is None and hash_all:
                oid = fld.sha256_file(f.source(stage.folder), progress)
                cache.put(f, oid)
            same = oid is not None and remote is not None and remote[1] == oid
        else:
            blobs[f.path] = fld.git_blob_sha(f.source(stage.folder).read_bytes())
            same = remote is not None and remote[0] == blobs[f.path]
        planned.append(PlannedFile(f.path, f.size, f.lfs, same))
    if hash_all:
        cache.save()
    for path, data in sorted(extras.items()):
        blobs[path] = fld.git_blob_sha(data)
        remote = None if path in state.links else state.entries.get(path)
        planned.append(PlannedFile(path, len(data), False, remote is not None and remote[0] == blobs[path]))
    return _Plan(state, files, extras, planned, blobs)


def preflight(job: GitJob, options: Mapping[str, Any], progress: ProgressCallback | None = None) -> Preflight:
    """What would be sent; hashes uncached weights only for a dry run (the real publish hashes them once, as it sends)."""
    stage = Stage(job.folder, job.remote)
    scanned = fld.scan(stage.folder, bool(options.get("follow_symlinks")))
    files = scanned.files
    problems, checks = local_problems(stage.folder, scanned, job.repo_id, options)
    checks["remote"] = job.web_url
    if problems:
        return Preflight(job.label, [PlannedFile(f.path, f.size, f.lfs) for f in files],
                         sum(f.size for f in files), problems, checks)
    hash_all = bool(options.get("dry_run"))
    total = sum(f.size for f in files if f.lfs)
    done = [0]

    def hashed(n: int) -> None:
        done[0] += n
        if progress:
            progress(Progress(f"{job.label}: hash", done[0], total, "B"))

    with FileLock(str(stage.dir / "lock")):
        stage.setup()
        plan = _plan(stage, job, options, hash_all, hashed)
        _SEEN[stage.git_dir] = plan.state
    checks.update(branch=plan.state.branch, remote_head=plan.state.head or "", token_accepted=True)
    return Preflight(job.label, plan.planned, sum(p.size for p in plan.planned if not p.on_remote), [], checks)


def publish(job: GitJob, options: Mapping[str, Any], progress: ProgressCallback | None = None) -> Published:
    """Send the folder: LFS objects first (hashed, then one ``git lfs push``), then one commit, then ``git push``."""
    from . import lfsupload

    stage = Stage(job.folder, job.remote)
    with FileLock(str(stage.dir / "lock")):
        stage.setup()
        plan = _plan(stage, job, options, hash_all=False)
        cache = fld.HashCache(stage.dir / "hashes.json")

        def report(kind: str, done: int, total: int) -> None:
            if progress:
                progress(Progress(f"{job.label}: {kind}", done, total, "B"))

        lfs_files = [f for f in plan.files if f.lfs and f.path not in plan.extras]
        sent = lfsupload.send(stage, lfs_files, cache, plan.state.oids, report)
        pointers = {f.path: fld.lfs_pointer(sent.oids[f.path], f.size) for f in lfs_files}
        regular = {f.path: f.source(stage.folder) for f in plan.files if not f.lfs and f.path not in plan.extras}
        tree = stage.build_tree(plan.state, regular, pointers, plan.extras)
        # exactly what the preflight listed, as regular files with the planned content, or nothing is pushed
        expected = {**plan.blobs, **{p: fld.git_blob_sha(data) for p, data in pointers.items()}}
        stage.verify(tree, expected, plan.state)
        stage.git.update_environment(**stage.commit_author())
        message = options.get("message") or "Upload model with vlhub"
        commit = stage.commit(plan.state, tree, str(message))
        if commit is None:
            stage.cleanup()
            return Published(job.label, job.web_url, plan.state.head or "", sent.bytes_sent, 0, changed=False)
        changed = stage.changed_paths(plan.state, commit)
        if progress:
            progress(Progress(f"{job.label}: push", 0, None, "", f"git push ({len(changed)} files)"))
        stage.push(plan.state, commit)
        stage.check_pushed(plan.state, commit, expected)
        stage.cleanup()
        sizes = {f.path: f.size for f in plan.files}
        regular_bytes = sum(len(plan.extras[p]) if p in plan.extras else sizes.get(p, 0)
                            for p in changed if p not in pointers)
        return Published(job.label, job.web_url, commit, sent.bytes_sent + regular_bytes, len(changed))
