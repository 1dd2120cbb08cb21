"""Hugging Face and ModelScope publishing through their SDKs, or through git + LFS with ``--via git``.

The SDKs see the user's files where they are: HF gets one ``CommitOperationAdd`` per file;
ModelScope gets a staging folder of symlinks plus the generated files (card,
configuration.json), since its ``upload_folder`` takes a folder. Both skip what the hub
already holds, so a rerun resumes and an unchanged folder makes no commit. Every file is
read from its resolved path (``LocalFile.source``): a linked file is sent as its content,
and the folder scan has already refused links that lead outside the folder (unless
``--follow-symlinks``). After a commit, the hub's listing is compared with the plan.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from vlhub.core.errors import VlhubError
from vlhub.core.fsutil import atomic_write_json, read_cache
from vlhub.core.home import vlhub_home
from vlhub.core.secrets import find_token, redact
from vlhub.core.types import PlannedFile, Preflight, Progress, ProgressCallback, Published

from . import card
from . import folder as fld
from .checks import local_problems

HF_DEFAULT = "https://huggingface.co"
MS_DEFAULT = "https://www.modelscope.cn"


@dataclass
class RemoteFile:
    """A file on a hub: its git blob id and, for LFS files, its sha256."""

    blob_id: str | None
    sha256: str | None
    size: int


def staging_dir(label: str, folder: Path) -> Path:
    """Per folder + target state (hash cache, ModelScope's resume tracker, the symlink view)."""
    import hashlib

    key = hashlib.sha256(f"{folder}\n{label}".encode()).hexdigest()[:16]
    path = vlhub_home() / "publish" / key
    path.mkdir(parents=True, exist_ok=True)
    return path


def _plan(folder: Path, files: list[fld.LocalFile], extras: dict[str, bytes], remote: dict[str, RemoteFile],
          cache: fld.HashCache, hash_all: bool, sent: dict[str, str] | None = None) -> list[PlannedFile]:
    """The preflight table: a file is on the remote when its sha256 or git blob id matches.

    ``sent`` (path -> blob id this staging last committed) stands in for a hub that lists
    no blob ids for regular files (ModelScope), together with an equal size.
    """
    sent = sent or {}
    planned = []
    for f in files:
        if f.path in extras:
            continue
        have = remote.get(f.path)
        same = False
        if have is not None and have.size == f.size:
            if have.sha256:  # stored through LFS (the hub decides, not only our rules)
                oid = cache.get(f)
                if oid is None and hash_all:
                    oid = fld.sha256_file(f.source(folder))
                    cache.put(f, oid)
                same = oid == have.sha256
            else:
                blob = fld.git_blob_sha(f.source(folder).read_bytes())
                same = (have.blob_id or sent.get(f.path)) == blob
        planned.append(PlannedFile(f.path, f.size, f.lfs, same))
    for path, data in sorted(extras.items()):
        have = remote.get(path)
        same = have is not None and have.size == len(data) and (have.blob_id or sent.get(path)) == fld.git_blob_sha(data)
        planned.append(PlannedFile(path, len(data), False, same))
    if hash_all:
        cache.save()
    return planned


def _git_preflight(job: Any, options: Mapping[str, Any], checks: dict[str, Any],
                   progress: ProgressCallback | None) -> Preflight:
    """``--via git`` to a repository that exists: the git engine's own preflight."""
    from . import gitpush

    pre = gitpush.preflight(job, options, progress)
    pre.checks = {**checks, **pre.checks}
    return pre


# ================================================================ Hugging Face
def _hf_api() -> tuple[Any, str, str]:
    from huggingface_hub import HfApi

    endpoint = (os.environ.get("HF_ENDPOINT") or HF_DEFAULT).rstrip("/")
    token = find_token("hf").value
    return HfApi(endpoint=endpoint, token=token or None), endpoint, token


def _hf_remote(api: Any, repo_id: str) -> tuple[dict[str, RemoteFile], bytes | None]:
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
    remote = {}
    for e in entries:
        if hasattr(e, "blob_id"):
            lfs = getattr(e, "lfs", None)
            remote[e.path] = RemoteFile(e.blob_id, lfs.sha256 if lfs else None, e.size)
    readme = None
    if "README.md" in remote and remote["README.md"].size < 1024 * 1024:
        path = api.hf_hub_download(repo_id, "README.md", cache_dir=str(vlhub_home() / "cache" / "hf"))
        readme = Path(path).read_bytes()
    return remote, readme


def _hf_user(api: Any, token: str, endpoint: str) -> tuple[str, str]:
    """``(user name, problem)``: whoami with the token."""
    if not token:
        return "", "no Hugging Face token. Fix: set HF_TOKEN or run `hf auth login`"
    try:
        return str(api.whoami(token=token).get("name", "")), ""
    except Exception as exc:
        return "", f"the Hugging Face token was rejected by {endpoint} ({redact(_short(exc))}). Fix: check HF_TOKEN"


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def _hf_git_job(folder: Path, repo_id: str, endpoint: str, user: str, token: str) -> Any:
    from .gitlfs import Remote
    from .gitpush import GitJob

    remote = Remote(f"{endpoint}/{repo_id}", user or "vlhub", token, "main")
    return GitJob(f"hf:{repo_id}", folder, remote, repo_id, f"{endpoint}/{repo_id}")


def hf_preflight(folder: Path, repo_id: str, options: Mapping[str, Any],
                 progress: ProgressCallback | None = None) -> Preflight:
    """Files, what the Hub already has, the token (whoami) and the folder's contents."""
    label = f"hf:{repo_id}"
    api, endpoint, token = _hf_api()
    scanned = fld.scan(folder, bool(options.get("follow_symlinks")))
    files = scanned.files
    problems, checks = local_problems(folder, scanned, repo_id, options)
    user, problem = _hf_user(api, token, endpoint)
    checks.update(endpoint=endpoint, token=find_token("hf").public(), user=user, via=options.get("via") or "api")
    if problem:
        problems.append(problem)
    if problems:
        return Preflight(label, [PlannedFile(f.path, f.size, f.lfs) for f in files], sum(f.size for f in files),
                         problems, checks)
    if options.get("via") == "git" and api.repo_exists(repo_id):
        return _git_preflight(_hf_git_job(folder, repo_id, endpoint, user, token), options, checks, progress)
    remote, readme = _hf_remote(api, repo_id)
    extras = card.extra_files(folder, {f.path for f in files}, repo_id, readme, bool(options.get("overwrite_card")))
    cache = fld.HashCache(staging_dir(label, folder) / "hashes.json")
    planned = _plan(folder, files, extras, remote, cache, bool(options.get("dry_run")))
    checks["repo_exists"] = bool(remote)
    return Preflight(label, planned, sum(p.size for p in planned if not p.on_remote), [], checks)


def hf_publish(folder: Path, repo_id: str, options: Mapping[str, Any],
               progress: ProgressCallback | None = None) -> Published:
    """``create_repo(exist_ok=True)``, then one commit of every file (LFS uploads first, skipped when present)."""
    from huggingface_hub import CommitOperationAdd

    label = f"hf:{repo_id}"
    api, endpoint, token = _hf_api()
    user, problem = _hf_user(api, token, endpoint)
    if problem:
        raise VlhubError(problem)
    api.create_repo(repo_id, private=bool(options.get("private")), exist_ok=True)
    if options.get("via") == "git":
        from . import gitpush

        return gitpush.publish(_hf_git_job(folder, repo_id, endpoint, user, token), options, progress)
    scanned = fld.scan(folder, bool(options.get("follow_symlinks")))
    fld.refuse(scanned, label)
    files = scanned.files
    remote, readme = _hf_remote(api, repo_id)
    extras = card.extra_files(folder, {f.path for f in files}, repo_id, readme, bool(options.get("overwrite_card")))
    if progress:
        progress(Progress(f"{label}: hash", 0, sum(f.size for f in files), "B", "hashing"))
    ops = [CommitOperationAdd(f.path, str(f.source(folder))) for f in files if f.path not in extras]
    ops += [CommitOperationAdd(path, data) for path, data in extras.items()]
    if progress:
        progress(Progress(f"{label}: upload", 0, sum(op.upload_info.size for op in ops), "B", "uploading"))
    api.preupload_lfs_files(repo_id, additions=ops)
    changed = [op for op in ops if op._remote_oid is None or op._remote_oid != op._local_oid]
    if not changed:
        return Published(label, f"{endpoint}/{repo_id}", api.repo_info(repo_id).sha or "", 0, 0, changed=False)
    info = api.create_commit(repo_id, operations=changed,
                             commit_message=options.get("message") or "Upload model with vlhub")
    _hf_check(api, repo_id, info.oid or None, ops, {f.path: f for f in files}, folder)
    sent = sum(op.upload_info.size for op in changed)
    if progress:
        progress(Progress(f"{label}: upload", sent, sent, "B", "done"))
    return Published(label, f"{endpoint}/{repo_id}", info.oid or "", sent, len(changed), changed=bool(changed))


def _hf_check(api: Any, repo_id: str, revision: str | None, ops: list[Any], files: dict[str, fld.LocalFile],
              folder: Path) -> None:
    """The commit holds every planned file with the planned content (sha256 for LFS, git blob id otherwise)."""
    tree = api.list_repo_tree(repo_id, recursive=True, revision=revision)
    listed = {e.path: e for e in tree if hasattr(e, "blob_id")}
    wrong = []
    for op in ops:
        entry = listed.get(op.path_in_repo)
        lfs = getattr(entry, "lfs", None) if entry is not None else None
        if entry is None:
            wrong.append(f"{op.path_in_repo} missing")
        elif entry.size != op.upload_info.size:
            wrong.append(f"{op.path_in_repo} has {entry.size} bytes, not {op.upload_info.size}")
        elif lfs is not None and lfs.sha256 != op.upload_info.sha256.hex():
            wrong.append(f"{op.path_in_repo} differs")
        elif lfs is None and entry.size < fld.BIG_FILE:
            f = files.get(op.path_in_repo)
            data = f.source(folder).read_bytes() if f else op.path_or_fileobj
            if isinstance(data, bytes) and entry.blob_id != fld.git_blob_sha(data):
                wrong.append(f"{op.path_in_repo} differs")
    _mismatch(wrong, revision or "the commit")


def _mismatch(wrong: list[str], where: str) -> None:
    if wrong:
        shown = ", ".join(wrong[:8]) + (f" and {len(wrong) - 8} more" if len(wrong) > 8 else "")
        raise VlhubError(f"what {where[:12]} holds on the hub differs from what the preflight planned to send: {shown}",
                         "rerun the publish (a file may have changed during it); report this bug if it repeats")


# ================================================================ ModelScope
def _ms_api() -> tuple[Any, str, str]:
    from modelscope.hub.api import HubApi

    token = find_token("modelscope").value
    api = HubApi(endpoint=os.environ.get("MODELSCOPE_ENDPOINT") or None, token=token or None)
    return api, str(api.endpoint or MS_DEFAULT).rstrip("/"), token


def _ms_remote(token: str, endpoint: str, repo_id: str) -> dict[str, RemoteFile]:
    """Files of the repo's master branch (empty when it does not exist yet)."""
    from modelscope_hub import HubApi as Api

    try:
        entries = Api(endpoint=endpoint, token=token).list_repo_files(repo_id, "model")
    except Exception:  # a repo that does not exist yet (the SDK raises several types)
        return {}
    return {e.path: RemoteFile(None if e.sha256 else (e.blob_id or None), e.sha256 or None, int(e.size or 0))
            for e in entries if e.type == "blob"}


def _ms_record(stage: Path) -> dict[str, Any]:
    """What this staging last committed to ModelScope: ``{"commit": ..., "blobs": {path: blob id}}``."""
    return read_cache(stage / "published.json", {})


def _ms_user(token: str, endpoint: str) -> str:
    if not token:
        return "no ModelScope token. Fix: set MODELSCOPE_API_TOKEN (modelscope.cn, account settings, access token)"
    try:
        from modelscope_hub import HubApi as Api

        Api(endpoint=endpoint, token=token).whoami()
    except Exception as exc:
        return (f"the ModelScope token was rejected by {endpoint} ({redact(_short(exc))}). "
                "Fix: check MODELSCOPE_API_TOKEN")
    return ""


def _ms_git_job(folder: Path, repo_id: str, endpoint: str, token: str) -> Any:
    from .gitlfs import Remote
    from .gitpush import GitJob

    remote = Remote(f"{endpoint}/{repo_id}.git", "oauth2", token, "master")
    return GitJob(f"modelscope:{repo_id}", folder, remote, repo_id, f"{endpoint}/models/{repo_id}", modelscope=True)


def _ms_extras(folder: Path, files: list[fld.LocalFile], repo_id: str, remote: dict[str, RemoteFile],
               options: Mapping[str, Any]) -> dict[str, bytes]:
    """Card and configuration.json; a README.md already on ModelScope is kept unless --overwrite-card."""
    extras = card.extra_files(folder, {f.path for f in files}, repo_id, None, bool(options.get("overwrite_card")),
                              modelscope=True)
    if "README.md" in remote and "README.md" in extras and not options.get("overwrite_card"):
        del extras["README.md"]
    return extras


def ms_preflight(folder: Path, repo_id: str, options: Mapping[str, Any],
                 progress: ProgressCallback | None = None) -> Preflight:
    """Files, what ModelScope already has, the token and the folder's contents."""
    label = f"modelscope:{repo_id}"
    api, endpoint, token = _ms_api()
    scanned = fld.scan(folder, bool(options.get("follow_symlinks")))
    files = scanned.files
    problems, checks = local_problems(folder, scanned, repo_id, options)
    problem = _ms_user(token, endpoint)
    checks.update(endpoint=endpoint, token=find_token("modelscope").public(), via=options.get("via") or "api")
    if problem:
        problems.append(problem)
    if problems:
        return Preflight(label, [PlannedFile(f.path, f.size, f.lfs) for f in files], sum(f.size for f in files),
                         problems, checks)
    if options.get("via") == "git" and api.repo_exists(repo_id):
        return _git_preflight(_ms_git_job(folder, repo_id, endpoint, token), options, checks, progress)
    remote = _ms_remote(token, endpoint, repo_id)
    extras = _ms_extras(folder, files, repo_id, remote, options)
    stage = staging_dir(label, folder)
    planned = _plan(folder, files, extras, remote, fld.HashCache(stage / "hashes.json"),
                    bool(options.get("dry_run")), _ms_record(stage).get("blobs"))
    return Preflight(label, planned, sum(p.size for p in planned if not p.on_remote), [], checks)


def ms_publish(folder: Path, repo_id: str, options: Mapping[str, Any],
               progress: ProgressCallback | None = None) -> Published:
    """``create_repo(exist_ok=True)``, then ``upload_folder`` of a symlink view of what changed."""
    label = f"modelscope:{repo_id}"
    api, endpoint, token = _ms_api()
    problem = _ms_user(token, endpoint)
    if problem:
        raise VlhubError(problem)
    api.create_repo(repo_id, visibility="private" if options.get("private") else "public", exist_ok=True)
    if options.get("via") == "git":
        from . import gitpush

        return gitpush.publish(_ms_git_job(folder, repo_id, endpoint, token), options, progress)
    scanned = fld.scan(folder, bool(options.get("follow_symlinks")))
    fld.refuse(scanned, label)
    files = scanned.files
    remote = _ms_remote(token, endpoint, repo_id)
    extras = _ms_extras(folder, files, repo_id, remote, options)
    stage = staging_dir(label, folder)
    record = _ms_record(stage)
    cache = fld.HashCache(stage / "hashes.json")
    planned = _plan(folder, files, extras, remote, cache, True, record.get("blobs"))
    todo = [p for p in planned if not p.on_remote]
    url = f"{endpoint}/models/{repo_id}"
    if not todo:
        return Published(label, url, record.get("commit", ""), 0, 0, changed=False)
    sources = {f.path: f.source(folder) for f in files}
    view = _symlink_view(stage / "view", sources, {p.path for p in todo}, extras)

    def report(event: dict) -> None:
        if progress:
            progress(Progress(f"{label}: upload", event.get("committed_bytes", 0), event.get("total_bytes"), "B"))

    for name in ("modelscope", "modelscope_hub"):
        logging.getLogger(name).setLevel(logging.WARNING)
    with contextlib.redirect_stdout(sys.stderr):  # the SDK prints banners; stdout is for --json
        result = api.upload_folder(repo_id=repo_id, folder_path=str(view), tracker_path=str(stage / "tracker"),
                                   commit_message=options.get("message") or "Upload model with vlhub",
                                   disable_tqdm=True, progress_callback=report)
    commits = result if isinstance(result, list) else [result] if result else []
    commit = _commit_id(commits[-1]) if commits else record.get("commit", "")
    blobs = {**record.get("blobs", {}), **{p.path: fld.git_blob_sha(extras[p.path] if p.path in extras else
                                                                   sources[p.path].read_bytes())
                                            for p in todo if not p.lfs}}
    _ms_check(_ms_remote(token, endpoint, repo_id), todo, files, folder, cache, commit)
    atomic_write_json(stage / "published.json", {"commit": commit, "blobs": blobs})
    return Published(label, url, commit, sum(p.size for p in todo), len(todo))


def _ms_check(listed: dict[str, RemoteFile], todo: list[PlannedFile], files: list[fld.LocalFile], folder: Path,
              cache: fld.HashCache, commit: str) -> None:
    """ModelScope holds every sent file with the planned size, and the planned sha256 where it lists one."""
    by_path = {f.path: f for f in files}
    wrong = []
    for p in todo:
        have = listed.get(p.path)
        f = by_path.get(p.path)
        if have is None:
            wrong.append(f"{p.path} missing")
        elif have.size != p.size:
            wrong.append(f"{p.path} has {have.size} bytes, not {p.size}")
        elif have.sha256 and f is not None and (cache.get(f) or fld.sha256_file(f.source(folder))) != have.sha256:
            wrong.append(f"{p.path} differs")
    _mismatch(wrong, commit or "the commit")


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
