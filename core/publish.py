"""Publishing a model folder to several targets: preflight (plan) all of them, then execute each plan.

``publish(folder, ["hf:org/name", "git:https://..."], options)`` is what ``vlhub publish``
and the launcher's Publish page call. Every target is preflighted before any byte is
sent: its publisher scans the folder once and returns a :class:`~vlhub.core.types.PublishPlan`,
which its ``publish`` then executes as it is (:func:`execute`). A target that fails
(preflight or upload) does not stop the others. A real publish is recorded as a ``publish``
run (targets, results, errors; never a token). :func:`card_preview` is the model card a
publisher would generate (the Publish page's preview). The building blocks publishers
share (scan, hashing, planning, the git + LFS engine) are :mod:`vlhub.core.publishing`.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from . import plugins, runs, serve_check
from .boundary import user_error
from .errors import BadInput, VlhubError
from .secrets import redact
from .types import Preflight, Progress, ProgressCallback, Published, PublishPlan, to_dict


@dataclass
class TargetResult:
    """One target's preflight, outcome (when sent) and error (one line, redacted; ``failure`` is the error
    itself, so that a page shows it in its language with its field labels)."""

    target: str
    preflight: Preflight | None = None
    published: Published | None = None
    error: str = ""
    exit_code: int = 0
    failure: VlhubError | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return not self.error

    def public(self) -> dict[str, Any]:
        """JSON-ready: the target, ok, error (and ``error_detail``, :func:`vlhub.core.jobs.error_detail`, when it
        was raised as a :class:`VlhubError`), its preflight table and its result."""
        data: dict[str, Any] = {"target": redact(self.target), "ok": self.ok, "error": self.error}
        if self.failure is not None:
            from .jobs import error_detail

            data["error_detail"] = error_detail(self.failure)
        if self.preflight is not None:
            pre = self.preflight.preflight() if isinstance(self.preflight, PublishPlan) else self.preflight
            data["preflight"] = {**to_dict(pre), "ok": pre.ok}
        if self.published is not None:
            data["result"] = to_dict(self.published)
        return data


@dataclass
class PublishReport:
    """Every target's result; ``exit_code`` is 0 only when all succeeded."""

    folder: Path
    dry_run: bool
    results: list[TargetResult] = field(default_factory=list)
    run_dir: Path | None = None
    #: The ``run.json`` of the publish this call followed instead of publishing (``None`` when it published).
    followed: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def exit_code(self) -> int:
        return max((r.exit_code for r in self.results), default=0)

    def public(self) -> dict[str, Any]:
        """JSON-ready: the folder, ``ok``, the run folder, each target's result (the followed run's, if any)."""
        targets = self.followed.get("results") if self.followed else None
        return {"folder": str(self.folder), "dry_run": self.dry_run, "ok": self.ok,
                "run_dir": str(self.run_dir) if self.run_dir else None,
                "followed_run": self.followed.get("id") if self.followed else None,
                "targets": targets if isinstance(targets, list) else [r.public() for r in self.results]}


def parse_target(spec: str) -> tuple[str, str]:
    """``NAME:TARGET`` -> ``(NAME, TARGET)``, e.g. ``hf:org/name``, ``git:https://host/o/n.git``."""
    name, sep, rest = spec.partition(":")
    if not sep or not name or not rest:
        raise BadInput(f"--to {spec!r} is not NAME:TARGET",
                       "use e.g. --to hf:ORG/NAME, --to modelscope:ORG/NAME, --to openxlab:OWNER/NAME or --to git:URL")
    return name, rest


def publishers() -> dict[str, Any]:
    """Registered publishers by name (for the Publish page's target picker)."""
    return plugins.registry("publishers")


def preflight(folder: Path, target: str, options: Mapping[str, Any],
              progress: ProgressCallback | None = None) -> Preflight:
    """One target's preflight: its plan (a :class:`PublishPlan` from every built-in publisher).

    Raises:
        VlhubError: a bad target (``BadInput``), or a remote that cannot be read.
    """
    name, rest = parse_target(target)
    return plugins.get("publishers", name).preflight(Path(folder).resolve(), rest, options, progress)


