"""Run folders under ``$VLHUB_HOME/runs``: one folder per run, described by ``run.json``.

``run.json`` is written atomically and under a file lock, so the launcher, the CLI
and a detached worker can all update it. Paths stored in it are absolute.
"""
from __future__ import annotations

import datetime as _dt
import os
import secrets as _random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from filelock import FileLock

from .errors import BadInput
from .fsutil import atomic_write_json, read_json
from .home import runs_dir

RUN_FILE = "run.json"


@dataclass
class Run:
    """A run folder and the contents of its ``run.json``."""

    dir: Path
    data: dict[str, Any]

    @property
    def id(self) -> str:
        return self.data["id"]

    @property
    def kind(self) -> str:
        return self.data.get("kind", "")

    @property
    def status(self) -> str:
        return self.data.get("status", "created")

    def path(self, *parts: str) -> Path:
        """A path inside the run folder."""
        return self.dir.joinpath(*parts)

    def update(self, **fields: Any) -> "Run":
        """Merge ``fields`` into ``run.json`` (locked, atomic) and return the fresh run."""
        with FileLock(str(self.dir / ".run.lock")):
            current = read_json(self.dir / RUN_FILE, {}) or {}
            current.update(fields)
            current["updated"] = _now()
            atomic_write_json(self.dir / RUN_FILE, current)
        self.data = current
        return self


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def new_run(kind: str, **fields: Any) -> Run:
    """Create a run folder with a fresh id like ``20261124-071500-train-a1b2``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_id = f"{stamp}-{kind}-{_random.token_hex(2)}"
    folder = runs_dir() / run_id
    folder.mkdir(parents=True)
    run = Run(folder.resolve(), {})
    return run.update(id=run_id, kind=kind, status="created", created=_now(), **fields)


def load_run(ref: str | Path) -> Run:
    """A run by id or by folder path; a clear error when it does not exist."""
    candidates = [Path(ref)] if os.sep in str(ref) else [runs_dir() / str(ref)]
    for folder in candidates:
        data = read_json(folder / RUN_FILE)
        if data is not None:
            return Run(folder.resolve(), data)
    raise BadInput(f"no run {str(ref)!r} (no {RUN_FILE} there)",
                   "`vlhub runs` lists the runs; the folder may have been deleted")


def list_runs(kind: str | None = None) -> list[Run]:
    """Every run, newest first."""
    runs = []
    for folder in runs_dir().iterdir():
        data = read_json(folder / RUN_FILE) if folder.is_dir() else None
        if data and (kind is None or data.get("kind") == kind):
            runs.append(Run(folder.resolve(), data))
    return sorted(runs, key=lambda r: r.data.get("created", ""), reverse=True)


def live_process(pid: int | None, started: float | None = None) -> psutil.Process | None:
    """The running process ``pid``, if it is the one started at ``started`` (not a reused pid)."""
    if not pid:
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        if started is not None and abs(proc.create_time() - started) >= 1.0:
            return None
        return proc
    except psutil.Error:
        return None


def process_alive(pid: int | None, started: float | None = None) -> bool:
    """Whether ``pid`` still runs (and is the same process, when its start time is known)."""
    return live_process(pid, started) is not None
