"""What the built-in publishers share: their options and the git-host publisher shape.

The engines themselves (scan, hashing, planning, git + LFS) are core API in
:mod:`vlhub.core.publishing`; this module only holds the built-ins' common surface.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from vlhub.core.errors import BadInput
from vlhub.core.publishing import GitJob, Remote, check_unchanged, gitpush, start
from vlhub.core.publishing.access import check_git_access, host_visibility, hub_errors
from vlhub.core.publishing.gitpush import ExtrasFn
from vlhub.core.options import translated
from vlhub.core.types import Option, ProgressCallback, Published, PublishPlan

from . import card, labels_zh

COMMON_OPTIONS = translated((
    Option("private", "Create the repository as private (hubs with an API); an existing public one is refused "
           "unless --make-private.", bool, False),
    Option("make_private", "Make an existing public repository private before anything is sent (Hugging Face).",
           bool, False),
    Option("via", "How to send: 'api' (the hub's SDK) or 'git' (git + LFS).", str, None, ("api", "git")),
    Option("message", "Commit message.", str, None),
    Option("require_keyword", "Refuse unless the repository name contains this word.", str, None),
    Option("overwrite_card", "Replace a model card on the remote that vlhub did not write.", bool, False),
    Option("follow_symlinks", "Send what symbolic links that lead outside the model folder point to "
           "(refused otherwise).", bool, False),
    Option("base_model", "The model card's base model, a hub id ORG/NAME (default: from the folder).", str, None),
    Option("allow_template_mismatch", "Publish a chat template unlike the catalog's for the config.", bool, False),
), "zh", labels_zh.COMMON)


class BuiltinPublisher:
    """What every built-in publisher shares: the options and the model card preview."""

    options = COMMON_OPTIONS
    #: The card (and configuration.json) follow ModelScope's conventions.
    modelscope = False

    def card(self, folder: Path, target: str) -> str | None:
        """The model card a publish would generate (preview; no network)."""
        return card.preview(folder, card.preview_repo_id(target, folder), self.modelscope)

    @staticmethod
    def with_card_checks(plan: PublishPlan, options: Mapping[str, Any]) -> PublishPlan:
        """``plan`` with what the preflight says about the card (base model and where it came from, notes
        such as "base model unknown: pass --base-model ORG/NAME") in its checks."""
        names = {f.path for f in plan.sources} if plan.sources else {f.path for f in plan.files}
        if plan.folder is not None:
            plan.checks.update(card.checks(plan.folder, names, options.get("base_model")))
        return plan


class HubPublisher(BuiltinPublisher):
    """A hub with an API (``hf:``, ``modelscope:``): ``ORG/NAME`` targets; the module's functions do the work.

    Subclasses give :meth:`repo_id`, and ``plan``/``send``/``target`` (the module's ``preflight``,
    ``publish`` and its :class:`~vlhub.core.publishing.access.HubTarget` for a repository id). Every
    HTTP error answer of the SDK in either step becomes one keyed line about the target
    (:func:`~vlhub.core.publishing.access.hub_errors`).
    """

    def preflight(self, folder: Path, target: str, options: Mapping[str, Any],
                  progress: ProgressCallback | None = None) -> PublishPlan:
        repo_id = self.repo_id(target)
        with hub_errors(self.target(repo_id)):
            return self.with_card_checks(self.plan(Path(folder), repo_id, options, progress), options)

    def publish(self, plan: PublishPlan, options: Mapping[str, Any],
                progress: ProgressCallback | None = None) -> Published:
        with hub_errors(self.target(plan.job.repo_id)):
            return self.send(plan, options, progress)

    def repo_id(self, target: str) -> str:
        raise NotImplementedError

    plan: Any
    send: Any
    target: Any


class GitHostPublisher(BuiltinPublisher):
    """A publisher that always pushes with git + LFS (``git:``, ``openxlab:``): a :class:`GitJob` per target.

    Subclasses give :meth:`job` (and :meth:`missing_token` where a token is required), and
    ``user_var``: the variable holding the git user name (named in the fixes).
    """

    user_var = ""

    def job(self, folder: Path, target: str, options: Mapping[str, Any]) -> Any:
        """The :class:`vlhub.core.publishing.GitJob` for ``target``."""
        raise NotImplementedError

    def preflight(self, folder: Path, target: str, options: Mapping[str, Any],
                  progress: ProgressCallback | None = None) -> PublishPlan:
        """The folder's checks, then the remote's answer to the credentials (``ls-remote`` and the push
        service: :func:`~vlhub.core.publishing.access.check_git_access`), then the git + LFS plan."""
        job = self.job(folder, target, options)
        missing = self.missing_token()
        if missing:
            return PublishPlan(job.label, [], 0, [missing], {"remote": job.web_url}, folder=Path(folder), job=job)
        plan = start(job.label, job.folder, job.repo_id, options)
        plan.checks["visibility"], warning = host_visibility(job, options)
        if warning:
            plan.checks.setdefault("warnings", []).append(warning)
        if not plan.problems:
            check_git_access(job, self.secrets[0].env[0], self.user_var)
        return self.with_card_checks(gitpush.preflight(job, options, progress, plan=plan), options)

    def publish(self, plan: PublishPlan, options: Mapping[str, Any],
                progress: ProgressCallback | None = None) -> Published:
        return gitpush.publish(plan, options, progress)

    def missing_token(self) -> str:
        return ""


@dataclass
class HubJob:
    """Where a hub API publish goes: the repository on the endpoint (``PublishPlan.job``)."""

    label: str
    repo_id: str
    endpoint: str


def hub_plan(label: str, folder: Path, repo_id: str, endpoint: str, options: Mapping[str, Any],
             checks: Mapping[str, Any]) -> PublishPlan:
    """The start of a hub target's plan (after its access checks): the one scan, the local checks, ``checks``."""
    plan = start(label, folder, repo_id, options)
    plan.checks.update(checks)
    plan.job = HubJob(label, repo_id, endpoint)
    return plan


def via_git(plan: PublishPlan, options: Mapping[str, Any], progress: ProgressCallback | None, exists: bool,
            remote: Remote, web_url: str, extras: ExtrasFn) -> PublishPlan:
    """``--via git``: the rest of the plan by the core git + LFS engine (the repository is read only if it exists)."""
    plan.checks["repo_exists"] = exists
    job = GitJob(plan.job.label, plan.folder, remote, plan.job.repo_id, web_url, extras)
    return gitpush.preflight(job, options, progress, plan=plan, remote_exists=exists)


def redact_sdk_logging(*names: str) -> None:
    """Scrub what an SDK's own log handlers print (its retry warnings show signed upload URLs).

    The SDKs attach stderr handlers to their loggers (``huggingface_hub``, ``modelscope``,
    ``modelscope_hub``), which print records before vlhub's root handler sees them: each such
    handler gets :class:`vlhub.core.secrets.RedactingFilter` (tokens, URL user-info and
    signature/token query parameters become ``***``). Idempotent.
    """
    import logging

    from vlhub.core.secrets import RedactingFilter

    for name in names:
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())


def ready_to_send(plan: PublishPlan) -> None:
    """Before a hub creates anything: the plan passed, and the folder still holds the planned files."""
    if plan.problems:
        raise BadInput("; ".join(plan.problems))
    check_unchanged(plan.folder, plan.sources)
