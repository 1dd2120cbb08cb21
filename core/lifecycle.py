"""Keeping ``run.json`` honest about processes that ended while nobody watched."""
from __future__ import annotations

from . import plugins
from .runs import Run, process_alive

ACTIVE = ("running", "starting", "stopping")


def refresh(run: Run) -> Run:
    """If the run's process is gone, record how it ended (asking its trainer when it has one)."""
    if run.status not in ACTIVE or process_alive(run.data.get("pid"), run.data.get("pid_started")):
        return run
    trainer = run.data.get("trainer")
    if trainer and trainer in plugins.registry("trainers"):
        info = plugins.get("trainers", trainer).status(run.dir)
        return run.update(status=info.get("status", "failed"), **{k: v for k, v in info.items() if k != "status"})
    return run.update(status="stopped" if run.status == "stopping" else "failed")
