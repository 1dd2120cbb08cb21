"""``openxlab:OWNER/NAME``: OpenXLab model repositories, through the core git + LFS engine."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from vlhub.core.publishing import GitJob, Remote, split_repo_id
from vlhub.core.secrets import Secret, find_token

from . import card
from .common import GitHostPublisher


class OpenXLabPublisher(GitHostPublisher):
    """OpenXLab model repositories over git + LFS: ``openxlab:OWNER/NAME``."""

    name = "openxlab"
    description = "OpenXLab (git + LFS; $OPENXLAB_TOKEN, user $OPENXLAB_USER, base URL $OPENXLAB_GIT_URL)."
    secrets = (Secret("openxlab", ("OPENXLAB_TOKEN",), "OpenXLab git access token"),)
    user_var = "OPENXLAB_USER"
    BASE = "https://code.openxlab.org.cn"

    def job(self, folder: Path, target: str, options: Mapping[str, Any]) -> Any:
        owner, name = split_repo_id("openxlab", target, "your-name/InternVL2-2B-food")
        base = os.environ.get("OPENXLAB_GIT_URL", self.BASE).rstrip("/")
        url = f"{base}/{owner}/{name}.git"
        remote = Remote(url, os.environ.get("OPENXLAB_USER", owner), find_token("openxlab").value)
        return GitJob(f"openxlab:{target}", Path(folder), remote, target, url.removesuffix(".git"),
                      card.extras_for(Path(folder), target, bool(options.get("overwrite_card")),
                                      base_model=options.get("base_model")))

    def missing_token(self) -> str:
        if find_token("openxlab").found:
            return ""
        return ("no OpenXLab token. Fix: set OPENXLAB_TOKEN to an access token with write access "
                "(openxlab.org.cn, account settings, access tokens)")
