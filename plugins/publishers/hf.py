"""``hf:ORG/NAME``: the Hugging Face Hub (or a mirror at ``$HF_ENDPOINT``) through huggingface_hub, or git + LFS.

The SDK sees the user's files where they are: one ``CommitOperationAdd`` per file, read
from its resolved path (``LocalFile.source``), so a linked file is sent as its content; the
SDK skips LFS objects the Hub already holds, so a rerun resumes and an unchanged folder
makes no commit. After the commit, the Hub's listing is compared with the plan.
``--via git`` pushes with the core git + LFS engine (:mod:`vlhub.core.publishing.gitpush`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from vlhub.core.errors import BadInput
from vlhub.core.home import vlhub_home
from vlhub.core.publishing import (GitJob, HashCache, Remote, RemoteFile, changed_during_upload, check_listing,
                                   gitpush, plan_files, rerun_command, settle_extras, split_repo_id, staging_dir)
from vlhub.core.boundary import network_error
from vlhub.core.net import install_hf_timeouts
from vlhub.core.secrets import Secret, find_token, hf_login_store, redact
from vlhub.core.types import Progress, ProgressCallback, Published, PublishPlan

from . import card
from .common import HubPublisher, hub_plan, ready_to_send, redact_sdk_logging, via_git

HF_DEFAULT = "https://huggingface.co"


def _api() -> tuple[Any, str, str]:
    from huggingface_hub import HfApi

    install_hf_timeouts()
    endpoint = (os.environ.get("HF_ENDPOINT") or HF_DEFAULT).rstrip("/")
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


def _user(api: Any, token: str, endpoint: str) -> tuple[str, str]:
    """``(user name, problem)``: whoami with the token."""
    if not token:
        return "", "no Hugging Face token. Fix: set HF_TOKEN or run `hf auth login`"
    try:
        return str(api.whoami(token=token).get("name", "")), ""
    except Exception as exc:
        if network_error(exc) is not None:
            raise  # a server that does not answer is not a bad token (vlhub.core.boundary words it)
        return "", f"the Hugging Face token was rejected by {endpoint} ({redact(_short(exc))}). Fix: check HF_TOKEN"


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def preflight(folder: Path, repo_id: str, options: Mapping[str, Any],
              progress: ProgressCallback | None = None) -> PublishPlan:
    """Files (one scan), what the Hub already has, the token (whoami) and the folder's contents."""
    label = f"hf:{repo_id}"
    api, endpoint, token = _api()
    user, problem = _user(api, token, endpoint)
    plan = hub_plan(label, folder, repo_id, endpoint, options, problem, {
        "endpoint": endpoint, "token": find_token("hf").public(), "user": user, "via": options.get("via") or "api"})
    if plan.problems:
        return plan
    extras = card.extras_for(folder, repo_id, bool(options.get("overwrite_card")), base_model=options.get("base_model"))
    if options.get("via") == "git":
        return via_git(plan, options, progress, bool(api.repo_exists(repo_id)),
                       Remote(f"{endpoint}/{repo_id}", user or "vlhub", token, "main"), f"{endpoint}/{repo_id}", extras)
    remote, readme = _remote(api, repo_id)
    plan.extras, plan.remote = extras({f.path for f in plan.sources}, readme), remote
    plan_files(plan, remote, HashCache(staging_dir(label, folder) / "hashes.json"),
               hash_all=bool(options.get("dry_run")))
    plan.checks["repo_exists"] = bool(remote)
    return plan


def publish(plan: PublishPlan, options: Mapping[str, Any], progress: ProgressCallback | None = None) -> Published:
    """``create_repo(exist_ok=True)``, then one commit of the planned files (LFS uploads first, skipped when present)."""
    from huggingface_hub import CommitOperationAdd

    ready_to_send(plan)
    api, endpoint, _token = _api()
    job = plan.job
    repo_id, label, folder = job.repo_id, job.label, plan.folder
    api.create_repo(repo_id, private=bool(options.get("private")), exist_ok=True)
    if isinstance(job, GitJob):
        return gitpush.publish(plan, options, progress)
    if not plan.checks.get("repo_exists"):  # created now: the card follows the rule against what the Hub put there
        remote, readme = _remote(api, repo_id)
        extras = card.extra_files(folder, {f.path for f in plan.sources}, repo_id, readme,
                                  bool(options.get("overwrite_card")), base_model=options.get("base_model"))
        settle_extras(plan, extras, remote)
        plan.remote = remote
    sources = [f for f in plan.sources if f.path not in plan.extras]
    if progress:
        progress(Progress(f"{label}: hash", 0, sum(f.size for f in sources), "B", "hashing"))
    ops = [CommitOperationAdd(f.path, str(f.source(folder))) for f in sources]
    ops += [CommitOperationAdd(path, data) for path, data in plan.extras.items()]
    if progress:
        progress(Progress(f"{label}: upload", 0, sum(op.upload_info.size for op in ops), "B", "uploading"))
    rerun = rerun_command(plan, options)
    api.preupload_lfs_files(repo_id, additions=ops)
    changed_during_upload(folder, sources, rerun)  # nothing is committed when a file changed while it was sent
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
    check_listing(listed, plan.files, plan, HashCache(staging_dir(label, folder) / "hashes.json"),
                  info.oid or "the commit", blobs=True)
    sent = sum(op.upload_info.size for op in changed)
    if progress:
        progress(Progress(f"{label}: upload", sent, sent, "B", "done"))
    return Published(label, f"{endpoint}/{repo_id}", info.oid or "", sent, len(changed), changed=bool(changed))


class HfPublisher(HubPublisher):
    """Hugging Face (or a mirror at $HF_ENDPOINT): ``hf:ORG/NAME``."""

    name = "hf"
    description = "Hugging Face Hub via huggingface_hub (token $HF_TOKEN or `hf auth login`; --via git for git + LFS)."
    secrets = (Secret("hf", ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"), "Hugging Face access token with write access "
                      "(huggingface.co/settings/tokens)", hf_login_store, "hf auth login store"),)
    plan = staticmethod(preflight)
    send = staticmethod(publish)

    def repo_id(self, target: str) -> str:
        split_repo_id("hf", target, "your-name/InternVL2-2B-food")
        if len(target) > 96:
            raise BadInput(f"hf: {target!r} is longer than 96 characters", "choose a shorter name")
        return target
