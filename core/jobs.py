"""Background jobs: one core call in a detached process, recorded as a run of :mod:`vlhub.core.runs`.

The launcher's pages start long work here (prepare a dataset, convert, check a model folder, publish, create an
environment, plan/stop/resume a training run) so that a closed tab or a restarted launcher
never stops it, and ``vlhub runs`` lists it next to the training runs. A job is a run whose
``kind`` is the action (:data:`ACTIONS`); its ``run.json`` holds:

    action          the action again (it tells a job from a run its call records itself, e.g. ``publish``'s)
    spec            the action's arguments (redacted: no token or URL user-info)
    label           what the page shows while it runs
    status          ``running``, then ``done`` or ``failed`` (``lost`` when its process cannot be proven
                    to be vlhub's, :func:`vlhub.core.lifecycle.refresh`)
    pid, pid_started, pid_cmdline
                    the job process (:func:`vlhub.core.runs.process_record`)
    progress        the latest :class:`~vlhub.core.types.Progress` of each task, by task
    result / error  the call's JSON-ready result, or its one-line error and ``exit_code``
    error_detail    the error's catalog key and arguments (or English message and fix), so that a page
                    shows it in its own language (:func:`job_error`)

The process is ``python -m vlhub.core.jobs RUN_DIR``; it reads the arguments, unredacted, from
its standard input (they are never written to a file) and writes its output to ``output.log``
in the run folder. Every action calls the same core function as its CLI verb.
"""
from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from . import messages
from .boundary import user_error
from .errors import BadInput, VlhubError
from .lifecycle import refresh
from .runs import ProgressRecorder, Run, claim, list_runs, load_run, process_record, start_detached
from .stage import clean_env
from .types import Progress, ProgressCallback, to_dict

Call = Callable[[dict[str, Any], ProgressCallback, Run], Any]
#: The job process's output, in the run folder.
LOG = "output.log"


def _prepare(a: dict[str, Any], progress: ProgressCallback, run: Run) -> Any:
    from . import data

    return data.result(data.prepare(a["name"], Path(a["source"]), Path(a["out"]), a["options"],
                                    strict=a["strict"], force=a["force"], progress=progress))


def _publish(a: dict[str, Any], progress: ProgressCallback, run: Run) -> Any:
    from . import publish

    return publish.publish(Path(a["folder"]), a["targets"], a["options"], dry_run=a["dry_run"],
                           progress=progress, run=None if a["dry_run"] else run).public()


def _check(a: dict[str, Any], progress: ProgressCallback, run: Run) -> Any:
    from . import serve_check

    return serve_check.check(Path(a["folder"]), a.get("backend") or "transformers",
                             int(a.get("max_new_tokens") or serve_check.DEFAULT_MAX_NEW_TOKENS)).public()


def _convert(a: dict[str, Any], progress: ProgressCallback, run: Run) -> Any:
    from . import convert

    return to_dict(convert.convert(a["source"], a["out"], config=a.get("config"), template=a.get("template"),
                                   force=a["force"], verify=a["verify"], progress=progress))


def _env_create(a: dict[str, Any], progress: ProgressCallback, run: Run) -> Any:
    from . import stage

    return stage.create(a["name"], progress).public()


def _train_plan(a: dict[str, Any], progress: ProgressCallback, run: Run) -> Any:
    from . import train

    run, plan = train.plan(Path(a["model"]), Path(a["data"]), a["options"], a["trainer"])
    if a["launch"]:
        run = train.launch(plan)  # a refused start removes the planned run (no ghost run); the job's error says why
    # the plan's warnings as English text, and their catalog keys for the page's language
    return {"run_id": run.id, "status": run.status, "plan": to_dict(plan),
            "warning_details": messages.details(plan.warnings)}


def _train_stop(a: dict[str, Any], progress: ProgressCallback, run: Run) -> Any:
    from . import train

    return {"run_id": a["run_id"], "status": train.stop(a["run_id"]).status}


def _train_resume(a: dict[str, Any], progress: ProgressCallback, run: Run) -> Any:
    from . import train

    run = train.resume(a["run_id"])
    return {"run_id": run.id, "status": run.status, "resumed_from": run.data.get("resumed_from")}


#: action (= the job run's kind) -> the call it makes (the functions of `vlhub data prepare`, `publish`, ...)
ACTIONS: dict[str, Call] = {"data.prepare": _prepare, "publish": _publish, "check": _check, "convert": _convert,
                            "env.create": _env_create, "train.plan": _train_plan, "train.stop": _train_stop,
                            "train.resume": _train_resume}


def _path_key(*names: str) -> Callable[[dict[str, Any]], str]:
    return lambda a: "\n".join(str(Path(str(a.get(n) or "")).expanduser().resolve()) if a.get(n) else "" for n in names)


def _publish_key(a: dict[str, Any]) -> str:
    from .publish import work_key

    return work_key(Path(str(a.get("folder") or "")).expanduser().resolve(), list(a.get("targets") or []))


