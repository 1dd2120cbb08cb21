"""Training runs: the functions ``vlhub train`` / ``vlhub run stop`` and the Train page call.

Every action goes through a registered trainer (:class:`vlhub.core.types.Trainer`, found with
:func:`vlhub.core.plugins.get`), built-in or third-party alike; the run's ``trainer`` field names it.

- :func:`plan` creates the run folder and plans (what ``--dry-run`` shows);
- :func:`launch` starts a planned run detached;
- :func:`stop` and :func:`resume` act on a run id (``stop`` signals only processes proven to be the
  run's, see :func:`vlhub.core.runs.check_process`);
- :func:`view` gathers what a page shows. Besides the protocol's methods, a trainer may define
  ``report(run_dir, log_lines) -> dict`` (``metrics``, ``samples``, ``ranks``, ``log_tail``: what its
  run files say); without it those are empty. Validation records, the best checkpoint and the
  TensorBoard folder are read from the run folder's trainer-neutral files
  (:mod:`vlhub.core.train_metrics`, :mod:`vlhub.core.tracking`) whatever the trainer;
- :func:`check_records` runs the trainer's optional record check (``check_records(model, data, options)``,
  see :class:`vlhub.core.types.Trainer`): ``vlhub data validate/prepare --trainer NAME``.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

from . import plugins, tracking, train_metrics
from .errors import BadInput
from .lifecycle import refresh
from .runs import Run, load_run, new_run
from .types import Checkpoint, Option, Trainer, TrainPlan, to_dict

KIND = "train"
DEFAULT_TRAINER = "xtuner"


def trainers() -> dict[str, Trainer]:
    """The registered trainers by name."""
    return plugins.registry("trainers")


def options(trainer: str = DEFAULT_TRAINER) -> Sequence[Option]:
    """The settings trainer ``trainer`` declares (the CLI's flags, the Train page's fields).

    Raises:
        BadInput: no such trainer (the message lists the registered ones).
    """
    return tuple(plugins.get("trainers", trainer).options)


def _train_run(run_id: str | Path) -> tuple[Run, Trainer]:
    run = refresh(load_run(run_id))
    if run.kind != KIND:
        raise BadInput(f"run {run.id} is a {run.kind or 'kind-less'} run, not a training run",
                       "give the id of a train run (`vlhub runs --kind train`)")
    return run, plugins.get("trainers", run.data.get("trainer", DEFAULT_TRAINER))


def plan(model: Path, data: Path, settings: Mapping[str, Any], trainer: str = DEFAULT_TRAINER) -> tuple[Run, TrainPlan]:
    """Plan a training run: a new run folder (status ``planned``) holding the trainer's plan.

    Args:
        model: the base model folder.
        data: the prepared data folder (or a training JSON file).
        settings: the trainer's options by name (text or typed values; the trainer checks them).
        trainer: the registered trainer's name.
    Returns:
        The run and the plan (config, command, dataset report, warnings).
    Raises:
        BadInput, MissingDependency, VlhubError: the trainer refused the inputs or settings; the run
            folder is removed again then.
    """
    impl = plugins.get("trainers", trainer)
    run = new_run(KIND, trainer=trainer, model=str(Path(model).expanduser().resolve()),
                  data=str(Path(data).expanduser().resolve()), options=dict(settings))
    try:
        planned = impl.plan(Path(model), Path(data), settings, run.dir)
    except BaseException:
        shutil.rmtree(run.dir, ignore_errors=True)
        raise
    run.update(status="planned", plan=to_dict(planned), config=str(planned.config))
    return run, planned


def check_records(model: Path | None, data: Path, settings: Mapping[str, Any] | None = None,
                  trainer: str = DEFAULT_TRAINER) -> dict[str, Any]:
    """Check every record of ``data`` the way trainer ``trainer`` would read it (its optional
    ``check_records``); nothing is planned or written.

    Args:
        model: the base model folder (the check tokenises with its tokenizer).
        data: a prepared folder or a training JSON/JSONL file.
        settings: the trainer's options by name (e.g. ``max_length``, ``image_root``).
        trainer: the registered trainer's name.
    Returns:
        The trainer's report: ``records``, ``kept``, ``problems`` (``{"index", "field", "reason", "kind"}``),
        ``problem_count``, ``over_max_length``, ``over_max_length_worst`` and the trainer's own keys, plus
        ``trainer`` (its name).
    Raises:
        BadInput: no such trainer, or it has no record check; the trainer refused the model, data or settings.
        MissingDependency: the trainer's stage environment is missing.
    """
    impl = plugins.get("trainers", trainer)
    check = getattr(impl, "check_records", None)
    if not callable(check):
        raise BadInput(f"trainer {trainer!r} has no record check (no check_records method)",
                       "drop --trainer, or use a trainer that checks records (e.g. --trainer xtuner)")
    if model is None:
        raise BadInput(f"--trainer {trainer} needs --model: the check tokenises with the model's tokenizer",
                       "add --model MODEL_DIR (the base model you will train)")
    return {"trainer": trainer, **check(Path(model).expanduser(), Path(data).expanduser(), dict(settings or {}))}


def launch(planned: TrainPlan) -> Run:
    """Start a planned (or resumed) run detached from this process.

    Returns:
        The run as recorded once its process started.
    Raises:
        BadInput, MissingDependency: the trainer cannot start it here (e.g. no GPU, no train environment).
            A run that was only planned is then removed again, so a refused start leaves no ghost
            ``planned`` run (the CLI and the pages alike); a resumed run keeps its folder.
    """
    run, trainer = _train_run(planned.run_dir)
    try:
        trainer.launch(planned)
    except BaseException:
        fresh = load_run(run.dir)
        if fresh.status == "planned" and not fresh.data.get("resumes") and fresh.data.get("pid") is None:
            shutil.rmtree(run.dir, ignore_errors=True)
        raise
    return load_run(run.dir)


def stop(run_id: str, timeout: float = 30.0) -> Run:
    """Stop a running training run (its whole process tree) and record ``stopped``.

    Args:
        run_id: the run's id (or folder).
        timeout: seconds between SIGTERM and SIGKILL.
    Returns:
        The run after the stop.
    Raises:
        BadInput: no such run; not a training run; not running; or its recorded process cannot be proven
            to be the one vlhub started (pid, start time and command line, :func:`vlhub.core.runs.check_process`):
            the run is then ``lost`` and nothing is signalled.
    """
    run, trainer = _train_run(run_id)
    trainer.stop(run.dir, timeout)
    return load_run(run.dir)


def resume(run_id: str) -> Run:
    """Start a stopped or failed run again from its last complete checkpoint.

    Returns:
        The run as recorded once its process started (``resumed_from`` names the checkpoint).
    Raises:
        BadInput: no such run; not a training run; still active; ``lost`` with a live process; or no
            complete checkpoint.
    """
    run, trainer = _train_run(run_id)
    planned = trainer.resume(run.dir)
    run.update(resumed_from=planned.command[-1], resumes=run.data.get("resumes", 0) + 1)
    return launch(planned)


def checkpoints(run_id: str | Path) -> list[Checkpoint]:
    """The checkpoints of a training run, oldest first (``complete`` ones can be converted or resumed).

    Raises:
        BadInput: no such run, or not a training run.
    """
    run, trainer = _train_run(run_id)
    return trainer.checkpoints(run.dir)


def view(run_id: str, log_lines: int = 40) -> dict[str, Any]:
    """Everything a page shows about one training run, read from its folder (a reload shows the same).

    Returns:
        ``run`` (``run.json``, refreshed), ``checkpoints`` (JSON-ready, each with ``best``: whether it is the
        marked best one), ``metrics``, ``samples``, ``ranks``, ``log_tail`` from the trainer's ``report``
        (empty when it has none), and from the run folder's trainer-neutral files
        (:mod:`vlhub.core.train_metrics`, :mod:`vlhub.core.tracking`): ``validation`` (validation records),
        ``best`` (the best-checkpoint marker, or None) and ``tensorboard`` (the TensorBoard log folder when
        it exists, else None).
    Raises:
        BadInput: no such run, or not a training run.
    """
    run, trainer = _train_run(run_id)
    report = trainer.report(run.dir, log_lines) if callable(getattr(trainer, "report", None)) else {}
    best = train_metrics.read_best(run.dir)
    board = tracking.tensorboard_dir(run.dir)
    checkpoints = [{**to_dict(c), "best": best is not None and str(Path(c.path).resolve()) == best["path"]}
                   for c in trainer.checkpoints(run.dir)]
    return {"run": run.data, "checkpoints": checkpoints,
            "metrics": report.get("metrics", []), "samples": report.get("samples", []),
            "ranks": report.get("ranks", []), "log_tail": report.get("log_tail", []),
            "validation": train_metrics.read_metrics(run.dir)[1], "best": best,
            "tensorboard": str(board) if board.is_dir() else None}
