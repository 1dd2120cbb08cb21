"""``hf:ORG/NAME``: the Hugging Face Hub (or a mirror at ``$HF_ENDPOINT``) through huggingface_hub, or git + LFS.

The SDK sees the user's files where they are: one ``CommitOperationAdd`` per file, read
from its resolved path (``LocalFile.source``), so a linked file is sent as its content; the
SDK skips LFS objects the Hub already holds, so a rerun resumes and an unchanged folder
makes no commit. After the commit, the Hub's listing is compared with the plan.

Each weight file is hashed once: the preflight starts hashing the files the hash cache
lacks on background threads (:class:`~vlhub.core.publishing.hashing.Hasher`, one per CPU
core) while it reads the Hub, and the publish hands each SHA-256 to the SDK
(``UploadInfo.sha256``, which huggingface_hub otherwise computes before its LFS batch
request), then keeps the SDK's answer in the cache, so that a re-publish of an unchanged
folder reads nothing. With a huggingface_hub that hashes every file when the
``CommitOperationAdd`` is made (before ``UploadInfo.is_hashed`` existed), vlhub leaves the
hashing to it.
``--via git`` pushes with the core git + LFS engine (:mod:`vlhub.core.publishing.gitpush`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from vlhub.core.errors import BadInput
from vlhub.core.home import vlhub_home
from vlhub.core.publishing import (GitJob, HashCache, Remote, RemoteFile, changed_during_upload, check_listing,
                                   gitpush, plan_files, rerun_command, settle_extras, split_repo_id, staging_dir)
from vlhub.core.publishing.access import HubTarget, Identity, require_write, visibility
from vlhub.core.publishing.hashing import Hasher
from vlhub.core.net import install_hf_timeouts
from vlhub.core.secrets import Secret, find_token, hf_login_store
from vlhub.core.types import Progress, ProgressCallback, Published, PublishPlan

from . import card
from .common import HubJob, HubPublisher, hub_plan, ready_to_send, redact_sdk_logging, via_git

HF_DEFAULT = "https://huggingface.co"


def _endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or HF_DEFAULT).rstrip("/")


def target(repo_id: str) -> HubTarget:
    """``hf:repo_id`` as the access checks and the SDK's errors name it (endpoint, where the token is)."""
    return HubTarget(f"hf:{repo_id}", "Hugging Face", repo_id, _endpoint(), find_token("hf").source, "HF_TOKEN",
                     "https://huggingface.co/settings/tokens")


def _api() -> tuple[Any, str, str]:
    from huggingface_hub import HfApi

    install_hf_timeouts()
    endpoint = _endpoint()
    token = find_token("hf").value
    redact_sdk_logging("huggingface_hub")
    return HfApi(endpoint=endpoint, token=token or None), endpoint, token


def _remote(api: Any, repo_id: str) -> tuple[dict[str, Any], bytes | None]:
    """Files of the repo's main branch and its README.md (empty when the repo does not exist yet)."""
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        entries = list(api.list_repo_tree(repo_id, recursive=True))
    except (RepositoryNotFoundError, RevisionNotFoundError):
        return {}, None
    except HfHubHTTPError as exc:
        if getattr(exc.response, "status_code", None) == 404:
            return {}, None
        raise
    remote = {e.path: _remote_file(e) for e in entries if hasattr(e, "blob_id")}
    readme = None
    if "README.md" in remote and (remote["README.md"].size or 0) < 1024 * 1024:
        path = api.hf_hub_download(repo_id, "README.md", cache_dir=str(vlhub_home() / "cache" / "hf"))
        readme = Path(path).read_bytes()
    return remote, readme


def _remote_file(entry: Any) -> RemoteFile:
    """A ``list_repo_tree`` file entry: git blob id, sha256 when stored through LFS, size."""
    lfs = getattr(entry, "lfs", None)
    return RemoteFile(entry.blob_id, lfs.sha256 if lfs else None, entry.size)


def identity(whoami: Mapping[str, Any]) -> Identity:
    """The token's :class:`Identity` from ``HfApi.whoami()`` (the Hub's ``/api/whoami-v2``).

    Reads ``name``, ``orgs[].name``/``roleInOrg``, ``auth.accessToken.role`` (``read``, ``write``,
    ``fineGrained``) and, for a fine-grained token, the entities of
    ``auth.accessToken.fineGrained.scoped[]`` whose ``permissions`` hold ``repo.write`` (a user or
    organisation name, or a repository id).
    """
    orgs = {str(o["name"]): str(o.get("roleInOrg") or "") for o in whoami.get("orgs") or []
            if isinstance(o, dict) and o.get("name")}
    token = (whoami.get("auth") or {}).get("accessToken") or {}
    role = str(token.get("role") or "")
    writable = None
    if role == "fineGrained":
        scoped = (token.get("fineGrained") or {}).get("scoped") or []
        writable = frozenset(str((s.get("entity") or {}).get("name") or "") for s in scoped
                             if isinstance(s, dict) and "repo.write" in (s.get("permissions") or [])) - {""}
    return Identity(str(whoami.get("name") or ""), orgs, role, writable)


