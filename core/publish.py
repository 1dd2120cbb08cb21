"""Publishing a model folder to several targets: preflight all of them, then send to each.

``publish(folder, ["hf:org/name", "git:https://..."], options)`` is what ``vlhub publish``
and the launcher's Publish page call. Every target is preflighted before any byte is
sent; a target that fails (preflight or upload) does not stop the others. A real publish
is recorded as a ``publish`` run (targets, results, errors; never a token).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from . import plugins, runs
from .boundary import user_error
from .errors import BadInput, VlhubError
from .secrets import redact
from .types import Preflight, ProgressCallback, Published, to_dict


@dataclass
class TargetResult:
    """One target's preflight, outcome (when sent) and error (one line, redacted)."""

    target: str
    preflight: Preflight | None = None
    published: Published | None = None
    error: str = ""
    exit_code: int = 0

    @property
    def ok(self) -> bool:
        return not self.error

    def public(self) -> dict[str, Any]:
        """JSON-ready: the target, ok, error, its preflight table and its result."""
        data: dict[str, Any] = {"target": redact(self.target), "ok": self.ok, "error": self.error}
        if self.preflight is not None:
            data["preflight"] = {**to_dict(self.preflight), "ok": self.preflight.ok}
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

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def exit_code(self) -> int:
        return max((r.exit_code for r in self.results), default=0)

    def public(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "dry_run": self.dry_run, "ok": self.ok,
                "run_dir": str(self.run_dir) if self.run_dir else None,
                "targets": [r.public() for r in self.results]}


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
    """One target's preflight; raises :class:`VlhubError` for a bad target."""
    name, rest = parse_target(target)
    return plugins.get("publishers", name).preflight(Path(folder).resolve(), rest, options, progress)


def publish(folder: Path, targets: list[str], options: Mapping[str, Any] | None = None, *,
            dry_run: bool = False, progress: ProgressCallback | None = None) -> PublishReport:
    """Preflight every target, then (unless ``dry_run``) send the folder to each that passed."""
    folder = Path(folder).expanduser().resolve()
    options = {**(options or {}), "dry_run": dry_run}
    if not targets:
        raise BadInput("no target given", "add --to hf:ORG/NAME (or modelscope:, openxlab:, git:URL)")
    if not folder.is_dir():
        raise BadInput(f"{folder} is not a folder", "give the model folder written by `vlhub convert`")
    report = PublishReport(folder, dry_run, [TargetResult(t) for t in targets])
    for result in report.results:
        _guard(result, lambda r=result: setattr(r, "preflight", preflight(folder, r.target, options, progress)))
        if result.ok and result.preflight is not None and not result.preflight.ok:
            result.error = f"{result.target}: " + "; ".join(result.preflight.problems)
            result.exit_code = 2
    if dry_run:
        return report
    run = runs.new_run("publish", folder=str(folder), targets=[redact(t) for t in targets],
                       options={k: v for k, v in options.items() if k != "message"}).update(status="running")
    report.run_dir = run.dir
    for result in report.results:
        if result.ok:
            name, rest = parse_target(result.target)
            _guard(result, lambda r=result, n=name, t=rest: setattr(
                r, "published", plugins.get("publishers", n).publish(folder, t, options, progress)))
    run.update(status="done" if report.ok else "failed", results=[r.public() for r in report.results])
    return report


def _guard(result: TargetResult, action: Any) -> None:
    """Run one target's step; an error becomes that target's one-line, redacted failure."""
    try:
        action()
    except Exception as exc:  # one target's failure must not stop the others
        error = user_error(exc)
        result.error, result.exit_code = redact(f"{result.target}: {error.one_line()}"), error.exit_code
