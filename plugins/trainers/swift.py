"""The ``swift`` trainer: InternVL2 / 2.5 / 3 / 3.5 fine-tuning with ms-swift (``swift sft``) and DeepSpeed.

``plan`` checks the model (:mod:`.swift_models`) and the settings, converts the prepared records into
ms-swift's ``messages`` + ``images`` JSON lines in the run folder (:mod:`.swift_data`), and encodes every
record with ms-swift's own chat template in the ``swift`` stage env (one worker call, CPU, no weights),
which is what ``vlhub train --dry-run --trainer swift`` shows. ``launch`` starts the detached supervisor
(:mod:`.swift_supervisor`), which runs ``ENV_PYTHON -m swift.cli.sft ...`` (several GPUs: the same module
under ``ENV_PYTHON -m torch.distributed.run``, :mod:`.distributed`) and turns ms-swift's ``logging.jsonl``
into ``metrics.jsonl``. ``status``/``stop``/``resume``/``checkpoints`` work from the run folder alone, with the
xtuner trainer's rules (:mod:`.run_control`: a process is signalled only when
:func:`vlhub.core.runs.check_process` proves it).

The training prompt is ms-swift's template for the model (``internvl2_5``, ``internvl3_5``, ...) with the
default system prompt of vlhub's chat template for the model (``--system``), so the converted folder's chat
template renders what was trained.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

from vlhub.core import stage
from vlhub.core.convert import template_for_folder
from vlhub.core.errors import BadInput
from vlhub.core.fsutil import atomic_write_text
from vlhub.core.runs import Run, load_run
from vlhub.core.types import Checkpoint, TrainPlan
from vlhub.core.worker import run_worker

from ..workers import SWIFT_ENV, script
from . import distributed, inputs, run_control, run_files, swift_data, swift_models, swift_run
from .settings import batch_fits
from .swift_settings import OPTIONS, Settings, from_public, parse, swift_args

#: ms-swift's training entry (``swift/cli/sft.py``), run as a module by the env's own interpreter.
SFT_MODULE = "swift.cli.sft"


def _argv(args: Mapping[str, Any]) -> list[str]:
    """``{"name": value}`` as ``--name value`` pairs (booleans as ``true``/``false``, ``None`` left out)."""
    out: list[str] = []
    for name, value in args.items():
        if value is None:
            continue
        out += [f"--{name}", ("true" if value else "false") if isinstance(value, bool) else str(value)]
    return out


def _check_folder(model: swift_models.SwiftModel) -> None:
    """The tokenizer and weights are there (the rest ms-swift checks when it loads)."""
    folder = model.path
    missing = [] if (folder / "tokenizer_config.json").is_file() else ["tokenizer_config.json"]
    if not any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer.model")):
        missing.append("tokenizer.json or tokenizer.model")
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        missing.append("weights (*.safetensors or *.bin)")
    if missing:
        raise BadInput(f"--model {folder}: missing {', '.join(missing)}",
                       "copy the complete model folder (a download may have stopped half-way)")


def _outcome(run: Run, stopping: bool) -> dict[str, Any]:
    return swift_run.outcome(run.dir, stopping, run.data.get("exit_code"))


def steps(s: Settings, samples: int) -> int:
    """Optimizer steps of the run (what ms-swift's ``global_step/max_steps`` counts)."""
    if s.max_iters:
        return s.max_iters
    per_epoch = -(-samples // (s.batch_size * s.world_size))
    return s.epochs * max(1, per_epoch // s.grad_accum)


class SwiftTrainer:
    """InternVL2/2.5/3/3.5 LoRA or full fine-tuning with ms-swift 4.x + DeepSpeed, detached."""

    name = "swift"
    description = f"ms-swift (swift sft) + DeepSpeed, LoRA or full: {swift_models.TRAINS}"
    options = OPTIONS
    stage_env = SWIFT_ENV

    @staticmethod
    def accepts_model(model: Path) -> bool:
        """Whether this trainer trains the model folder ``model`` (read from its ``config.json``; never raises)."""
        return swift_models.accepts(model)

    # ------------------------------------------------------------ planning
    def plan(self, model: Path, data: Path, options: Mapping[str, Any], run_dir: Path) -> TrainPlan:
        """Check the inputs and settings, write ``swift_args.json`` and ``data/train.jsonl`` into ``run_dir`` and
        encode every record with ms-swift's template in the swift environment (on the CPU).

        Returns:
            The plan: ``config`` is ``swift_args.json``, ``command`` the ``swift sft`` argv, ``dataset`` the
            check's report (``samples``, ``tokens``, ``over_max_length``, ``iterations``, ``environment``, ...).
        Raises:
            BadInput: a setting, the model or the data is refused (flag and fix named); records ms-swift cannot
                train are named by index; with ``--strict``, a sample longer than ``--max-length``.
            MissingDependency: the swift stage environment is missing.
        """
        s = parse(options)
        info = swift_models.identify(model)
        _check_folder(info)
        data_info = inputs.check_data(data, s.image_root)
        records = json.loads(data_info.file.read_text(encoding="utf-8")) if data_info.file.suffix == ".json" else \
            [json.loads(line) for line in data_info.file.read_text(encoding="utf-8").splitlines() if line.strip()]
        run_dir = Path(run_dir).resolve()
        converted = swift_data.convert_records(records, data_info.image_root, run_dir / swift_run.DATA / "train.jsonl")
        refused = [p for p in converted.problems if p["kind"] == "record"]
        if refused:
            shown = "; ".join(f"record {p['index']}: {p['reason']}" for p in refused[:3])
            raise BadInput(f"--data {data_info.file}: {len(refused)} record(s) ms-swift cannot train ({shown})",
                           "fix or drop them and prepare the data again (`vlhub data prepare ... --force`)")
        batch_fits(s, converted.kept, info)
        system = template_for_folder(info.path).system
        args = {"model": str(info.path), "model_type": info.model_type, "template": info.template,
                "system": system, "dataset": str(converted.path), "output_dir": str(run_dir / swift_run.WORK),
                "add_version": False, "split_dataset_ratio": 0, "dataset_num_proc": 1, "report_to": "none",
                **swift_args(s)}
        report = run_worker(SWIFT_ENV.name, script("train_swift_inspect"),
                            ["--model", str(info.path), "--data", str(converted.path), "--model-type",
                             info.model_type, "--template", info.template, "--max-length", str(s.max_length),
                             "--system", system], extra_env=self._env(info))
        dataset, machine = report["dataset"], report["environment"]
        args["torch_dtype"] = "bfloat16" if machine["cuda_devices"] else "float32"
        if dataset["problem_count"]:
            first = dataset["problems"][0]
            raise BadInput(f"--data {data_info.file}: ms-swift cannot encode {dataset['problem_count']} record(s) "
                           f"(record {first['index']}: {first['reason']})",
                           "fix or drop them and prepare the data again (`vlhub data prepare ... --force`)")
        if s.strict and dataset["over_max_length"]:
            worst = dataset["over_max_length_worst"]
            raise BadInput(f"--max-length {s.max_length}: {dataset['over_max_length']} sample(s) are longer "
                           f"(record {worst['index']}: {worst['tokens']} tokens)",
                           f"use --max-length {worst['tokens']}, or drop --strict to cut them")
        dataset.update(missing_images=len(converted.problems), with_image=converted.with_image,
                       multi_image=converted.multi_image, system_prompts=converted.system_prompts,
                       iterations=steps(s, dataset["samples"]), file=str(converted.path), environment=machine)
        config = run_dir / swift_run.ARGS
        atomic_write_text(config, json.dumps(args, ensure_ascii=False, indent=2) + "\n")
        python = stage.require(SWIFT_ENV.name)
        command = self._command(s, python, args, run_dir)
        settings = {**s.public(), "template": info.template, "model_type": info.model_type}
        return TrainPlan(run_dir.name, run_dir, config, command, {**self._env(info), **distributed.environment(
            s.topology)}, dataset, settings, self._warnings(s, dataset, converted))

    @staticmethod
    def _env(info: swift_models.SwiftModel) -> dict[str, str]:
        """The variables ms-swift's InternVL template reads (``get_env_args``: ``INPUT_SIZE``, ``MAX_NUM``), no
        hub access during training, NVLink multicast off."""
        return {"INPUT_SIZE": str(info.image_size), "MAX_NUM": str(info.max_tiles), "HF_HUB_OFFLINE": "1",
                "MODELSCOPE_OFFLINE": "1", **{k: stage.PROCESS_ENV[k] for k in (
                    "NCCL_NVLS_ENABLE", "TORCH_SYMM_MEM_DISABLE_MULTICAST", "NVSHMEM_DISABLE_NVLS")}}

    @staticmethod
    def _command(s: Settings, python: Path, args: Mapping[str, Any], run_dir: Path) -> list[str]:
        """``ENV_PYTHON -m swift.cli.sft ARGS``; several GPUs: under ``-m torch.distributed.run`` (its
        ``--master_port=`` chosen again at each start)."""
        argv = ["-m", SFT_MODULE, *_argv(args)]
        topology = s.topology
        if not topology.distributed:
            return [str(python), *argv]
        port = topology.master_port or (distributed.DEFAULT_PORT if topology.nnodes > 1 else distributed.free_port())
        return [*distributed.launcher_argv(python, topology, port, run_dir / swift_run.RANKS), *argv]

    @staticmethod
    def _warnings(s: Settings, dataset: dict[str, Any], converted: swift_data.Converted) -> list[str]:
        notes = []
        if converted.problems:
            notes.append(f"{len(converted.problems)} record(s) left out: {converted.problems[0]['reason']}")
        if dataset["over_max_length"]:
            worst = dataset["over_max_length_worst"]
            notes.append(f"{dataset['over_max_length']} sample(s) are longer than --max-length {s.max_length} and "
                         f"will be cut (longest: record {worst['index']}, {worst['tokens']} tokens)")
        if s.save_steps > dataset["iterations"]:
            notes.append(f"--save-steps {s.save_steps} > {dataset['iterations']} steps: only the final checkpoint "
                         "will be saved")
        if not dataset["environment"]["cuda_devices"]:
            notes.append("no CUDA GPU is visible to the swift environment: training runs on the CPU (float32) "
                         "with --deepspeed none only")
        return notes

    # ------------------------------------------------------------ running
    def launch(self, plan: TrainPlan) -> int:
        """Start the run's supervisor detached and record it (pid, start time, command line).

        Returns:
            The supervisor's pid.
        Raises:
            BadInput: DeepSpeed without a CUDA GPU, fewer GPUs than ``--gpus``, or a ``--devices`` index the
                machine lacks.
        """
        run = load_run(plan.run_dir)
        s = from_public(plan.settings)
        gpus = plan.dataset.get("environment", {}).get("cuda_devices", 0)
        if s.deepspeed != "none" and not gpus:
            raise BadInput(f"--deepspeed {s.deepspeed} needs CUDA GPUs; the swift environment sees none",
                           "run on a machine with GPUs, or use --deepspeed none to train on the CPU (slow: tiny "
                           "models and tests)")
        if s.world_size > 1 and gpus < s.gpus:
            raise BadInput(f"--gpus {s.gpus}: the swift environment sees {gpus} CUDA GPU(s)",
                           "run on a machine with that many GPUs, or lower --gpus")
        if gpus:
            distributed.check_devices(s.topology, gpus)
        if s.topology.distributed:
            plan = replace(plan, command=distributed.assign_port(run, s.topology, plan.command))
        env = stage.clean_env(plan.env, stage.require(SWIFT_ENV.name))
        return run_control.start_supervisor(run, plan, env, "vlhub.plugins.trainers.swift_supervisor")

    def status(self, run_dir: Path) -> dict[str, Any]:
        """The run's state from its folder (:func:`.run_control.status`, from ms-swift's ``logging.jsonl``).

        Returns:
            ``status`` (and ``progress``) while a recorded process is provably vlhub's; ``lost`` for an active run
            whose recorded process is alive but not provably vlhub's; else the outcome judged from the files.
        """
        return run_control.status(run_dir, swift_run.rebuild_metrics, _outcome)

    def stop(self, run_dir: Path, timeout: float = 30.0) -> dict[str, Any]:
        """SIGTERM the run's training process tree (SIGKILL after ``timeout`` s) and record ``stopped``; only
        processes proven to be the run's are signalled (:func:`.run_control.stop`).

        Returns:
            The run's ``run.json`` after the stop.
        Raises:
            BadInput: the run is not active, is ``lost``, or its process is this command's own or an ancestor.
        """
        return run_control.stop(run_dir, timeout, _outcome)

    def resume(self, run_dir: Path) -> TrainPlan:
        """The recorded plan with ``--resume_from_checkpoint`` at the last complete ``checkpoint-N``.

        Raises:
            BadInput: the run is active, lost with a live process, never planned, or has no complete checkpoint.
        """
        run = run_control.resumable(run_dir)
        return run_control.resumed_plan(run, swift_run.last_complete(run.dir / swift_run.WORK),
                                        "--resume_from_checkpoint", "step")

    def checkpoints(self, run_dir: Path) -> list[Checkpoint]:
        """The run's ``work/checkpoint-N/`` folders, oldest first."""
        return swift_run.list_checkpoints(Path(run_dir) / swift_run.WORK)

    def report(self, run_dir: Path, log_lines: int = 40) -> dict[str, Any]:
        """What the run's files say beyond ``run.json``: ``metrics`` (one record per logged step), ``samples``
        (none: ms-swift generates no sample answers while training), ``ranks`` (torchrun's per-rank logs) and
        ``log_tail`` (the last ``log_lines`` of ``train.log``)."""
        run_dir = Path(run_dir)
        return {"metrics": run_files.read_metrics(run_dir), "samples": [],
                "ranks": distributed.rank_logs(run_dir / swift_run.RANKS),
                "log_tail": swift_run.tail(run_dir / swift_run.LOG, log_lines)}
