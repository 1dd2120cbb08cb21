"""``modelscope:OWNER/NAME``: ModelScope through its SDK, or git + LFS with ``--via git``.

ModelScope's ``upload_folder`` takes a folder: it gets a staging folder of symlinks to the
planned files' resolved paths plus the generated files (card, ``configuration.json``),
never a copy. ModelScope lists no git blob ids for regular files, so the staging remembers
the blob ids it committed (``published.json``) to recognise them next time. After the
upload, ModelScope's listing is compared with the plan. ``--via git`` pushes with the core
git + LFS engine (:mod:`vlhub.core.publishing.gitpush`).
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Mapping

from vlhub.core.fsutil import atomic_write_json, read_cache
from vlhub.core.publishing import (GitJob, HashCache, Remote, RemoteFile, changed_during_upload, check_listing,
                                   gitpush, pending, plan_files, rerun_command, settle_extras, split_repo_id,
                                   staging_dir, staging_space)
from vlhub.core.errors import BadInput
from vlhub.core.net import MODELSCOPE_RETRIES, install_modelscope_timeouts
from vlhub.core.publishing.access import HubTarget, Identity, require_write, visibility
from vlhub.core.secrets import Secret, find_token, modelscope_login_store
from vlhub.core.options import translated
from vlhub.core.types import Option, Progress, ProgressCallback, Published, PublishPlan

from . import card, labels_zh
from .common import COMMON_OPTIONS, HubPublisher, hub_plan, ready_to_send, redact_sdk_logging, via_git

MS_DEFAULT = "https://www.modelscope.cn"
#: Why ``--make-private`` cannot be honoured: the SDK's ``update_repo_settings`` takes Studios and Skills only.
NO_VISIBILITY_CHANGE = "ModelScope's SDK changes the settings of Studios and Skills only, not of models"


def target(repo_id: str) -> HubTarget:
    """``modelscope:repo_id`` as the access checks and the SDK's errors name it."""
    endpoint = (os.environ.get("MODELSCOPE_ENDPOINT") or MS_DEFAULT).rstrip("/")
    return HubTarget(f"modelscope:{repo_id}", "ModelScope", repo_id, endpoint, find_token("modelscope").source,
                     "MODELSCOPE_API_TOKEN", "https://www.modelscope.cn/my/myaccesstoken")


def _api() -> tuple[Any, str, str]:
    limits = install_modelscope_timeouts()  # before the SDK's first import: it reads them then
    from modelscope.hub.api import HubApi

    token = find_token("modelscope").value
    api = HubApi(endpoint=os.environ.get("MODELSCOPE_ENDPOINT") or None, token=token or None,
                 timeout=max(1, math.ceil(limits.read)), max_retries=MODELSCOPE_RETRIES)
    redact_sdk_logging("modelscope", "modelscope_hub")
    return api, str(api.endpoint or MS_DEFAULT).rstrip("/"), token


def _remote(token: str, endpoint: str, repo_id: str) -> dict[str, RemoteFile]:
    """Files of the repo's master branch (empty when it does not exist yet)."""
    install_modelscope_timeouts()
    from modelscope_hub import HubApi as Api

    try:
        entries = Api(endpoint=endpoint, token=token).list_repo_files(repo_id, "model")
    except Exception:  # a repo that does not exist yet (the SDK raises several types)
        return {}
    return {e.path: RemoteFile(None if e.sha256 else (e.blob_id or None), e.sha256 or None, int(e.size or 0))
            for e in entries if e.type == "blob"}


def _record(stage: Path) -> dict[str, Any]:
    """What this staging last committed to ModelScope: ``{"commit": ..., "blobs": {path: blob id}}``."""
    return read_cache(stage / "published.json", {})


def _identity(token: str, endpoint: str, where: HubTarget) -> Identity:
    """whoami (``GET /openapi/v1/users/me``): the user name only; the SDK lists no organisations."""
    if not token:
        raise BadInput("publish.no_token", **where.words())
    from modelscope_hub import HubApi as Api

    return Identity(str(Api(endpoint=endpoint, token=token).whoami().username or ""), orgs_known=False)


