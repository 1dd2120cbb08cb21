"""Keeping ``run.json`` honest about processes that ended while nobody watched.

A run is active (:data:`ACTIVE`) while the process vlhub recorded for it is provably the one it
started (:func:`vlhub.core.runs.check_process`). When that process is gone the outcome is recorded;
when a live process holds the recorded pid but cannot be proven to be vlhub's, the run becomes
``lost``: vlhub no longer treats it as running and never signals that process.
"""
from __future__ import annotations

from . import plugins
from .runs import UNPROVEN, Run, check_process

ACTIVE = ("running", "starting", "stopping")
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
        run: any run.
    Returns:
        The run, updated in ``run.json`` when it was active and its supervisor (``pid``) is not a live,
        provably-vlhub process: its trainer (when it has one) judges the outcome, which may be ``lost``;
        without a trainer it becomes ``lost`` (a live process it cannot prove), else ``stopped``/``failed``.
        No process is signalled.
    """
    if run.status not in ACTIVE:
        return run
    check = check_process(run.data, "pid")
    if check.process is not None:
        return run
    trainer = run.data.get("trainer")
    if trainer and trainer in plugins.registry("trainers"):
        info = plugins.get("trainers", trainer).status(run.dir)
        return run.update(status=info.get("status", "failed"), **{k: v for k, v in info.items() if k != "status"})
    if check.state == UNPROVEN:
        return run.update(status=LOST, lost_reason=check.reason, lost_pid=check.pid)
    return run.update(status="stopped" if run.status == "stopping" else "failed")
