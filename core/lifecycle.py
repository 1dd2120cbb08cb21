"""Keeping ``run.json`` honest about processes that ended while nobody watched.

A run is active (:data:`ACTIVE`) while the process vlhub recorded for it is provably the one it
started (:func:`vlhub.core.runs.check_process`). When that process is gone the outcome is recorded;
when a live process holds the recorded pid but cannot be proven to be vlhub's, the run becomes
``lost``: vlhub no longer treats it as running and never signals that process.
"""
from __future__ import annotations

import time
from typing import Callable

from . import plugins
from .runs import ACTIVE, UNPROVEN, Run, check_process, load_run
#: A run whose recorded process is alive but not provably vlhub's (not active: nothing is signalled).
LOST = "lost"


def lost_message(run: Run) -> tuple[str, str]:
    """The one-line error (message, fix) for acting on a ``lost`` run: nothing was signalled."""
    reason = run.data.get("lost_reason") or "its recorded process cannot be checked"
    pid = run.data.get("lost_pid") or run.data.get("pid")
    return (f"run {run.id} is lost: its process cannot be proven to be vlhub's ({reason}); nothing was signalled",
            f"check it with `ps -o pid,lstart,args -p {pid}`; if it is this run's, end it yourself, then "
            f"`vlhub train --resume {run.id}` restarts from the last complete checkpoint")


def refresh(run: Run) -> Run:
    """Record how an active run ended when its process is no longer vlhub's.

    Args:
        run: any run (a training run, or a launcher job's: :mod:`vlhub.core.jobs`).
    Returns:
        The run, updated in ``run.json`` when it was active and its process (``pid``: a training run's
        supervisor, a job's own process) is not a live, provably-vlhub process: its trainer (when it has
        one) judges the outcome, which may be ``lost``; without a trainer it becomes ``lost`` (a live
        process it cannot prove), else ``stopped``/``failed``. An outcome the run's own process recorded
        in the meantime is kept (the change applies only while ``run.json`` still says active). No
        process is signalled.
    """
    if run.status not in ACTIVE:
        return run
    check = check_process(run.data, "pid")
    if check.process is not None:
        return run
    trainer = run.data.get("trainer")
    if trainer and trainer in plugins.registry("trainers"):
        info = plugins.get("trainers", trainer).status(run.dir)
        return run.update_if(ACTIVE, status=info.get("status", "failed"),
                             **{k: v for k, v in info.items() if k != "status"})
    if check.state == UNPROVEN:
        return run.update_if(ACTIVE, status=LOST, lost_reason=check.reason, lost_pid=check.pid)
    return run.update_if(ACTIVE, status="stopped" if run.status == "stopping" else "failed")


def follow(run: Run, on_update: Callable[[Run], None] | None = None, poll_s: float = 0.5) -> Run:
    """Wait for a run another process is doing (one that :func:`vlhub.core.runs.claim` attached to).

    Args:
        run: the run to follow.
        on_update: called with the fresh run after each poll (to draw its ``progress``).
        poll_s: seconds between reads of ``run.json``.
    Returns:
        The run once it is no longer active: its own outcome, or the one :func:`refresh` records when
        its process ended without writing one. Bounded by that process's own limits (network
        timeouts), never by a lock.
    """
    while True:
        run = refresh(load_run(run.dir))
        if on_update is not None:
            on_update(run)
        if run.status not in ACTIVE:
            return run
        time.sleep(poll_s)