def _identity(api: Any, token: str, where: HubTarget) -> Identity:
    """whoami with the token (a rejected token is worded by the publisher's ``hub_errors``)."""
    if not token:
        raise BadInput("publish.no_token", **where.words())
    return identity(api.whoami(token=token))


def _repo_state(api: Any, repo_id: str) -> tuple[bool, bool | None]:
    """``(exists, private)`` of the repository (``repo_info``)."""
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        return True, bool(api.repo_info(repo_id).private)
    except RepositoryNotFoundError:
        return False, None


def preflight(folder: Path, repo_id: str, options: Mapping[str, Any],
              progress: ProgressCallback | None = None) -> PublishPlan:
    """The token (whoami: may it write to the namespace?), the repository's visibility, files (one scan),
    what the Hub already has and the folder's contents."""
    label = f"hf:{repo_id}"
    api, endpoint, token = _api()
    where = target(repo_id)
    user = _identity(api, token, where)
    require_write(user, where)
    exists, private = _repo_state(api, repo_id)
    plan = hub_plan(label, folder, repo_id, endpoint, options, {
        "endpoint": endpoint, "token": find_token("hf").public(), "user": user.user, "via": options.get("via") or "api",
        "visibility": visibility(where, exists, private, options)})
    if plan.problems:
        return plan
    extras = card.extras_for(folder, repo_id, bool(options.get("overwrite_card")), base_model=options.get("base_model"))
    if options.get("via") == "git":
        return via_git(plan, options, progress, exists,
                       Remote(f"{endpoint}/{repo_id}", user.user or "vlhub", token, "main"), f"{endpoint}/{repo_id}",
                       extras)
    cache = HashCache(staging_dir(label, folder) / "hashes.json")
    plan.job = HfJob(plan.job.label, plan.job.repo_id, plan.job.endpoint, _start_hashing(plan, cache))
    remote, readme = _remote(api, repo_id)
    plan.extras, plan.remote = extras({f.path for f in plan.sources}, readme), remote
    if options.get("dry_run") and plan.job.hasher is not None:
        cache.take(plan.job.hasher, plan.folder, plan.sources)
    plan_files(plan, remote, cache, hash_all=bool(options.get("dry_run")))
    plan.checks["repo_exists"] = bool(remote)
    return plan


def publish(plan: PublishPlan, options: Mapping[str, Any], progress: ProgressCallback | None = None) -> Published:
    """``create_repo(exist_ok=True)``, then one commit of the planned files (LFS uploads first, skipped when present)."""
    from huggingface_hub import CommitOperationAdd

    ready_to_send(plan)
    api, endpoint, _token = _api()
    job = plan.job
    repo_id, label, folder = job.repo_id, job.label, plan.folder
    api.create_repo(repo_id, private=bool(options.get("private") or options.get("make_private")), exist_ok=True)
    if plan.checks.get("visibility") == "public-to-private":  # --make-private, before any byte is sent
        api.update_repo_settings(repo_id, private=True)
    if isinstance(job, GitJob):
        return gitpush.publish(plan, options, progress)
    if not plan.checks.get("repo_exists"):  # created now: the card follows the rule against what the Hub put there
        remote, readme = _remote(api, repo_id)
        extras = card.extra_files(folder, {f.path for f in plan.sources}, repo_id, readme,
                                  bool(options.get("overwrite_card")), base_model=options.get("base_model"))
        settle_extras(plan, extras, remote)
        plan.remote = remote
    sources = [f for f in plan.sources if f.path not in plan.extras]
    cache = HashCache(staging_dir(label, folder) / "hashes.json")
    known = _hashes(job, folder, sources, cache, label, progress)
    ops = [CommitOperationAdd(f.path, str(f.source(folder))) for f in sources]
    for op in ops:
        if op.path_in_repo in known:  # the SDK does not hash it again
            op.upload_info.sha256 = bytes.fromhex(known[op.path_in_repo])
    ops += [CommitOperationAdd(path, data) for path, data in plan.extras.items()]
    if progress:
        progress(Progress(f"{label}: upload", 0, sum(op.upload_info.size for op in ops), "B", "uploading"))
    rerun = rerun_command(plan, options)
    api.preupload_lfs_files(repo_id, additions=ops)
    changed_during_upload(folder, sources, rerun)  # nothing is committed when a file changed while it was sent
    _remember(ops, sources, known, cache)
    changed = [op for op in ops if op._remote_oid is None or op._remote_oid != op._local_oid]
    if not changed:
        return Published(label, f"{endpoint}/{repo_id}", api.repo_info(repo_id).sha or "", 0, 0, changed=False)
    info = api.create_commit(repo_id, operations=changed,
                             commit_message=options.get("message") or "Upload model with vlhub")
    changed_during_upload(folder, sources, rerun, committed=True)  # small files are read by create_commit
    # the commit holds every planned file with the planned content (sha256 of LFS files, git blob id otherwise)
    plan.hashes.update({op.path_in_repo: op.upload_info.sha256.hex() for op in ops
                        if op.path_in_repo not in plan.extras})
    listed = {e.path: _remote_file(e)
              for e in api.list_repo_tree(repo_id, recursive=True, revision=info.oid or None) if hasattr(e, "blob_id")}
    check_listing(listed, plan.files, plan, cache, info.oid or "the commit", blobs=True)
    sent = sum(op.upload_info.size for op in changed)
    if progress:
        progress(Progress(f"{label}: upload", sent, sent, "B", "done"))
    return Published(label, f"{endpoint}/{repo_id}", info.oid or "", sent, len(changed), changed=bool(changed))


