"""The pages' view of background jobs: the runs :mod:`vlhub.core.jobs` starts, as running / done / failed.

A page calls :func:`start` with an action of :data:`vlhub.core.jobs.ACTIONS` and its arguments (a second
request for the same work attaches to the running job: one job per action and key), then follows the job
(``widgets.job_panel`` polls it) and lists :func:`recent` ones; :func:`running` tells whether the work a
button would start runs now (the button is then disabled). Everything is read from the job's run folder, so a
reload or a restarted launcher shows the same; ``vlhub runs`` lists the same jobs.
"""
from __future__ import annotations

import datetime as _dt
import time
from dataclasses import dataclass
from typing import Any, Mapping

from vlhub.core import jobs as core_jobs
from vlhub.core.errors import VlhubError
from vlhub.core.lifecycle import ACTIVE, LOST, refresh
from vlhub.core.runs import Run, check_process, list_runs, load_run
from vlhub.core.types import Progress


@dataclass
class Job:
    """One job run, as a page shows it."""

    run: Run

    @property
    def id(self) -> str:
        """The job's run id."""
        return self.run.id

    @property
    def kind(self) -> str:
        """The action (the run's kind)."""
        return self.run.kind

    @property
    def args(self) -> dict[str, Any]:
        """The action's arguments as recorded (redacted)."""
        return self.run.data.get("spec") or {}

    @property
    def label(self) -> str:
        """What the page shows while the job runs (the action when no label was given)."""
        return self.run.data.get("label") or self.kind

    def reload(self) -> Job:
        """Read the job's ``run.json`` again (refreshed: a vanished process is recorded) and return the job."""
        self.run = refresh(load_run(self.run.dir))
        return self

    @property
    def status(self) -> str:
        """``running`` while the run is active (its process provably the job's), ``done`` once its result is
        recorded, or ``failed`` (which includes a job whose process vanished or cannot be proven to be vlhub's,
        and one that ended without a result); read fresh."""
        status = self.reload().run.status
        if status in ACTIVE or status == "created":
            return "running"
        if status == "done" and "result" not in self.run.data:  # the action recorded its own end (a publish
            # records its run): the job process writes the result next, unless it is gone
            return "running" if check_process(self.run.data, "pid").process is not None else "failed"
        return "done" if status == "done" else "failed"

    @property
    def active(self) -> bool:
        """Whether the job is running (read fresh)."""
        return self.status == "running"

    @property
    def result(self) -> Any:
        """The action's JSON-ready result once ``done`` (``None`` before)."""
        return self.run.data.get("result")

    @property
    def error(self) -> str:
        """The job's one-line error; for a job that ended without one, why (and where its output is)."""
        if self.status != "failed" or self.run.data.get("error"):
            return self.run.data.get("error") or ""
        log = self.run.path(core_jobs.LOG)
        if self.run.status == LOST:
            return (f"the job's process cannot be proven to be vlhub's ({self.run.data.get('lost_reason')}); "
                    f"see {log}")
        return f"the job ended without a result; see {log}"

    @property
    def attached(self) -> int:
        """How many requests attached to this job instead of starting another (a double click: 1)."""
        return int(self.run.data.get("attached") or 0)

    @property
    def dry(self) -> bool:
        """Whether the job only checks: a preflight (``publish`` with ``dry_run``) or a training check
        (``train.plan`` without ``launch``). Run lists leave such jobs out unless asked for."""
        return is_dry(self.run)

    @property
    def created(self) -> float | None:
        """When the job was started (seconds since the epoch), if recorded."""
        return seconds(self.run.data.get("created"))

    def elapsed(self) -> float | None:
        """Seconds the job ran: until it ended, or until now while it runs."""
        start = self.created
        if start is None:
            return None
        end = seconds(self.run.data.get("ended")) if self.run.status not in ACTIVE else None
        return max(0.0, (end or time.time()) - start)

    def failure(self) -> VlhubError | None:
        """The job's error as a :class:`VlhubError` (to show it in the page's language), when it recorded one."""
        return core_jobs.job_error(self.run.data.get("error_detail"))

    def error_in(self, lang: str, labels: Mapping[str, str] | None = None) -> str:
        """The job's one-line error in ``lang``, CLI flags replaced by the page's field ``labels``."""
        failure = self.failure()
        return failure.localized(lang, labels) if failure is not None else self.error

    def progress(self) -> dict[str, Progress]:
        """The latest event of each task, in the order the tasks started (read fresh)."""
        return core_jobs.progress(self.reload().run)

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` of the job process's own output (tracebacks of unexpected failures)."""
        path = self.run.path(core_jobs.LOG)
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else ""


def start(action: str, args: dict[str, Any], label: str = "") -> Job:
    """Start a job (:func:`vlhub.core.jobs.start`) and return it: a new one, or the one already doing the
    same work (then :attr:`Job.attached` counts the requests that attached to it)."""
    return Job(core_jobs.start(action, args, label))


def is_dry(run: Run) -> bool:
    """Whether a job run only checks (a preflight, a training check), see :attr:`Job.dry`."""
    spec = run.data.get("spec") or {}
    action = run.data.get("action")
    return bool(spec.get("dry_run")) if action == "publish" else \
        not spec.get("launch") if action == "train.plan" else False


def running(action: str, args: dict[str, Any]) -> Job | None:
    """The job of ``action`` doing the same work as ``args`` right now (same key, :data:`vlhub.core.jobs.KEYS`),
    or ``None``: the page disables the button that would start it."""
    try:
        key = core_jobs.KEYS[action](args)
    except (KeyError, TypeError, ValueError, OSError):
        return None
    for run in list_runs(action):
        if run.data.get("action") == action and run.data.get("key") == key and run.status in ACTIVE:
            job = Job(refresh(run))
            if job.run.status in ACTIVE:
                return job
    return None


def recent(action: str, limit: int = 8, *, dry: bool = True, **match: Any) -> list[Job]:
    """The newest jobs of ``action`` (refreshed) whose arguments include ``match``; ``dry=False`` leaves
    checks out (:attr:`Job.dry`)."""
    found: list[Job] = []
    for run in list_runs(action):
        spec = run.data.get("spec") or {}
        if run.data.get("action") != action or any(spec.get(k) != v for k, v in match.items()):
            continue
        if not dry and is_dry(run):
            continue
        found.append(Job(refresh(run)))
        if len(found) >= limit:
            break
    return found


def active(limit: int = 20) -> list[Job]:
    """Every job that runs now, of any action (the Home page lists them)."""
    found = []
    for run in list_runs():
        if run.data.get("action") in core_jobs.ACTIONS and run.status in ACTIVE:
            job = Job(refresh(run))
            if job.run.status in ACTIVE:
                found.append(job)
        if len(found) >= limit:
            break
    return found


def seconds(stamp: Any) -> float | None:
    """An ISO 8601 time (``2026-11-24T07:15:00.123+00:00`` or ``...+0000``) as seconds since the epoch."""
    if not isinstance(stamp, str) or not stamp:
        return None
    for parse in (_dt.datetime.fromisoformat, lambda s: _dt.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S%z")):
        try:
            return parse(stamp).timestamp()
        except ValueError:
            continue
    return None


def load(job_id: str) -> Job:
    """A job by id, read fresh from its run folder (and refreshed)."""
    return Job(refresh(load_run(job_id)))


def latest(action: str, **match: Any) -> Job | None:
    """The newest job of ``action`` whose arguments include ``match``."""
    run = core_jobs.latest(action, **match)
    return Job(run) if run is not None else None
