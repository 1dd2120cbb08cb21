"""Starting, watching, stopping and resuming a detached training run: what every trainer does the same way.

A trainer supplies what is its own (its supervisor module, how its files give the progress and the outcome,
its checkpoints and its command's resume flag); the rules on processes are kept here once: a process that
``run.json`` records is signalled only when :func:`vlhub.core.runs.check_process` proves it vlhub's (pid,
start time and command line as recorded), never a protected one (:func:`vlhub.core.runs.is_protected`); a
live process that cannot be proven makes the run ``lost``, and nothing is signalled then.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import psutil

from vlhub.core.errors import BadInput
from vlhub.core.lifecycle import ACTIVE, LOST, lost_message
from vlhub.core.runs import (GONE, OWNED, UNPROVEN, Run, check_process, is_protected, load_run, process_record,
                             start_detached, terminate_tree)
from vlhub.core.types import Checkpoint, TrainPlan, to_dict

#: Fields that name the training process of a launch, cleared when a run is (re)launched.
_FORGET_TRAIN_PID = {"train_pid": None, "train_pid_started": None, "train_pid_cmdline": None}

#: How an ended run ended, judged from its files: ``(run, stopping)`` -> ``status``, ``progress``, ... fields.
Outcome = Callable[[Run, bool], dict[str, Any]]


def start_supervisor(run: Run, plan: TrainPlan, env: Mapping[str, str], module: str) -> int:
    """Record ``plan`` in ``run.json``, start ``python -m MODULE RUN_DIR`` detached and record it as the run's
    process (pid, start time, command line).

    The plan is recorded first (the supervisor reads its command); the status turns ``running`` only once the
    pid is known, so ``vlhub runs`` never sees an active run without a process. A resumed run forgets the
    previous training process (its pid may be reused by now) and the previous outcome.

    Args:
        run: the run, loaded from ``plan.run_dir``.
        plan: what to run (its ``command`` is the supervisor's to start).
        env: the supervisor's environment.
        module: the trainer's supervisor module (``vlhub.plugins.trainers.supervisor``, ...).
    Returns:
        The supervisor's pid.
    """
    run.update(plan=to_dict(plan), error=None, rank_errors=None, log_tail=None, ended=None, lost_reason=None,
               lost_pid=None, **_FORGET_TRAIN_PID)
    argv = [sys.executable, "-m", module, str(plan.run_dir)]
    proc = start_detached(argv, env, plan.run_dir, plan.run_dir / "supervisor.log")
    run.update(status="running", **process_record(proc, "pid"), started=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    return proc.pid


def status(run_dir: Path, refresh: Callable[[Path], dict[str, Any]], outcome: Outcome) -> dict[str, Any]:
    """The run's state from its folder; without a live supervisor, its files are read here instead.

    Args:
        run_dir: the run folder.
        refresh: rewrites the run's ``metrics.jsonl`` from its logs (when no supervisor follows them) and returns
            ``run.json``'s ``progress``.
        outcome: how the run ended, judged from its files.
    Returns:
        ``status`` (and ``progress``) while the supervisor or the training process is provably vlhub's; for an
        active run whose recorded process is alive but not provably vlhub's, ``status: lost`` with
        ``lost_reason`` and ``lost_pid``; else ``outcome``'s fields (``finished``/``stopped``/``failed``).
        Nothing is signalled.
    """
    run = load_run(run_dir)
    supervisor = check_process(run.data, "pid")
    if supervisor.state == OWNED:
        return {"status": run.status, "progress": run.data.get("progress")}
    if run.status in ACTIVE:
        progress = refresh(run.dir)
        trainer = check_process(run.data, "train_pid")
        if trainer.state == OWNED:
            return {"status": run.status, "progress": progress}
        for check in (supervisor, trainer):
            if check.state == UNPROVEN:
                return {"status": LOST, "lost_reason": check.reason, "lost_pid": check.pid}
    return outcome(run, run.status == "stopping")


def owned_or_refuse(run: Run, prefix: str) -> psutil.Process | None:
    """The live process ``run.json`` records under ``prefix``, when it is provably vlhub's and may be signalled.

    Args:
        run: the run.
        prefix: the record's field prefix (``pid``: the supervisor; ``train_pid``: the training process).
    Returns:
        The process, or ``None`` when none is alive.
    Raises:
        BadInput: a live process holds the recorded pid but cannot be proven to be vlhub's (the run is
            recorded ``lost`` first), or the process is this command's own, an ancestor or in its process group.
    """
    check = check_process(run.data, prefix)
    if check.state == UNPROVEN:
        run.update(status=LOST, lost_reason=check.reason, lost_pid=check.pid)
        raise BadInput(*lost_message(run))
    if check.process is not None and is_protected(check.process.pid):
        raise BadInput(f"run {run.id}: pid {check.pid} is this command's own process, an ancestor of it or in "
                       "its process group; nothing was signalled",
                       f"run `vlhub run stop {run.id}` from another shell")
    return check.process


def stop(run_dir: Path, timeout: float, outcome: Outcome) -> dict[str, Any]:
    """SIGTERM the run's training process tree (then SIGKILL after ``timeout`` s) and record ``stopped``.

    Only processes proven to be this run's are signalled (:func:`owned_or_refuse`); the supervisor records the
    outcome, or ``outcome`` does when it cannot.

    Args:
        run_dir: the run folder.
        timeout: seconds between SIGTERM and SIGKILL.
        outcome: how the run ended, judged from its files (called with ``stopping`` true).
    Returns:
        The run's ``run.json`` after the stop.
    Raises:
        BadInput: the run is not active; or it is (or turns out) ``lost``: a live process holds a recorded pid
            but cannot be proven to be vlhub's (the run is recorded ``lost``); or a proven process is this
            command's own, an ancestor or in its process group. Nothing is signalled then.
    """
    run = load_run(run_dir)
    if run.status == LOST:
        raise BadInput(*lost_message(run))
    if run.status not in ACTIVE:
        raise BadInput(f"run {run.id} is {run.status}, not running", "`vlhub runs` shows which runs are running")
    supervisor = owned_or_refuse(run, "pid")
    owned_or_refuse(run, "train_pid")
    run.update(status="stopping")
    deadline = time.monotonic() + 10
    while supervisor and not load_run(run_dir).data.get("train_pid") and time.monotonic() < deadline:
        time.sleep(0.2)  # the supervisor is still starting the command
    target = owned_or_refuse(load_run(run_dir), "train_pid") or supervisor
    if target:
        terminate_tree(target, timeout)
    if supervisor:
        try:
            supervisor.wait(timeout=15)  # it records the outcome
        except psutil.TimeoutExpired:
            terminate_tree(supervisor, 5)
    run = load_run(run_dir)
    if run.status == "stopping":
        run.update(**outcome(run, True))
    return load_run(run_dir).data


def resumable(run_dir: Path) -> Run:
    """The run, when it may be resumed: ended, planned, and with no live process left of it.

    Args:
        run_dir: the run folder.
    Returns:
        The run.
    Raises:
        BadInput: the run is active, ``lost`` with a process still holding a recorded pid, or never planned.
    """
    run = load_run(run_dir)
    if run.status in ACTIVE:
        raise BadInput(f"run {run.id} is still {run.status}", f"stop it first: `vlhub run stop {run.id}`")
    if run.status == LOST:
        for prefix in ("pid", "train_pid"):
            check = check_process(run.data, prefix)
            if check.state != GONE:
                raise BadInput(f"run {run.id} is lost and a process still holds its recorded {prefix} "
                               f"{check.pid}; resuming could start a second training in the same folder",
                               f"check it with `ps -o pid,lstart,args -p {check.pid}` and end it yourself if "
                               "it is this run's, then resume")
    if "plan" not in run.data:
        raise BadInput(f"run {run.id} was never planned", "start a new run with `vlhub train`")
    return run


def resumed_plan(run: Run, checkpoint: Checkpoint | None, flag: str, unit: str) -> TrainPlan:
    """The run's recorded plan with ``FLAG CHECKPOINT`` at the end of its command (an earlier one replaced).

    Args:
        run: a run :func:`resumable` returned.
        checkpoint: the run's last complete checkpoint, or ``None``.
        flag: the training command's resume option (``--resume``, ``--resume_from_checkpoint``).
        unit: what the checkpoint's step counts, for the plan's warning (``iteration``, ``step``).
    Returns:
        The plan, warning ``resuming from NAME (UNIT N)``.
    Raises:
        BadInput: ``checkpoint`` is ``None``.
    """
    if checkpoint is None:
        raise BadInput(f"run {run.id} has no complete checkpoint to resume from",
                       "start it again with `vlhub train` (or lower --save-steps next time)")
    stored = run.data["plan"]
    command = list(stored["command"])
    if flag in command:
        at = command.index(flag)
        del command[at:at + 2]
    return TrainPlan(run.id, run.dir, Path(stored["config"]), [*command, flag, str(checkpoint.path)], stored["env"],
                     stored["dataset"], stored["settings"],
                     [f"resuming from {checkpoint.path.name} ({unit} {checkpoint.step})"])