#: action -> what makes two requests the same work (a second one attaches to the first: one job per click).
KEYS: dict[str, Callable[[dict[str, Any]], str]] = {
    "data.prepare": _path_key("out"),
    "publish": lambda a: ("dry-run\n" if a.get("dry_run") else "") + _publish_key(a),
    "check": lambda a: json.dumps([_path_key("folder")(a), a.get("backend"), a.get("max_new_tokens")]),
    "convert": _path_key("out"),
    "env.create": lambda a: str(a.get("name")),
    "train.plan": lambda a: json.dumps([_path_key("model", "data")(a), a.get("trainer"), a.get("options"),
                                        bool(a.get("launch"))], sort_keys=True, default=str),
    "train.stop": lambda a: str(a.get("run_id")),
    "train.resume": lambda a: str(a.get("run_id")),
}


def start(action: str, args: dict[str, Any], label: str = "") -> Run:
    """Start a job detached from this process, or attach to the one already doing the same work.

    Args:
        action: one of :data:`ACTIONS` (the run's kind).
        args: the action's arguments (JSON-ready).
        label: a short description for the page.
    Returns:
        The job's run: ``running`` with its process recorded (or already ended, if it was that quick);
        or, when a job of ``action`` with the same key (:data:`KEYS`) is running, that job's run
        (``run.data["attached"]`` is then the number of requests that attached to it).
    Raises:
        BadInput: unknown action. OSError: the process cannot be started (the run records ``failed``).
    """
    if action not in ACTIONS:
        raise BadInput(f"unknown job action {action!r}", f"use one of: {', '.join(ACTIONS)}")
    run, attached = claim(action, KEYS[action](args), action=action, spec=args, label=label)
    if attached:
        return run.update(attached=int(run.data.get("attached") or 0) + 1)
    argv = [sys.executable, "-m", "vlhub.core.jobs", str(run.dir)]
    try:
        proc = start_detached(argv, clean_env(), run.dir, run.dir / LOG, stdin=json.dumps(args).encode("utf-8"))
    except OSError as exc:
        run.update(status="failed", error=user_error(exc).one_line(), exit_code=1)
        raise
    # pid, start time and command line: the job counts as running only while a process matches all three
    return run.update_if(("running",), **process_record(proc, "pid"))  # unless the job already recorded its outcome


def latest(action: str, **match: Any) -> Run | None:
    """The newest job run of ``action`` whose (redacted) arguments include ``match``, refreshed
    (:func:`vlhub.core.lifecycle.refresh`); ``None`` when there is none."""
    for run in list_runs(action):
        spec = run.data.get("spec") or {}
        if run.data.get("action") == action and all(spec.get(k) == v for k, v in match.items()):
            return refresh(run)
    return None


def progress(run: Run) -> dict[str, Progress]:
    """The latest progress event of each of a job's tasks, in the order the tasks started."""
    events: dict[str, Progress] = {}
    for task, event in (run.data.get("progress") or {}).items():
        try:
            events[task] = Progress(**event)
        except TypeError:
            continue
    return events


def error_detail(error: VlhubError) -> dict[str, Any]:
    """What a page needs to show a job's error in its own language (:meth:`VlhubError.localized`):
    the catalog key and its arguments, or the English message and fix; and ``where``."""
    params = json.loads(json.dumps(error.params, default=str))  # JSON-ready (paths as text)
    return {"key": error.key, "params": params, "where": error.where,
            "message": "" if error.key else error.message, "hint": "" if error.key else error.hint}


def job_error(detail: Any) -> VlhubError | None:
    """The :class:`VlhubError` a job recorded (``run.json``'s ``error_detail``), to show it localized;
    ``None`` when the job recorded none (or an unreadable one)."""
    if not isinstance(detail, dict):
        return None
    key, params = detail.get("key") or "", detail.get("params") if isinstance(detail.get("params"), dict) else {}
    try:
        if key in messages.CATALOG:
            return VlhubError(key, where=str(detail.get("where") or ""), **params)
        if detail.get("message"):
            return VlhubError(str(detail["message"]), str(detail.get("hint") or ""), where=str(detail.get("where") or ""))
    except (KeyError, TypeError, ValueError, IndexError):  # a key whose arguments changed since
        return None
    return None


def run_job(folder: Path, args: dict[str, Any]) -> int:
    """The detached job process's body: run the action of the job run in ``folder`` and record the outcome.

    Args:
        folder: the job's run folder.
        args: the action's arguments (read from stdin by ``python -m vlhub.core.jobs``).
    Returns:
        The exit code: 0 when the action succeeded, else the error's exit code.
    """
    run = load_run(folder)
    recorder = ProgressRecorder(run)
    outcome: dict[str, Any]
    try:
        outcome = {"status": "done", "result": ACTIONS[run.kind](args, recorder, run)}
    except Exception as exc:  # every failure is one line; an unexpected one's traceback goes to output.log
        error = user_error(exc)
        if error is not exc:
            traceback.print_exc()
        outcome = {"status": "failed", "error": error.one_line(), "exit_code": error.exit_code,
                   "error_detail": error_detail(error)}
    recorder.flush()
    run.update(**outcome, ended=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    return 0 if outcome["status"] == "done" else outcome["exit_code"]


if __name__ == "__main__":
    sys.exit(run_job(Path(sys.argv[1]), json.loads(sys.stdin.read() or "{}")))
