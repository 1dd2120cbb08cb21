"""Training runs for the CLI and the Train page: one function per action, on any registered trainer.

``plan_run`` creates the run folder and plans (what ``--dry-run`` shows); ``launch_run`` starts
it detached; ``stop_run``, ``resume_run`` act on a run id (``stop_run`` signals only processes
proven to be the run's, see :func:`vlhub.core.runs.check_process`); ``run_view`` gathers what a page
shows (state, metrics, samples, checkpoints, per-rank logs, log tail).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Mapping

from vlhub.core import plugins
from vlhub.core.errors import BadInput
from vlhub.core.lifecycle import refresh
from vlhub.core.runs import Run, load_run, new_run
from vlhub.core.types import TrainPlan, to_dict

from .run_files import LOG, rank_logs, read_metrics, read_samples
from .xtuner_log import tail


def _trainer(run: Run) -> Any:
    return plugins.get("trainers", run.data.get("trainer", "xtuner"))


def plan_run(model: Path, data: Path, options: Mapping[str, Any], trainer: str = "xtuner") -> tuple[Run, TrainPlan]:
    """A new run folder (status ``planned``) with the trainer's plan; removed again if planning fails."""
    impl = plugins.get("trainers", trainer)
    run = new_run("train", trainer=trainer, model=str(Path(model).expanduser().resolve()),
                  data=str(Path(data).expanduser().resolve()), options=dict(options))
    try:
        plan = impl.plan(Path(model), Path(data), options, run.dir)
    except BaseException:
        shutil.rmtree(run.dir, ignore_errors=True)
        raise
    run.update(status="planned", plan=to_dict(plan), config=str(plan.config))
    return run, plan


def launch_run(plan: TrainPlan) -> Run:
    """Start a planned (or resumed) run detached; returns the updated run."""
    run = load_run(plan.run_dir)
    _trainer(run).launch(plan)
    return load_run(plan.run_dir)


def stop_run(run_id: str, timeout: float = 30.0) -> Run:
    """Stop a running run (its whole process tree) and record ``stopped``.

    Args:
        run_id: the run's id (or folder).
        timeout: seconds between SIGTERM and SIGKILL.
    Returns:
        The run after the stop.
    Raises:
        BadInput: no such run; the run is not running; or its recorded process cannot be proven to be
            the one vlhub started (pid, start time and command line, :func:`vlhub.core.runs.check_process`):
            the run is then ``lost`` and nothing is signalled.
    """
    run = refresh(load_run(run_id))
    _trainer(run).stop(run.dir, timeout)
    return load_run(run.dir)


def resume_run(run_id: str) -> Run:
    """Start a stopped or failed run again from its last complete checkpoint."""
    run = refresh(load_run(run_id))
    if run.kind != "train":
        raise BadInput(f"run {run.id} is a {run.kind} run, not a training run", "give the id of a train run")
    plan = _trainer(run).resume(run.dir)
    run.update(resumed_from=plan.command[-1], resumes=run.data.get("resumes", 0) + 1)
    return launch_run(plan)


def run_view(run_id: str, log_lines: int = 40) -> dict[str, Any]:
    """Everything a page shows about one training run, read from its folder."""
    run = refresh(load_run(run_id))
    trainer = _trainer(run)
    return {"run": run.data, "metrics": read_metrics(run.dir), "samples": read_samples(run.dir),
            "checkpoints": [to_dict(c) for c in trainer.checkpoints(run.dir)], "ranks": rank_logs(run.dir),
            "log_tail": tail(run.dir / LOG, log_lines)}