@dataclass
class HfJob(HubJob):
    """A Hugging Face API publish: where it goes, and the hashing its preflight started (``None``: the SDK hashes)."""

    hasher: Hasher | None = field(default=None, repr=False, compare=False)


def _sdk_hashes_lazily() -> bool:
    """huggingface_hub computes an addition's SHA-256 only when it needs it (``UploadInfo.is_hashed``,
    huggingface_hub 1.x and later); older versions hash every file in ``CommitOperationAdd`` itself."""
    from huggingface_hub.lfs import UploadInfo

    return isinstance(getattr(UploadInfo, "is_hashed", None), property)


def _start_hashing(plan: PublishPlan, cache: HashCache) -> Hasher | None:
    """Start hashing the weights (``LocalFile.lfs``) the cache lacks on background threads, while the preflight
    reads the Hub; ``None`` when the SDK would hash them anyway (one read for the hash, not two)."""
    if not _sdk_hashes_lazily():
        return None
    return Hasher(plan.folder, [f for f in plan.sources if f.lfs and cache.get(f) is None])


def _hashes(job: Any, folder: Path, sources: list, cache: HashCache, label: str,
            progress: ProgressCallback | None) -> dict[str, str]:
    """``path -> sha256 hex`` of the files whose hash is known: cached, or hashed by the preflight's
    :class:`Hasher` (waited for here, with ``TARGET: hash`` progress, and kept in the cache)."""
    hasher = getattr(job, "hasher", None)
    if hasher is None or not _sdk_hashes_lazily():
        return {f.path: oid for f in sources if (oid := cache.get(f)) is not None}

    def report(done: int, total: int) -> None:
        if progress:
            progress(Progress(f"{label}: hash", done, total, "B", "hashing"))

    known = cache.take(hasher, folder, sources, report)
    report(hasher.total, hasher.total)
    return known


def _remember(ops: list, sources: list, known: Mapping[str, str], cache: HashCache) -> None:
    """Keep the SHA-256 the SDK computed for the weights vlhub did not know (the next publish reads nothing)."""
    by_path = {f.path: f for f in sources}
    fresh = {op.path_in_repo: op.upload_info.sha256.hex() for op in ops
             if op.path_in_repo in by_path and op.path_in_repo not in known and by_path[op.path_in_repo].lfs
             and getattr(op.upload_info, "is_hashed", True)}
    for path, oid in fresh.items():
        cache.put(by_path[path], oid)
    if fresh:
        cache.save()


class HfPublisher(HubPublisher):
    """Hugging Face (or a mirror at $HF_ENDPOINT): ``hf:ORG/NAME``."""

    name = "hf"
    description = "Hugging Face Hub via huggingface_hub (token $HF_TOKEN or `hf auth login`; --via git for git + LFS)."
    secrets = (Secret("hf", ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"), "Hugging Face access token with write access "
                      "(huggingface.co/settings/tokens)", hf_login_store, "hf auth login store"),)
    plan = staticmethod(preflight)
    send = staticmethod(publish)
    target = staticmethod(target)

    def repo_id(self, target: str) -> str:
        split_repo_id("hf", target, "your-name/InternVL2-2B-food")
        if len(target) > 96:
            raise BadInput(f"hf: {target!r} is longer than 96 characters", "choose a shorter name")
        return target