def _repo_state(token: str, endpoint: str, repo_id: str) -> tuple[bool, bool | None]:
    """``(exists, private)``: ``get_repo``'s ``visibility`` (1 private, 5 public; 3 "internal": None)."""
    from modelscope_hub import HubApi as Api
    from modelscope_hub.errors import NotExistError

    try:
        level = Api(endpoint=endpoint, token=token).get_repo(repo_id, "model").visibility
    except NotExistError:
        return False, None
    return True, {1: True, 5: False}.get(int(level) if level is not None else 5)


def _extras(folder: Path, names: set[str], repo_id: str, remote: Mapping[str, RemoteFile],
            options: Mapping[str, Any]) -> dict[str, bytes]:
    """Card and configuration.json; a README.md already on ModelScope is kept unless --overwrite-card."""
    extras = card.extra_files(folder, names, repo_id, None, bool(options.get("overwrite_card")), modelscope=True,
                              base_model=options.get("base_model"))
    if "README.md" in remote and "README.md" in extras and not options.get("overwrite_card"):
        del extras["README.md"]
    return extras


def preflight(folder: Path, repo_id: str, options: Mapping[str, Any],
              progress: ProgressCallback | None = None) -> PublishPlan:
    """The token (whoami: is the namespace its user's, or vouched for with --org-member?), the repository's
    visibility, files (one scan), what ModelScope already has and the folder's contents."""
    label = f"modelscope:{repo_id}"
    api, endpoint, token = _api()
    where = target(repo_id)
    user = _identity(token, endpoint, where)
    require_write(user, where, member_flag="--org-member", member=bool(options.get("org_member")))
    exists, private = _repo_state(token, endpoint, repo_id)
    plan = hub_plan(label, folder, repo_id, endpoint, options, {
        "endpoint": endpoint, "token": find_token("modelscope").public(), "user": user.user,
        "via": options.get("via") or "api",
        "visibility": visibility(where, exists, private, options, cannot_change=NO_VISIBILITY_CHANGE)})
    if plan.problems:
        return plan
    if options.get("via") == "git":
        return via_git(plan, options, progress, exists,
                       Remote(f"{endpoint}/{repo_id}.git", "oauth2", token, "master"), f"{endpoint}/models/{repo_id}",
                       card.extras_for(folder, repo_id, bool(options.get("overwrite_card")), modelscope=True,
                                      base_model=options.get("base_model")))
    remote = _remote(token, endpoint, repo_id)
    plan.extras, plan.remote = _extras(folder, {f.path for f in plan.sources}, repo_id, remote, options), remote
    stage = staging_dir(label, folder)
    plan_files(plan, remote, HashCache(stage / "hashes.json"), hash_all=bool(options.get("dry_run")),
               sent=_record(stage).get("blobs"))
    plan.checks["repo_exists"] = bool(remote)
    return plan


