"""Checks shared by every publisher: the folder's contents, repository names, the keyword rule.

:func:`local_problems` is what a preflight finds without the network: the scan's problems,
then :func:`~vlhub.core.publishing.folder.check_contents`, then whether the folder loads as its
files say (:func:`~vlhub.core.publishing.loadable.check_loadable`: weight headers, shard index,
config and remote code, tokenizer, README metadata; a chat template that is not the catalog's
for the config is a warning), then ``--require-keyword``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

from vlhub.core.errors import BadInput

from . import folder as fld
from .loadable import check_loadable

_PART = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")


def local_problems(folder: Path, scanned: fld.FolderScan, repo_id: str,
                   options: Mapping[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """Problems found without the network, and what was checked.

    The scan's own problems come first (links out of the folder, loops, broken links,
    special files): one rule for every publisher, refused before any byte is sent.

    Args:
        folder: the model folder.
        scanned: its :func:`~vlhub.core.publishing.folder.scan`.
        repo_id: the repository's name (``OWNER/NAME`` or a URL's path), for ``require_keyword``.
        options: the publish options (``follow_symlinks``, ``require_keyword``,
            ``allow_template_mismatch``).

    Returns:
        ``(problems, checks)``: one line per problem (``what. Fix: how``) and what was
        checked (``config``, ``weights``, ``tokenizer``, ``chat_template``, ``keyword``,
        ``warnings`` (the CLI and the Publish page show them),
        ``symlinks_followed``, ``linked_files_sent_as_content``), for the preflight's ``checks``.
    """
    problems, checks = fld.check_contents(folder, scanned.files, scanned.refused)
    loads, warnings = check_loadable(folder, scanned.files, options)
    problems = [*scanned.problems, *problems, *loads]
    if warnings:
        checks["warnings"] = warnings
    if options.get("follow_symlinks"):
        checks["follow_symlinks"] = True
    if scanned.outside:
        checks["symlinks_followed"] = list(scanned.outside)
    if scanned.links:
        checks["linked_files_sent_as_content"] = scanned.links
    keyword = options.get("require_keyword")
    if keyword:
        name = repo_id.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
        checks["keyword"] = keyword
        if keyword.lower() not in name.lower():
            problems.append(f"the repository name {name!r} does not contain {keyword!r} (--require-keyword). "
                            "Fix: choose a name with it, or drop --require-keyword")
    return problems, dict(checks)


def split_repo_id(hub: str, repo_id: str, example: str) -> tuple[str, str]:
    """``OWNER/NAME`` with letters, digits, ``-``, ``_`` and ``.``; a clear error otherwise.

    Args:
        hub: the publisher's name, for the message (``hf``).
        repo_id: the name to check.
        example: a valid name shown in the fix.

    Returns:
        ``(owner, name)``.

    Raises:
        BadInput: not two such parts, ``..`` or ``--`` in it, or a ``.git`` suffix.
    """
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(_PART.match(p) for p in parts) or ".." in repo_id or "--" in repo_id \
            or repo_id.endswith(".git"):
        raise BadInput("publish.bad_repo_name", hub=hub, repo=repr(repo_id), example=example)
    return parts[0], parts[1]
