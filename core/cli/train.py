"""``vlhub train`` and ``vlhub run stop``: thin wrappers over :mod:`vlhub.core.train`.

The training flags are the chosen trainer's own options (``--trainer NAME``, default ``xtuner``):
``vlhub train --trainer X --help`` lists X's settings, the Train page renders the same list as
form fields. They are read as text and checked by the trainer, so a bad value is one line naming
the flag and the fix (exit 2).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import click

from .. import train as trainapi
from ..errors import BadInput
from ..output import emit_json, say
from ..types import Option, TrainPlan, to_dict


def _click_option(opt: Option) -> click.Option:
    """A plugin option as a click flag: ``--NAME`` (``--NAME/--no-NAME`` for yes/no, repeatable for lists),
    read as text (the plugin converts and checks it)."""
    flag = "--" + opt.name.replace("_", "-")
    default = f" (default: {opt.default})" if opt.default not in (None, ()) else ""
    if opt.type is bool:
        return click.Option([f"{flag}/--no-{flag[2:]}", opt.name], default=None, help=opt.help + default)
    metavar = "[" + "|".join(opt.choices) + "]" if opt.choices else opt.type.__name__.upper()
    return click.Option([flag, opt.name], multiple=opt.type is list, metavar="TEXT" if opt.type is list else metavar,
                        help=opt.help + default)


#: ``--trainer``'s help, followed by each registered trainer's description (what it trains).
TRAINER_HELP = "Trainer plugin; the flags below are its settings (`vlhub train --trainer NAME --help`)."


def _trainer_in(args: Sequence[str]) -> str:
    """The ``--trainer`` value among the command's arguments (before they are parsed), else the default."""
    for n, arg in enumerate(args):
        if arg == "--trainer" and n + 1 < len(args):
            return args[n + 1]
        if arg.startswith("--trainer="):
            return arg.split("=", 1)[1]
    return trainapi.DEFAULT_TRAINER


class TrainerCommand(click.Command):
    """A command whose flags are its fixed ones plus the options of the trainer named by ``--trainer``."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        """Set this command's flags for the trainer ``args`` name, then parse as click does.

        Raises:
            BadInput: no such trainer, or it declares an option named like a fixed flag.
        """
        fixed = [p for p in self.params if not getattr(p, "from_trainer", False)]
        taken = {p.name for p in fixed}
        for param in fixed:  # which models each registered trainer trains (its description says)
            if param.name == "trainer" and isinstance(param, click.Option):
                param.help = TRAINER_HELP + " " + "; ".join(
                    f"{name}: {impl.description}" for name, impl in trainapi.trainers().items()) + "."
        trainer = _trainer_in(args)
        added = []
        for opt in trainapi.options(trainer):
            if opt.name in taken:
                raise BadInput(f"trainer {trainer!r} declares an option {opt.name!r}, which `vlhub train` already has",
                               "rename the option in the trainer plugin")
            param = _click_option(opt)
            param.from_trainer = True  # type: ignore[attr-defined]
            added.append(param)
        self.params = fixed + added
        return super().make_context(info_name, args, parent, **extra)


def _plan_json(plan: TrainPlan) -> dict[str, Any]:
    data = to_dict(plan)
    data["config"] = str(plan.config)
    return data


def _say_plan(plan: TrainPlan) -> None:
    ds = plan.dataset
    say(f"config:  {plan.config}")
    say(f"command: {' '.join(plan.command)}")
    if {"samples", "tokens", "over_max_length", "iterations"} <= set(ds):
        say(f"dataset: {ds['samples']} samples, tokens median {ds['tokens']['median']} / max {ds['tokens']['max']}, "
            f"{ds['over_max_length']} over --max-length, {ds['iterations']} iterations")
    if "step" in ds:
        say(f"step:    one CPU training step, loss {ds['step']['loss']:.4f} ({ds['step']['attention']} attention)")
    for note in plan.warnings:
        say(f"note:    {note}")
    board = ds.get("environment", {}).get("tracking", {}).get("tensorboard")
    if board:
        say(f"tensorboard: tensorboard --logdir {board}")


@click.command(cls=TrainerCommand)
@click.option("--model", type=click.Path(path_type=Path), help="InternVL model folder (which ones each trainer "
              "trains: see --trainer).")
@click.option("--data", type=click.Path(path_type=Path), help="Prepared data folder (or a LLaVA-style JSON file).")
@click.option("--resume", "resume_id", metavar="RUN_ID", help="Resume a run from its last complete checkpoint.")
@click.option("--trainer", default=trainapi.DEFAULT_TRAINER, show_default=True,
              help=TRAINER_HELP)
@click.option("--dry-run", is_flag=True, help="Write the config and check the data, but do not start.")
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
def train(model: Path | None, data: Path | None, resume_id: str | None, trainer: str, dry_run: bool,
          as_json: bool, **options: Any) -> None:
    """Fine-tune a model with a trainer plugin (default: xtuner + DeepSpeed), detached from this command."""
    given = {k: (list(v) if isinstance(v, tuple) else v) for k, v in options.items()
             if v is not None and v != ()}
    if resume_id:
        if model or data or given or dry_run:
            raise BadInput("--resume takes no --model, --data, training flags or --dry-run",
                           f"run `vlhub train --resume {resume_id}` alone (it reuses the run's settings)")
        run = trainapi.resume(resume_id)
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
    run, plan = trainapi.plan(model, data, given, trainer)
    if not dry_run:
        run = trainapi.launch(plan)
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
    run = trainapi.stop(run_id, timeout)
    if as_json:
        emit_json({"run_id": run.id, "status": run.status, "checkpoints": run.data.get("checkpoints", [])})
    else:
        say(f"run {run.id}: {run.status}; complete checkpoints: {run.data.get('checkpoints') or 'none'}")