def publish(plan: PublishPlan, options: Mapping[str, Any], progress: ProgressCallback | None = None) -> Published:
    """``create_repo(exist_ok=True)``, then ``upload_folder`` of a symlink view of what the remote lacks."""
    ready_to_send(plan)
    api, endpoint, token = _api()
    job, folder = plan.job, plan.folder
    repo_id, label = job.repo_id, job.label
    private = options.get("private") or options.get("make_private")
    api.create_repo(repo_id, visibility="private" if private else "public", exist_ok=True)
    if isinstance(job, GitJob):
        return gitpush.publish(plan, options, progress)
    stage = staging_dir(label, folder)
    record = _record(stage)
    cache = HashCache(stage / "hashes.json")
    remote = plan.remote
    if not plan.checks.get("repo_exists"):  # created now: the card follows the rule against what ModelScope put there
        remote = plan.remote = _remote(token, endpoint, repo_id)
        settle_extras(plan, _extras(folder, {f.path for f in plan.sources}, repo_id, remote, options), remote,
                      record.get("blobs"))
    hashed = [0]

    def count(n: int) -> None:
        hashed[0] += n
        if progress:
            progress(Progress(f"{label}: hash", hashed[0], None, "B"))

    todo = pending(plan, remote, cache, count)
    url = f"{endpoint}/models/{repo_id}"
    if not todo:
        return Published(label, url, record.get("commit", ""), 0, 0, changed=False)
    sources = {f.path: f.source(folder) for f in plan.sources}
    staging_space(stage, plan, label)
    view = _symlink_view(stage / "view", sources, {p.path for p in todo}, plan.extras)
    sending = [f for f in plan.sources if f.path in {p.path for p in todo} and f.path not in plan.extras]
    rerun = rerun_command(plan, options)
    changed_during_upload(folder, sending, rerun)

    def report(event: dict) -> None:
        if progress:
            progress(Progress(f"{label}: upload", event.get("committed_bytes", 0), event.get("total_bytes"), "B"))

    for name in ("modelscope", "modelscope_hub"):
        logging.getLogger(name).setLevel(logging.WARNING)
    redact_sdk_logging("modelscope", "modelscope_hub")  # its retry warnings print signed upload URLs
    with contextlib.redirect_stdout(sys.stderr):  # the SDK prints banners; stdout is for --json
        result = api.upload_folder(repo_id=repo_id, folder_path=str(view), tracker_path=str(stage / "tracker"),
                                   commit_message=options.get("message") or "Upload model with vlhub",
                                   disable_tqdm=True, progress_callback=report)
    changed_during_upload(folder, sending, rerun, committed=True)
    commits = result if isinstance(result, list) else [result] if result else []
    commit = _commit_id(commits[-1]) if commits else record.get("commit", "")
    blobs = {**record.get("blobs", {}), **{p.path: plan.blobs[p.path] for p in todo if p.path in plan.blobs}}
    # ModelScope holds every sent file with the planned size, and the planned sha256 where it lists one
    check_listing(_remote(token, endpoint, repo_id), todo, plan, cache, commit or "the commit")
    atomic_write_json(stage / "published.json", {"commit": commit, "blobs": blobs})
    return Published(label, url, commit, sum(p.size for p in todo), len(todo))


class ModelScopePublisher(HubPublisher):
    """ModelScope (endpoint $MODELSCOPE_ENDPOINT): ``modelscope:OWNER/NAME``."""

    name = "modelscope"
    description = ("ModelScope via its SDK (token $MODELSCOPE_API_TOKEN or the stored login; "
                   "--via git for git + LFS; writes configuration.json into the upload if missing).")
    secrets = (Secret("modelscope", ("MODELSCOPE_API_TOKEN",), "ModelScope SDK token (modelscope.cn, My Settings)",
                      modelscope_login_store, "modelscope login store"),)
    modelscope = True
    options = (*COMMON_OPTIONS, *translated((Option(
        "org_member", "ModelScope: the target's namespace is an organisation the token's user may write to (the SDK "
        "cannot list a user's organisations; the hub still decides).", bool, False),), "zh", labels_zh.MODELSCOPE))
    plan = staticmethod(preflight)
    send = staticmethod(publish)
    target = staticmethod(target)

    def repo_id(self, target: str) -> str:
        split_repo_id("modelscope", target, "your-name/InternVL2-2B-food")
        return target


def _commit_id(info: Any) -> str:
    if isinstance(info, dict):
        for key in ("CommitId", "commit_id", "oid", "sha"):
            if info.get(key):
                return str(info[key])
        data = info.get("Data")
        if isinstance(data, dict):
            return _commit_id(data)
    return str(getattr(info, "oid", "") or getattr(info, "commit_id", "") or "")


def _symlink_view(view: Path, sources: dict[str, Path], paths: set[str], extras: dict[str, bytes]) -> Path:
    """A folder of symlinks to the user's files that must be sent, plus the generated files (nothing copied).

    Each link points straight at the regular file the scan resolved (``LocalFile.source``),
    so the SDK reads content, and only what the scan accepted: a link out of the model
    folder is never followed here unless the scan allowed it (``--follow-symlinks``).
    """
    shutil.rmtree(view, ignore_errors=True)
    view.mkdir(parents=True)
    for path in sorted(paths):
        target = view / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if path in extras:
            target.write_bytes(extras[path])
        else:
            os.symlink(sources[path], target)
    return view
