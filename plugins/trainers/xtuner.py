"""The ``xtuner`` trainer: InternVL2 fine-tuning with ``xtuner train`` and DeepSpeed.

``plan`` checks the inputs, writes ``config.py`` (+ the model class in ``code/``) into the run
folder and builds the dataset on the CPU in the train stage env (one worker call), which checks every
record (:mod:`.record_check`); ``check_records`` runs that check alone (``vlhub data validate --trainer``);
``launch`` starts the detached supervisor; ``status``/``stop``/``resume``/``checkpoints``
work from the run folder alone. ``status`` and ``stop`` treat a recorded process as the run's only when
:func:`vlhub.core.runs.check_process` proves it (pid, start time and command line as recorded);
otherwise the run is ``lost`` and nothing is signalled.
"""
from __future__ import annotations

import math
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

from vlhub.core import stage
from vlhub.core.errors import BadInput, MissingDependency
from vlhub.core.fsutil import atomic_write_text
from vlhub.core.runs import Run, load_run
from vlhub.core.types import Checkpoint, TrainPlan
from vlhub.core.worker import run_worker

from ..workers import TRAIN_ENV, script
from vlhub.core import tracking

from . import (distributed, inputs, launch_spec, notices, record_check, run_control, run_files, validation,
               xtuner_config)
from .checkpoints import last_complete, list_checkpoints
from .settings import OPTIONS, Settings, batch_fits, from_public, parse
from .xtuner_log import tail


def _outcome(run: Run, stopping: bool) -> dict[str, Any]:
    return run_files.outcome(run.dir, stopping)


def iterations(s: Settings, samples: int) -> int:
    """Dataloader iterations of the run (what ``Iter(train) [i/N]`` counts)."""
    return s.max_iters or s.epochs * math.ceil(samples / (s.batch_size * s.world_size))


