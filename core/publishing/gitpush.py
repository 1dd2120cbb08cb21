"""Preflight and publish of a model folder to one git + LFS remote: the flow every git-based publisher shares.

A publisher for a git host describes the target as a :class:`GitJob` (label, folder,
:class:`~vlhub.core.publishing.gitlfs.Remote`, repository name, web URL, and the files it
generates beside the folder's, e.g. a model card) and calls:

- :func:`preflight` -> :class:`~vlhub.core.types.PublishPlan`: the folder scanned once
  (or the scan of a plan the publisher started), the remote read once (``ls-remote`` +
  ``fetch``, which also checks the URL and the token), the files' LFS decision (``git
  check-attr``), the generated files and ``.gitattributes``, and the table from
  :func:`~vlhub.core.publishing.plan.plan_files`;
- :func:`publish` (the plan) -> :class:`~vlhub.core.types.Published`: refuses a folder that
  changed since the preflight, hashes and uploads the LFS objects the remote lacks, builds
  the tree, checks it against the plan, commits, pushes and checks the pushed branch.

Example (a publisher for another git host)::

    from vlhub.core.publishing import GitJob, Remote, gitpush

    class MyHost:
        def preflight(self, folder, target, options, progress=None):
            job = GitJob(f"myhost:{target}", folder, Remote(f"https://git.example/{target}.git", "me", token),
                         target, f"https://git.example/{target}")
            return gitpush.preflight(job, options, progress)

        def publish(self, plan, options, progress=None):
            return gitpush.publish(plan, options, progress)
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from filelock import FileLock

from vlhub.core.errors import BadInput
from vlhub.core.types import Progress, ProgressCallback, Published, PublishPlan

from .folder import changed_during_upload, check_unchanged
from .gitlfs import Remote, RemoteState, Stage, merge_attributes
from .hashing import HashCache, git_blob_sha, lfs_pointer
from .plan import plan_files, rerun_command, settle_extras, staging_space, start
from .public import public_provenance

#: ``(names of the folder's files, the remote's README.md or None) -> generated files (path -> bytes)``.
ExtrasFn = Callable[[set[str], "bytes | None"], Mapping[str, bytes]]


@dataclass
class GitJob:
    """One folder to one remote.

    Attributes:
        label: the target as shown (``git:URL``, ``hf:org/name``).
        folder: the model folder.
        remote: where to push (URL without credentials, user, token, default branch).
        repo_id: the repository's name (``--require-keyword``, the model card).
        web_url: shown to the user as the result's URL.
        extras: the files the publisher generates beside the folder's (a model card, ...);
            ``.gitattributes`` is always added by the engine.
    """

    label: str
    folder: Path
    remote: Remote
    repo_id: str
    web_url: str
    extras: ExtrasFn | None = None
    stage: Stage | None = field(default=None, repr=False, compare=False)


def preflight(job: GitJob, options: Mapping[str, Any], progress: ProgressCallback | None = None, *,
              plan: PublishPlan | None = None, remote_exists: bool = True) -> PublishPlan:
    """What would be sent to ``job.remote``; sends and changes nothing.

    Starts hashing the uncached LFS files at once, on background threads
    (:meth:`~vlhub.core.publishing.gitlfs.Stage.start_hashing`), so that hashing overlaps the
    reading of the remote: a dry run (``options["dry_run"]``) waits for them (its table is
    exact); a real publish takes them as they finish, uploading each as soon as it is hashed.
    The hashing stops when the plan has problems.

    Args:
        job: the target.
        options: the publish options (``dry_run``, ``follow_symlinks``, ``require_keyword``).
        progress: ``TARGET: hash`` byte events while hashing.
        plan: a plan the publisher already started with :func:`~vlhub.core.publishing.plan.start`
            (so the folder is scanned once); scanned here otherwise.
        remote_exists: False when the repository does not exist yet (a hub creates it at
            publish time): the remote is then read by :func:`publish`, right after its creation.

    Returns:
        The plan (``job`` and the set-up staging in ``plan.job``, the remote's state in
        ``plan.remote``); with ``problems`` and nothing read from the remote when the local
        checks failed.

    Raises:
        MissingDependency: git or git-lfs is missing.
        VlhubError: the remote cannot be read or rejects the credentials (one redacted line).
    """
    plan = plan if plan is not None else start(job.label, job.folder, job.repo_id, options)
    plan.job = job
    plan.checks["remote"] = job.web_url
    if plan.problems:
        return plan
    stage = job.stage = job.stage or Stage(job.folder, job.remote)
    hasher = stage.start_hashing(plan.sources)
    try:
        _plan(stage, job, plan, options, progress, remote_exists)
    except BaseException:
        hasher.cancel()
        raise
    if plan.problems:
        hasher.cancel()
    return plan


def _plan(stage: Stage, job: GitJob, plan: PublishPlan, options: Mapping[str, Any],
          progress: ProgressCallback | None, remote_exists: bool) -> None:
    """The locked part of :func:`preflight`: the remote, the LFS decision, the generated files, the table."""
    total = sum(f.size for f in plan.sources if f.lfs)
    done = [0]

    def hashed(n: int) -> None:
        done[0] += n
        if progress:
            progress(Progress(f"{job.label}: hash", done[0], total, "B"))

    with FileLock(str(stage.dir / "lock")):
        stage.setup()
        if not options.get("dry_run") and any(f.lfs for f in plan.sources):
            stage.ask_lfs_endpoint()  # needed after the upload: asked meanwhile
        state = stage.remote_state() if remote_exists else None
        remote_attributes = stage.read_remote(state, ".gitattributes") if state is not None else None
        tracked, attributes = stage.lfs_paths(plan.sources, remote_attributes)
        # our rule (weights, files over 10 MB) always holds; the attributes may add files, never drop one
        untracked = [f.path for f in plan.sources if f.lfs and f.path not in tracked]
        if untracked:
            plan.problems.append(f"the .gitattributes to commit does not send {', '.join(untracked[:8])} through LFS "
                                 "(a clone would show LFS pointer text). Fix: remove the folder's .gitattributes "
                                 "rules that unset filter for them (or rename them), then rerun")
        plan.sources = [replace(f, lfs=f.lfs or f.path in tracked) for f in plan.sources]
        plan.extras = _extras(stage, job, plan, state, attributes)
        cache = HashCache(stage.dir / "hashes.json")
        if options.get("dry_run") and not plan.problems and stage.hasher is not None:
            cache.take(stage.hasher, plan.folder, plan.sources, lambda n, _total: hashed(n - done[0]))
        plan_files(plan, state.files() if state else {}, cache,
                   hash_all=bool(options.get("dry_run")), lfs_as_planned=True, progress=hashed)
    plan.remote = state
    if state is not None:
        plan.checks.update(branch=state.branch, remote_head=state.head or "", token_accepted=True)


def _extras(stage: Stage, job: GitJob, plan: PublishPlan, state: RemoteState | None,
            attributes: bytes) -> dict[str, bytes]:
    """The generated files for this remote state, the ``.gitattributes`` to commit (merged with the remote's)
    and the published copy of ``vlhub_provenance.json`` (no local paths: :func:`.public.public_provenance`)."""
    readme = stage.read_remote(state, "README.md") if state is not None else None
    names = {f.path for f in plan.sources}
    extras = dict(job.extras(names, readme)) if job.extras else {}
    for path, data in public_provenance(plan.folder, names).items():
        extras.setdefault(path, data)
    extras[".gitattributes"] = attributes
    return extras


def publish(plan: PublishPlan, options: Mapping[str, Any], progress: ProgressCallback | None = None) -> Published:
    """Execute a plan of :func:`preflight`: LFS objects first (hashed, one ``git lfs push``), one commit, ``git push``.

    Nothing is scanned or planned again: the folder must still hold the planned files
    (:func:`~vlhub.core.publishing.folder.check_unchanged`), the tree is checked against the
    plan before the commit, and the pushed branch after the push. A remote that did not
    exist at the preflight (``plan.remote`` None) is read now, and the generated files follow
    the same rule against it (a README.md the host put there).

    Args:
        plan: the plan, without problems.
        options: the publish options (``message``: the commit message).
        progress: ``TARGET: hash`` / ``TARGET: upload`` byte events, ``TARGET: push``.

    Returns:
        The commit (``changed`` False and no push when the tree is unchanged), bytes and files sent.

    Raises:
        BadInput: the plan has problems, or the folder changed since the preflight (nothing sent).
        VlhubError: a git or LFS step failed, or what landed differs from the plan.
    """
    from . import lfs as lfsupload

    job: GitJob = plan.job
    if plan.problems:
        raise BadInput("; ".join(plan.problems))
    check_unchanged(plan.folder, plan.sources)
    stage = job.stage = job.stage or Stage(job.folder, job.remote)
    rerun = rerun_command(plan, options)
    with FileLock(str(stage.dir / "lock")):
        staging_space(stage.dir, plan, job.label)
        stage.setup()
        state = plan.remote
        if state is None:  # created since the preflight: merge the .gitattributes the host put there
            state = plan.remote = stage.remote_state()
            attributes = merge_attributes(stage.read_remote(state, ".gitattributes") or b"",
                                          plan.extras[".gitattributes"])
            settle_extras(plan, _extras(stage, job, plan, state, attributes), state.files())
        cache = HashCache(stage.dir / "hashes.json")

        def report(kind: str, done: int, total: int) -> None:
            if progress:
                progress(Progress(f"{job.label}: {kind}", done, total, "B"))

        sources = [f for f in plan.sources if f.path not in plan.extras]
        lfs_files = [f for f in sources if f.lfs]
        sent = lfsupload.send(stage, lfs_files, cache, state.oids, report, rerun=rerun, hasher=stage.hasher)
        if not sent.objects_sent and plan.files and all(p.on_remote for p in plan.files):
            stage.cleanup()  # every planned file is on the remote as planned: the tree would be the remote's
            return Published(job.label, job.web_url, state.head or "", 0, 0, changed=False)
        pointers = {f.path: lfs_pointer(sent.oids[f.path], f.size) for f in lfs_files}
        regular = {f.path: f.source(plan.folder) for f in sources if not f.lfs}
        tree = stage.build_tree(state, regular, pointers, plan.extras)
        changed_during_upload(plan.folder, sources, rerun)  # the small files were read into the tree just now
        # exactly what the preflight listed, as regular files with the planned content, or nothing is pushed
        expected = {**{p: plan.blobs[p] for p in [*regular, *plan.extras]},
                    **{p: git_blob_sha(data) for p, data in pointers.items()}}
        stage.verify(tree, expected, state)
        stage.git.update_environment(**stage.commit_author())
        message = options.get("message") or "Upload model with vlhub"
        commit = stage.commit(state, tree, str(message))
        if commit is None:
            stage.cleanup()
            return Published(job.label, job.web_url, state.head or "", sent.bytes_sent, 0, changed=False)
        changed = stage.changed_paths(state, commit)
        if progress:
            progress(Progress(f"{job.label}: push", 0, None, "", f"git push ({len(changed)} files)"))
        stage.push(state, commit)
        stage.check_pushed(state, commit, expected)
        stage.cleanup()
        sizes = {f.path: f.size for f in plan.sources}
        regular_bytes = sum(len(plan.extras[p]) if p in plan.extras else sizes.get(p, 0)
                            for p in changed if p not in pointers)
        return Published(job.label, job.web_url, commit, sent.bytes_sent + regular_bytes, len(changed))
