"""The pages' view of background jobs: the runs :mod:`vlhub.core.jobs` starts, as running / done / failed.

A page calls :func:`start` with an action of :data:`vlhub.core.jobs.ACTIONS` and its arguments, then
follows :func:`latest` (``widgets.follow`` polls it). Everything is read from the job's run folder, so a
reload or a restarted launcher shows the same; ``vlhub runs`` lists the same jobs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vlhub.core import jobs as core_jobs
from vlhub.core.lifecycle import ACTIVE, LOST, refresh
from vlhub.core.runs import Run, load_run
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
        """``running`` while the run is active (its process provably the job's), ``done``, or ``failed``
        (which includes a job whose process vanished or cannot be proven to be vlhub's); read fresh."""
        status = self.reload().run.status
        if status in ACTIVE or status == "created":
            return "running"
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

    def progress(self) -> dict[str, Progress]:
        """The latest event of each task, in the order the tasks started (read fresh)."""
        return core_jobs.progress(self.reload().run)

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` of the job process's own output (tracebacks of unexpected failures)."""
        path = self.run.path(core_jobs.LOG)
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else ""


def start(action: str, args: dict[str, Any], label: str = "") -> Job:
    """Start a job (:func:`vlhub.core.jobs.start`) and return it."""
    return Job(core_jobs.start(action, args, label))


def load(job_id: str) -> Job:
    """A job by id, read fresh from its run folder (and refreshed)."""
    return Job(refresh(load_run(job_id)))


def latest(action: str, **match: Any) -> Job | None:
    """The newest job of ``action`` whose arguments include ``match``."""
    run = core_jobs.latest(action, **match)
    return Job(run) if run is not None else None