class XtunerTrainer:
    """InternVL2 LoRA / QLoRA / full fine-tuning with xtuner 0.2.0 + DeepSpeed, detached."""

    name = "xtuner"
    description = ("xtuner train + DeepSpeed, LoRA, QLoRA or full: InternVL2 with an InternLM2 or Phi-3 LLM "
                   "(InternVL2-2B, -4B, -8B, -26B, Mini-InternVL-Chat-2B/4B-V1-5)")
    options = OPTIONS
    stage_env = TRAIN_ENV
    #: the trackers' keys (read from the environment or their login stores, never stored by vlhub)
    secrets = (tracking.WANDB, tracking.SWANLAB)

    @staticmethod
    def accepts_model(model: Path) -> bool:
        """Whether this trainer trains the model folder ``model`` (its LLM, :func:`.inputs.trains`; never raises)."""
        return inputs.trains(model)

    # ------------------------------------------------------------ planning
    def plan(self, model: Path, data: Path, options: Mapping[str, Any], run_dir: Path) -> TrainPlan:
        """Check the inputs and settings, write the config into ``run_dir`` and build the dataset in the train
        environment (on the CPU), which checks every record (:meth:`check_records`; the plan's
        ``dataset["check"]``).

        Raises:
            BadInput: a setting, the model or the data is refused (the flag and the fix are named); a record
                xtuner cannot train (it would crash or train wrongly, or ``--max-length`` would cut its image
                tokens or every answer token: the first records' indexes and reasons are named); with
                ``--strict``, a sample longer than ``--max-length``.
            MissingDependency: the train environment (or bitsandbytes for qlora) is missing.
        """
        s = parse(options)
        info = inputs.check_model(model)
        template = inputs.check_template(info, s.template)
        data_info = inputs.check_data(data, s.image_root)
        batch_fits(s, data_info.records - len(data_info.missing_images), info)
        val_data = validation.find(data)
        val_plan = validation.plan(s, val_data, iterations(s, data_info.records - len(data_info.missing_images)), data)
        run_dir = Path(run_dir).resolve()
        code = run_dir / run_files.CODE
        code.mkdir(parents=True, exist_ok=True)
        shutil.copy2(script(xtuner_config.MODEL_MODULE), code)
        config = run_dir / run_files.CONFIG
        atomic_write_text(config, xtuner_config.render(s, info, data_info, template, run_dir, val_plan, val_data))
        env = launch_spec.environment(s, code, run_dir)
        report = run_worker(TRAIN_ENV.name, script("train_inspect"),
                            [str(config), "--dataset", *(["--step"] if s.check_step else [])],
                            extra_env={"PYTHONPATH": str(code)})
        dataset, machine = report["dataset"], report["environment"]
        if "step" in report:
            dataset["step"] = report["step"]
        if s.method == "qlora" and not machine["bitsandbytes"]:
            raise MissingDependency("--method qlora needs bitsandbytes in the train environment",
                                    "install it there (`PYTHON -m pip install bitsandbytes`; it needs a CUDA "
                                    "build: none exists for CUDA 13), or use --method lora")
        record_check.raise_refused(dataset["check"], data_info.file, data_info.image_root, info.path)
        if s.strict:
            record_check.raise_over_length(dataset["check"], data_info.file)
        if dataset["samples"] == 0:
            raise BadInput(f"--data {data}: xtuner finds no usable sample", "check the image root and the records")
        batch_fits(s, dataset["samples"], info)
        if dataset["over_max_length"] == dataset["samples"]:
            raise BadInput(f"--max-length {s.max_length}: every sample is longer (median "
                           f"{dataset['tokens']['median']} tokens)", f"use --max-length {dataset['tokens']['max']}")
        dataset["iterations"] = iterations(s, dataset["samples"])
        # the exact iteration count and the trackers the train env has: the config as it will run
        val_plan = validation.plan(s, val_data, dataset["iterations"], data)
        trackers = tracking.choose(s.report_to, machine.get("trackers", {}), TRAIN_ENV.name,
                                   str(stage.require(TRAIN_ENV.name)))
        atomic_write_text(config, xtuner_config.render(s, info, data_info, template, run_dir, val_plan, val_data,
                                                       trackers))
        dataset["validation"] = {**val_plan.public(), "val": str(val_data.val) if val_data.val else None,
                                 "val_mc": str(val_data.mc) if val_data.mc else None,
                                 "built": dataset.pop("validation", None)}
        machine["tracking"] = {"trackers": trackers, "tensorboard": str(tracking.tensorboard_dir(run_dir))
                               if tracking.TENSORBOARD in trackers else None}
        plan = TrainPlan(run_dir.name, run_dir, config,
                         launch_spec.command(s, stage.require(TRAIN_ENV.name), config, run_dir / run_files.WORK,
                                             run_dir),
                         env, {**dataset, "environment": machine}, {**s.public(), "template": template},
                         self._warnings(s, dataset, machine))
        return plan

    def check_records(self, model: Path, data: Path, options: Mapping[str, Any]) -> dict[str, Any]:
        """Check every record of ``data`` the way this trainer's dataset reads it, in the train environment.

        The dataset class of every run (``VlhubInternVLDataset``: xtuner 0.2.0's ``InternVL_V1_5_Dataset``
        plus several images per record and a per-record system prompt) is built on ``data`` with the
        model's tokenizer and ``options["max_length"]``; nothing is trained.

        Args:
            model: the base model folder (its tokenizer, template and image geometry are used).
            data: a prepared folder or a training JSON/JSONL file (as for :meth:`plan`).
            options: this trainer's options; ``max_length``, ``template`` and ``image_root`` are read.
        Returns:
            ``records``, ``kept``, ``max_length``, ``problem_count``, ``problems`` (the first 200 records left
            out: ``index``, ``field``, ``reason``, ``kind`` = ``record`` | ``length`` | ``image``), ``left_out``
            (count per kind), ``over_max_length`` (samples that will be cut), ``over_max_length_worst``
            (``index``, ``tokens``, ``over``), ``over_max_length_records`` (``index``, ``tokens``: the first 200),
            ``tokens`` (statistics),
            ``with_image``, ``multi_image``, ``max_images``, ``system_prompts``, plus ``file`` and ``image_root``.
        Raises:
            BadInput: the model, the data file or an option is refused (as by :meth:`plan`).
            MissingDependency: the train environment is missing.
        """
        s = parse(options)
        info = inputs.check_model(model)
        template = inputs.check_template(info, s.template)
        data_info = inputs.check_data(data, s.image_root)
        report = run_worker(TRAIN_ENV.name, script("train_inspect"),
                            ["--check", "--model", str(info.path), "--data", str(data_info.file), "--image-root",
                             str(data_info.image_root), "--template", template, "--max-length", str(s.max_length)])
        return {"file": str(data_info.file), "image_root": str(data_info.image_root), **report["check"]}

    @staticmethod
    def _warnings(s: Settings, dataset: dict[str, Any], machine: dict[str, Any]) -> list[str]:
        notes = record_check.notes(dataset["check"])
        notes.append(dataset["validation"]["note"])
        notes.append(notices.tracking(machine["tracking"]["trackers"]))
        if s.save_steps > dataset["iterations"]:
            notes.append(notices.save_steps_over(s.save_steps, dataset["iterations"]))
        if s.method == "qlora" and not machine["cuda_devices"]:
            notes.append(notices.qlora_no_gpu())
        if not machine["flash_attn"]:
            notes.append(notices.no_flash_attn())
        return notes

    # ------------------------------------------------------------ running
    def launch(self, plan: TrainPlan) -> int:
        """Start the run's supervisor detached and record it (pid, start time, command line).

        Several GPUs: the launch's rendezvous port is chosen now and recorded in ``run.json``
        (``master_port``, :func:`.distributed.assign_port`), for a resumed run too.

        Returns:
            The supervisor's pid.
        Raises:
            BadInput: the train environment sees fewer GPUs than ``--gpus``, or not a GPU ``--devices`` names
                (without ``--launch-command``).
        """
        run = load_run(plan.run_dir)
        s = from_public(plan.settings)
        gpus = plan.dataset.get("environment", {}).get("cuda_devices", 0)
        if not s.launch_command and gpus < s.gpus:
            raise BadInput(notices.NO_GPUS, flag="--gpus", gpus=s.gpus, visible=gpus)
        if not s.launch_command:
            distributed.check_devices(s.topology, gpus)
        if s.topology.distributed and not s.launch_command:
            plan = replace(plan, command=distributed.assign_port(run, s.topology, plan.command))
        env = stage.clean_env(plan.env, stage.require(TRAIN_ENV.name))
        return run_control.start_supervisor(run, plan, env, "vlhub.plugins.trainers.supervisor")

    def status(self, run_dir: Path) -> dict[str, Any]:
        """The run's state from its folder; without a live supervisor, the log is read here instead
        (:func:`.run_control.status`).

        Returns:
            ``status`` (and ``progress``) while the supervisor or the training process is provably
            vlhub's (:func:`vlhub.core.runs.check_process`); for an active run whose recorded process is
            alive but not provably vlhub's, ``status: lost`` with ``lost_reason``; else the outcome judged
            from the log (``finished``/``stopped``/``failed``). Nothing is signalled.
        """
        return run_control.status(run_dir, run_files.rebuild_records, _outcome)

    def stop(self, run_dir: Path, timeout: float = 30.0) -> dict[str, Any]:
        """SIGTERM the run's training process tree (then SIGKILL after ``timeout`` s) and record ``stopped``
        (:func:`.run_control.stop`).

        Only processes proven to be this run's (:func:`vlhub.core.runs.check_process`: pid, start time
        and command line as recorded when vlhub started them) are signalled, never a protected one
        (:func:`vlhub.core.runs.is_protected`).

        Returns:
            The run's ``run.json`` after the stop.
        Raises:
            BadInput: the run is not active; or it is (or turns out) ``lost``: a live process holds a
                recorded pid but cannot be proven to be vlhub's (the run is recorded ``lost``); or a proven
                process is this command's own, an ancestor or in its process group. Nothing is signalled then.
        """
        return run_control.stop(run_dir, timeout, _outcome)

    def resume(self, run_dir: Path) -> TrainPlan:
        """The recorded plan with ``--resume`` pointing at the last complete checkpoint.

        Raises:
            BadInput: the run is active, lost with a live process, never planned, or has no complete checkpoint.
        """
        run = run_control.resumable(run_dir)
        return run_control.resumed_plan(run, last_complete(run.dir / run_files.WORK), "--resume", "iteration")

    def checkpoints(self, run_dir: Path) -> list[Checkpoint]:
        """The run's ``work/iter_N.pth`` checkpoints, oldest first."""
        return list_checkpoints(Path(run_dir) / run_files.WORK)

    def report(self, run_dir: Path, log_lines: int = 40) -> dict[str, Any]:
        """What the run's files say beyond ``run.json`` (:func:`vlhub.core.train.view` shows it).

        Returns:
            ``metrics`` (one record per logged iteration), ``samples`` (the evaluation hook's outputs),
            ``ranks`` (torchrun's per-rank log files) and ``log_tail`` (the last ``log_lines`` of ``train.log``).
        """
        run_dir = Path(run_dir)
        return {"metrics": run_files.read_metrics(run_dir), "samples": run_files.read_samples(run_dir),
                "ranks": run_files.rank_logs(run_dir), "log_tail": tail(run_dir / run_files.LOG, log_lines)}
