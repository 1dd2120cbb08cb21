"""The four built-in publishers: hf, modelscope, openxlab and git.

Imports stay light: the SDKs (huggingface_hub, modelscope) and GitPython load inside methods.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit, urlunsplit

from vlhub.core.errors import BadInput
from vlhub.core.secrets import find_token
from vlhub.core.types import Option, Preflight, ProgressCallback, Published

from .checks import split_repo_id

COMMON_OPTIONS = (
    Option("private", "Create the repository as private (hubs with an API).", bool, False),
    Option("via", "How to send: 'api' (the hub's SDK) or 'git' (git + LFS).", str, None, ("api", "git")),
    Option("message", "Commit message.", str, None),
    Option("require_keyword", "Refuse unless the repository name contains this word.", str, None),
    Option("overwrite_card", "Replace a model card on the remote that vlhub did not write.", bool, False),
    Option("follow_symlinks", "Send what symbolic links that lead outside the model folder point to "
           "(refused otherwise).", bool, False),
)


class _GitOnly:
    """Shared body of the publishers that always push with git + LFS."""

    options = COMMON_OPTIONS

    def job(self, folder: Path, target: str) -> Any:
        raise NotImplementedError

    def preflight(self, folder: Path, target: str, options: Mapping[str, Any],
                  progress: ProgressCallback | None = None) -> Preflight:
        from . import gitpush

        job = self.job(folder, target)
        missing = self.missing_token()
        if missing:
            return Preflight(job.label, [], 0, [missing], {"remote": job.web_url})
        return gitpush.preflight(job, options, progress)

    def publish(self, folder: Path, target: str, options: Mapping[str, Any],
                progress: ProgressCallback | None = None) -> Published:
        from . import gitpush

        return gitpush.publish(self.job(folder, target), options, progress)

    def missing_token(self) -> str:
        return ""


class GitPublisher(_GitOnly):
    """Any git remote with Git LFS: ``git:https://HOST/OWNER/NAME.git``."""

    name = "git"
    description = "Any git remote with Git LFS (token in $VLHUB_GIT_TOKEN, user in $VLHUB_GIT_USER)."

    def job(self, folder: Path, target: str) -> Any:
        from .gitlfs import Remote, check_url
        from .gitpush import GitJob

        url = check_url(target)
        parts = urlsplit(url)
        user = parts.username or os.environ.get("VLHUB_GIT_USER", "")
        if parts.username:  # the user name is no secret, but keep one clean URL per remote
            url = urlunsplit(parts._replace(netloc=parts.netloc.split("@", 1)[1]))
        repo_id = "/".join(urlsplit(url).path.strip("/").removesuffix(".git").split("/")[-2:]) or url
        token = find_token("git").value
        return GitJob(f"git:{url}", Path(folder), Remote(url, user, token), repo_id, url)


class OpenXLabPublisher(_GitOnly):
    """OpenXLab model repositories over git + LFS: ``openxlab:OWNER/NAME``."""

    name = "openxlab"
    description = "OpenXLab (git + LFS; $OPENXLAB_TOKEN, user $OPENXLAB_USER, base URL $OPENXLAB_GIT_URL)."
    BASE = "https://code.openxlab.org.cn"

    def job(self, folder: Path, target: str) -> Any:
        from .gitlfs import Remote
        from .gitpush import GitJob

        owner, name = split_repo_id("openxlab", target, "your-name/InternVL2-2B-food")
        base = os.environ.get("OPENXLAB_GIT_URL", self.BASE).rstrip("/")
        url = f"{base}/{owner}/{name}.git"
        remote = Remote(url, os.environ.get("OPENXLAB_USER", owner), find_token("openxlab").value)
        return GitJob(f"openxlab:{target}", Path(folder), remote, target, url.removesuffix(".git"))

    def missing_token(self) -> str:
        if find_token("openxlab").found:
            return ""
        return ("no OpenXLab token. Fix: set OPENXLAB_TOKEN to an access token with write access "
                "(openxlab.org.cn, account settings, access tokens)")


class HfPublisher:
    """Hugging Face (or a mirror at $HF_ENDPOINT): ``hf:ORG/NAME``."""

    name = "hf"
    description = "Hugging Face Hub via huggingface_hub (token $HF_TOKEN or `hf auth login`; --via git for git + LFS)."
    options = COMMON_OPTIONS

    def preflight(self, folder: Path, target: str, options: Mapping[str, Any],
                  progress: ProgressCallback | None = None) -> Preflight:
        from . import hubapi

        return hubapi.hf_preflight(Path(folder), self.repo_id(target), options, progress)

    def publish(self, folder: Path, target: str, options: Mapping[str, Any],
                progress: ProgressCallback | None = None) -> Published:
        from . import hubapi

        return hubapi.hf_publish(Path(folder), self.repo_id(target), options, progress)

    @staticmethod
    def repo_id(target: str) -> str:
        owner, name = split_repo_id("hf", target, "your-name/InternVL2-2B-food")
        if len(target) > 96:
            raise BadInput(f"hf: {target!r} is longer than 96 characters", "choose a shorter name")
        return target


class ModelScopePublisher:
    """ModelScope (endpoint $MODELSCOPE_ENDPOINT): ``modelscope:OWNER/NAME``."""

    name = "modelscope"
    description = ("ModelScope via its SDK (token $MODELSCOPE_API_TOKEN or the stored login; "
                   "--via git for git + LFS; writes configuration.json into the upload if missing).")
    options = COMMON_OPTIONS

    def preflight(self, folder: Path, target: str, options: Mapping[str, Any],
                  progress: ProgressCallback | None = None) -> Preflight:
        from . import hubapi

        return hubapi.ms_preflight(Path(folder), self.repo_id(target), options, progress)

    def publish(self, folder: Path, target: str, options: Mapping[str, Any],
                progress: ProgressCallback | None = None) -> Published:
        from . import hubapi

        return hubapi.ms_publish(Path(folder), self.repo_id(target), options, progress)

    @staticmethod
    def repo_id(target: str) -> str:
        split_repo_id("modelscope", target, "your-name/InternVL2-2B-food")
        return target
