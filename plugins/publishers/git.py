"""``git:URL``: any git remote with Git LFS, through the core git + LFS engine."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit, urlunsplit

from vlhub.core.publishing import GitJob, Remote, check_url
from vlhub.core.secrets import Secret, find_token

from . import card
from .common import GitHostPublisher


class GitPublisher(GitHostPublisher):
    """Any git remote with Git LFS: ``git:https://HOST/OWNER/NAME.git``."""

    name = "git"
    description = "Any git remote with Git LFS (token in $VLHUB_GIT_TOKEN, user in $VLHUB_GIT_USER)."
    secrets = (Secret("git", ("VLHUB_GIT_TOKEN",), "password or token of the git remote (user: $VLHUB_GIT_USER)"),)
    user_var = "VLHUB_GIT_USER"

    def job(self, folder: Path, target: str, options: Mapping[str, Any]) -> Any:
        url = check_url(target)
        parts = urlsplit(url)
        user = parts.username or os.environ.get("VLHUB_GIT_USER", "")
        if parts.username:  # the user name is no secret, but keep one clean URL per remote
            url = urlunsplit(parts._replace(netloc=parts.netloc.split("@", 1)[1]))
        repo_id = "/".join(urlsplit(url).path.strip("/").removesuffix(".git").split("/")[-2:]) or url
        token = find_token("git").value
        return GitJob(f"git:{url}", Path(folder), Remote(url, user, token), repo_id, url,
                      card.extras_for(Path(folder), repo_id, bool(options.get("overwrite_card")),
                                      base_model=options.get("base_model")))
