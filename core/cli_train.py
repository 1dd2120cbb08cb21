"""``vlhub train`` and ``vlhub run stop``: thin wrappers over :mod:`vlhub.plugins.trainers.training`.

The training flags are generated from the built-in trainer's option list (the Train page
renders the same list as form fields). They are read as text and checked by the trainer,
so a bad value is one line naming the flag and the fix (exit 2).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import click

from .errors import BadInput
from .output import emit_json, say
from .types import Option, TrainPlan, to_dict


def _training_options() -> tuple[Option, ...]:
    from vlhub.plugins.trainers.settings import OPTIONS

    return OPTIONS


def _click_option(opt: Option) -> Callable[[Any], Any]:
    flag = "--" + opt.name.replace("_", "-")
    default = f" (default: {opt.default})" if opt.default not in (None, ()) else ""
    if opt.type is bool:
        return click.option(f"{flag}/--no-{flag[2:]}", opt.name, default=None, help=opt.help + default)
    metavar = "[" + "|".join(opt.choices) + "]" if opt.choices else opt.type.__name__.upper()
    return click.option(flag, opt.name, multiple=opt.type is list, metavar="TEXT" if opt.type is list else metavar,
                        help=opt.help + default)


def _with_training_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed(_training_options()):
        func = _click_option(opt)(func)
    return func


def _plan_json(plan: TrainPlan) -> dict[str, Any]:
    data = to_dict(plan)
    data["config"] = str(plan.config)
    return data


def _say_plan(plan: TrainPlan) -> None:
    ds = plan.dataset
    say(f"config:  {plan.config}")
    say(f"command: {' '.join(plan.command)}")
    say(f"dataset: {ds['samples']} samples, tokens median {ds['tokens']['median']} / max {ds['tokens']['max']}, "
        f"{ds['over_max_length']} over --max-length, {ds['iterations']} iterations")
    if "step" in ds:
        say(f"step:    one CPU training step, loss {ds['step']['loss']:.4f} ({ds['step']['attention']} attention)")
    for note in plan.warnings:
        say(f"note:    {note}")


@click.command()
@click.option("--model", type=click.Path(path_type=Path), help="InternVL2 model folder.")
@click.option("--data", type=click.Path(path_type=Path), help="Prepared data folder (or a LLaVA-style JSON file).")
@click.option("--resume", "resume_id", metavar="RUN_ID", help="Resume a run from its last complete checkpoint.")
@click.option("--trainer", default="xtuner", show_default=True, help="Trainer plugin.")
@click.option("--dry-run", is_flag=True, help="Write the config and check the data, but do not start.")
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
@_with_training_options
def train(model: Path | None, data: Path | None, resume_id: str | None, trainer: str, dry_run: bool,
          as_json: bool, **options: Any) -> None:
    """Fine-tune an InternVL2 model with xtuner + DeepSpeed, detached from this command."""
    from vlhub.plugins.trainers import training

    given = {k: (list(v) if isinstance(v, tuple) else v) for k, v in options.items()
             if v is not None and v != ()}
    if resume_id:
        if model or data or given or dry_run:
            raise BadInput("--resume takes no --model, --data, training flags or --dry-run",
                           f"run `vlhub train --resume {resume_id}` alone (it reuses the run's settings)")
        run = training.resume_run(resume_id)
        if as_json:
            emit_json({"run_id": run.id, "status": run.status, "pid": run.data.get("pid"),
                       "resumed_from": run.data.get("resumed_from"), "run_dir": str(run.dir)})
        else:
            say(f"resumed run {run.id} from {run.data.get('resumed_from')} (pid {run.data.get('pid')}); "
                f"follow it with `vlhub run show {run.id}`")
        return
    if model is None or data is None:
        raise BadInput("--model and --data are required", "give --model MODEL_DIR --data PREPARED_DIR "
                       "(or --resume RUN_ID)")
    run, plan = training.plan_run(model, data, given, trainer)
    if not dry_run:
        run = training.launch_run(plan)
    if as_json:
        emit_json({**_plan_json(plan), "status": run.status, "pid": run.data.get("pid")})
        return
    _say_plan(plan)
    if dry_run:
        say(f"dry run: planned run {run.id}; nothing started")
    else:
        say(f"started run {run.id} (pid {run.data.get('pid')}); follow it with `vlhub run show {run.id}`, "
            f"stop it with `vlhub run stop {run.id}`")


@click.command()
@click.argument("run_id")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait before killing.")
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
def stop(run_id: str, timeout: float, as_json: bool) -> None:
    """Stop a running training run (all its processes); it can be resumed with `vlhub train --resume`.

    Only processes proven to be the run's (pid, start time and command line as recorded when vlhub
    started them) are signalled; a run whose process cannot be proven is `lost`: exit 2, nothing signalled.
    """
    from vlhub.plugins.trainers import training

    run = training.stop_run(run_id, timeout)
    if as_json:
        emit_json({"run_id": run.id, "status": run.status, "checkpoints": run.data.get("checkpoints", [])})
    else:
        say(f"run {run.id}: {run.status}; complete checkpoints: {run.data.get('checkpoints') or 'none'}")