def execute(folder: Path, target: str, plan: Preflight, options: Mapping[str, Any],
            progress: ProgressCallback | None = None) -> Published:
    """Send one target as its preflight planned it.

    Args:
        folder: the model folder.
        target: ``NAME:TARGET``, as given to :func:`preflight`.
        plan: what :func:`preflight` returned (without problems).
        options: the publish options.
        progress: byte events per target (``TARGET: hash``, ``TARGET: upload``).

    Returns:
        The publisher's :class:`Published`. A publisher written for vlhub 0.1, whose
        preflight returns a plain :class:`Preflight`, is called the old way
        (``publish(folder, target, options, progress)``) and plans again itself.
    """
    name, rest = parse_target(target)
    publisher = plugins.get("publishers", name)
    if isinstance(plan, PublishPlan):
        return publisher.publish(plan, options, progress)
    return publisher.publish(Path(folder).resolve(), rest, options, progress)


def card_preview(folder: Path, target: str | None = None) -> tuple[str, bool]:
    """The model card a publish of ``folder`` would send: ``(text, generated)``.

    The folder's own ``README.md`` when it has one (``generated`` False); else the card the
    target's publisher generates (its optional ``card(folder, target)`` method; without a
    target, the first registered publisher that offers one, with the folder's name as the
    model's). No network; nothing is written.

    Args:
        folder: the model folder.
        target: ``NAME:TARGET`` (the first target chosen), or None.

    Returns:
        The card's text (``""`` when no publisher generates one) and whether it is generated.

    Raises:
        BadInput: ``target`` is not ``NAME:TARGET``, or the folder's ``vlhub_provenance.json``
            is damaged (named, with the fix).
    """
    folder = Path(folder)
    readme = folder / "README.md"
    if readme.is_file():
        return readme.read_text(encoding="utf-8", errors="replace"), False
    if target:
        name, rest = parse_target(target)
        candidates = [(plugins.get("publishers", name), rest)]
    else:
        candidates = [(p, "") for p in publishers().values()]
    for publisher, rest in candidates:
        card = getattr(publisher, "card", None)
        if callable(card):
            text = card(folder, rest)
            if text is not None:
                return text, True
    return "", True


