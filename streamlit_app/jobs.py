"""Background jobs of the launcher: one core call in a detached process that writes to a folder.

A page calls :func:`start` with a kind from :data:`CALLS` and its arguments. The job runs
``python -m vlhub.streamlit_app.jobs JOB_DIR`` in a session of its own, so a closed tab or a
restarted launcher never stops it; pages poll its folder under ``$VLHUB_HOME/jobs``:

    job.json        kind, arguments, label (written once, by the launcher)
    launch.json     the process's pid, start time and command-line fingerprint (written once, by the
                    launcher; see :func:`vlhub.core.runs.process_record`)
    state.json      status, result or error (written by the job)
    progress.jsonl  the core call's progress events
    output.log      the process's own output (tracebacks of unexpected failures)

Every kind calls the same core or plugin function as its CLI verb.
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from vlhub.core.errors import VlhubError
from vlhub.core.fsutil import atomic_write_json, read_json
from vlhub.core.home import vlhub_home
from vlhub.core.runs import GONE, OWNED, check_process, process_record
from vlhub.core.secrets import redact
from vlhub.core.stage import clean_env
from vlhub.core.types import Progress, ProgressCallback, to_dict

Call = Callable[[dict[str, Any], ProgressCallback], Any]
THROTTLE_S = 0.25


def _prepare(a: dict[str, Any], progress: ProgressCallback) -> Any:
    from vlhub.core import data

    return data.result(data.prepare(a["name"], Path(a["source"]), Path(a["out"]), a["options"],
                                    strict=a["strict"], force=a["force"], progress=progress))


def _publish(a: dict[str, Any], progress: ProgressCallback) -> Any:
    from vlhub.core import publish

    return publish.publish(Path(a["folder"]), a["targets"], a["options"], dry_run=a["dry_run"],
                           progress=progress).public()


def _convert(a: dict[str, Any], progress: ProgressCallback) -> Any:
    from vlhub.plugins.converters import convert

    return to_dict(convert(a["source"], a["out"], config=a.get("config"), template=a.get("template"),
                           force=a["force"], verify=a["verify"], progress=progress))


def _env_create(a: dict[str, Any], progress: ProgressCallback) -> Any:
    from vlhub.core import stage

    return stage.create(a["name"], progress).public()


def _train(a: dict[str, Any], progress: ProgressCallback) -> Any:
    from vlhub.plugins.trainers import training

    run, plan = training.plan_run(Path(a["model"]), Path(a["data"]), a["options"], a["trainer"])
    if a["launch"]:
        run = training.launch_run(plan)
    return {"run_id": run.id, "status": run.status, "plan": to_dict(plan)}


def _train_stop(a: dict[str, Any], progress: ProgressCallback) -> Any:
    from vlhub.plugins.trainers import training

    return {"run_id": a["run_id"], "status": training.stop_run(a["run_id"]).status}


def _train_resume(a: dict[str, Any], progress: ProgressCallback) -> Any:
    from vlhub.plugins.trainers import training

    run = training.resume_run(a["run_id"])
    return {"run_id": run.id, "status": run.status, "resumed_from": run.data.get("resumed_from")}


#: kind -> the call it makes (the same functions as `vlhub data prepare`, `publish`, `convert`, ...)
CALLS: dict[str, Call] = {"data.prepare": _prepare, "publish": _publish, "convert": _convert,
                          "env.create": _env_create, "train": _train, "train.stop": _train_stop,
                          "train.resume": _train_resume}


def jobs_dir() -> Path:
    path = vlhub_home() / "jobs"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class Job:
    """One job folder, read fresh by :func:`load`."""

    dir: Path
    spec: dict[str, Any]
    state: dict[str, Any]
    launch: dict[str, Any]

    @property
    def id(self) -> str:
        return self.dir.name

    @property
    def kind(self) -> str:
        return self.spec["kind"]

    @property
    def args(self) -> dict[str, Any]:
        return self.spec["args"]

    @property
    def status(self) -> str:
        """``running``, ``done`` or ``failed``.

        ``running`` while ``launch.json`` is not written yet, or while the process it records is provably
        the job's (pid, start time and command line, :func:`vlhub.core.runs.check_process`); ``failed``
        when the process vanished without a word, or when the recorded pid is held by a process that
        cannot be proven to be the job's (an old ``launch.json`` without them, or a reused pid).
        """
        if self.state.get("status") in ("done", "failed"):
            return self.state["status"]
        if not self.launch or check_process(self.launch, "pid").state == OWNED:
            return "running"
        self.state = read_json(self.dir / "state.json", {}) or {}  # it may have ended since it was read
        return self.state.get("status") if self.state.get("status") in ("done", "failed") else "failed"

    @property
    def active(self) -> bool:
        return self.status == "running"

    @property
    def result(self) -> Any:
        return self.state.get("result")

    @property
    def error(self) -> str:
        if self.status == "failed" and not self.state.get("error"):
            check = check_process(self.launch, "pid")
            if check.state != GONE:
                return (f"the job's process cannot be proven to be vlhub's ({check.reason}); "
                        f"see {self.dir / 'output.log'}")
            return f"the job ended without a result; see {self.dir / 'output.log'}"
        return self.state.get("error", "")

    def progress(self) -> dict[str, Progress]:
        """The latest event of each task, in the order the tasks started."""
        latest: dict[str, Progress] = {}
        path = self.dir / "progress.jsonl"
        if path.is_file():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    event = Progress(**json.loads(line))
                except (ValueError, TypeError):
                    continue
                latest[event.task] = event
        return latest

    def log_tail(self, lines: int = 30) -> str:
        path = self.dir / "output.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else ""


def load(job_id: str) -> Job:
    """A job by id, read from its folder."""
    folder = jobs_dir() / job_id
    return Job(folder, read_json(folder / "job.json", {}), read_json(folder / "state.json", {}) or {},
               read_json(folder / "launch.json", {}) or {})


def start(kind: str, args: dict[str, Any], label: str = "") -> Job:
    """Start a job of ``kind`` detached from the launcher; returns it (status ``running``)."""
    if kind not in CALLS:
        raise ValueError(f"unknown job kind {kind!r}")
    now = time.time()  # ids sort by start time, to the millisecond
    job_id = f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}.{int(now * 1000) % 1000:03d}-{kind}-" \
             f"{secrets.token_hex(2)}"
    folder = jobs_dir() / job_id
    folder.mkdir(parents=True)
    atomic_write_json(folder / "job.json", {"kind": kind, "args": args, "label": label, "created": time.time()})
    with open(folder / "output.log", "ab") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "vlhub.streamlit_app.jobs", str(folder)],
                                stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True, env=clean_env())
    # pid, start time and command line: the job counts as running only while a process matches all three
    atomic_write_json(folder / "launch.json", process_record(proc.pid, "pid"))
    return load(job_id)


def latest(kind: str, **match: Any) -> Job | None:
    """The newest job of ``kind`` whose arguments include ``match``."""
    for folder in sorted(jobs_dir().glob(f"*-{kind}-*"), reverse=True):
        job = load(folder.name)
        if job.spec.get("kind") == kind and all(job.args.get(k) == v for k, v in match.items()):
            return job
    return None


class _ProgressFile:
    """A progress callback appending events to ``progress.jsonl``, at most one per task every 0.25 s."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.last: dict[str, float] = {}
        self.pending: dict[str, Progress] = {}

    def __call__(self, event: Progress) -> None:
        now = time.monotonic()
        finished = event.total is not None and event.done >= event.total
        if not finished and now - self.last.get(event.task, 0.0) < THROTTLE_S:
            self.pending[event.task] = event
            return
        self.last[event.task] = now
        self.pending.pop(event.task, None)
        self._write(event)

    def flush(self) -> None:
        for event in list(self.pending.values()):
            self._write(event)
        self.pending.clear()

    def _write(self, event: Progress) -> None:
        data = asdict(event)
        data["message"] = redact(data["message"])
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(data, ensure_ascii=False) + "\n")


def run(folder: Path) -> int:
    """Run the job in ``folder`` (the detached process's body); the exit code."""
    spec = read_json(folder / "job.json")
    atomic_write_json(folder / "state.json", {"status": "running", "pid": os.getpid(), "started": time.time()})
    progress = _ProgressFile(folder / "progress.jsonl")
    state: dict[str, Any]
    try:
        state = {"status": "done", "result": CALLS[spec["kind"]](spec["args"], progress)}
    except VlhubError as exc:
        state = {"status": "failed", "error": redact(exc.one_line()), "exit_code": exc.exit_code}
    except Exception as exc:  # shown as one line; the traceback goes to output.log
        traceback.print_exc()
        state = {"status": "failed", "error": redact(f"{type(exc).__name__}: {exc}"), "exit_code": 1}
    progress.flush()
    atomic_write_json(folder / "state.json", {**state, "pid": os.getpid(), "ended": time.time()})
    return 0 if state["status"] == "done" else 1


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1])))