def publish(folder: Path, targets: list[str], options: Mapping[str, Any] | None = None, *,
            dry_run: bool = False, progress: ProgressCallback | None = None, run: runs.Run | None = None,
            on_attach: Callable[[runs.Run], None] | None = None) -> PublishReport:
    """Preflight (plan) every target, then (unless ``dry_run``) execute the plan of each that passed.

    One publish of a folder to a set of targets runs at a time: when another process (a terminal,
    a launcher job) is already publishing the same folder to the same targets, this call attaches to
    that run (``on_attach`` is told first), follows it to its end, and reports its outcome
    (:attr:`PublishReport.followed`) instead of waiting on its locks.

    Args:
        folder: the model folder.
        targets: ``NAME:TARGET`` specs.
        options: ``private``, ``via``, ``message``, ``require_keyword``, ``overwrite_card``,
            ``follow_symlinks``, ``skip_serve_check`` and the publishers' own options.
        dry_run: only preflight (uncached weights are hashed so the table is exact).
        progress: byte events per target.
        run: the run to record a real publish in (a launcher job's own run), instead of a new one.
        on_attach: called with the running run when this call follows one instead of publishing.

    Returns:
        Every target's preflight, result and one-line error; ``exit_code`` 0 only when all succeeded.
        Each preflight's ``checks["serve_check"]`` is the folder's last serve check
        (:func:`vlhub.core.serve_check.gate`: ``status`` ``ok``, ``failed`` or ``not checked``).

    Raises:
        BadInput: no target, ``folder`` is not a folder, or the folder's last serve check failed and
            ``skip_serve_check`` is not set (nothing is preflighted or sent).
    """
    folder = Path(folder).expanduser().resolve()
    options = {**(options or {}), "dry_run": dry_run}
    if not targets:
        raise BadInput("no target given", "add --to hf:ORG/NAME (or modelscope:, openxlab:, git:URL)")
    if not folder.is_dir():
        raise BadInput(f"{folder} is not a folder", "give the model folder written by `vlhub convert`")
    serve = serve_check.gate(folder, bool(options.get("skip_serve_check")))  # before any run is claimed
    key = work_key(folder, targets)
    running = None if run is not None else runs.find_active("publish", key)  # a launcher job has claimed its work already
    if running is None and not dry_run and run is None:
        run, attached = runs.claim("publish", key, folder=str(folder), targets=[redact(t) for t in targets],
                                   options={k: v for k, v in options.items() if k != "message"})
        running = run if attached else None
    if running is not None:
        return _follow(folder, dry_run, running, on_attach, progress)
    report = PublishReport(folder, dry_run, [TargetResult(t) for t in targets])
    if run is not None:
        run.update(key=key, status="running")
        if not isinstance(progress, runs.ProgressRecorder):
            progress = runs.ProgressRecorder(run, progress)
    for result in report.results:
        _guard(result, lambda r=result: setattr(r, "preflight", preflight(folder, r.target, options, progress)))
        if result.preflight is not None:
            result.preflight.checks["serve_check"] = serve
        if result.ok and result.preflight is not None and not result.preflight.ok:
            result.error = f"{result.target}: " + "; ".join(result.preflight.problems)
            result.exit_code = 2
    if dry_run or run is None:
        return report
    report.run_dir = run.dir
    for result in report.results:
        if result.ok and result.preflight is not None:
            _guard(result, lambda r=result: setattr(
                r, "published", execute(folder, r.target, r.preflight, options, progress)))
    progress.flush()
    run.update(status="done" if report.ok else "failed", exit_code=report.exit_code,
               results=[r.public() for r in report.results])
    return report


def work_key(folder: Path, targets: list[str]) -> str:
    """What makes two publishes the same work: the folder and the set of targets (user-info redacted)."""
    return "\n".join([str(folder), *sorted(redact(t) for t in targets)])


def _follow(folder: Path, dry_run: bool, running: runs.Run, on_attach: Callable[[runs.Run], None] | None,
            progress: ProgressCallback | None) -> PublishReport:
    from .lifecycle import follow

    if on_attach is not None:
        on_attach(running)
    shown: dict[str, float] = {}

    def draw(current: runs.Run) -> None:
        for task, event in (current.data.get("progress") or {}).items():
            if progress is not None and isinstance(event, dict) and event.get("done") != shown.get(task):
                shown[task] = event.get("done", 0)
                with contextlib.suppress(TypeError):
                    progress(Progress(**event))

    ended = follow(running, draw)
    report = PublishReport(folder, dry_run, run_dir=ended.dir, followed=ended.data)
    for item in ended.data.get("results") or []:
        if isinstance(item, dict):
            report.results.append(TargetResult(str(item.get("target", "")), error=str(item.get("error") or ""),
                                               exit_code=int(ended.data.get("exit_code") or 1) if item.get("error")
                                               else 0))
    if not report.results:  # it ended without recording results (killed, lost): say so
        report.results.append(TargetResult(", ".join(ended.data.get("targets") or []),
                                           error=f"the publish it followed (run {ended.id}) ended as "
                                                 f"{ended.status} without results; rerun", exit_code=1))
    return report


def _guard(result: TargetResult, action: Any) -> None:
    """Run one target's step; an error becomes that target's one-line, redacted failure."""
    try:
        action()
    except Exception as exc:  # one target's failure must not stop the others
        error = user_error(exc)
        result.error, result.exit_code = redact(f"{result.target}: {error.one_line()}"), error.exit_code
        result.failure = error
