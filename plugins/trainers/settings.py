"""The xtuner trainer's settings: the option list (CLI flags, form fields) and their validation; also the
checks every trainer's settings share (:func:`at_least`, :func:`check_common`, :func:`batch_fits`).

Every check here is cheap and runs in the launcher; an error names the flag and the fix.
"""
from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from vlhub.core.errors import BadInput
from vlhub.core.options import FLAGS, Option, flag as _flag, resolve, translated

from . import distributed, labels_zh

METHODS = ("lora", "qlora", "full")
DEEPSPEED = ("zero1", "zero2", "zero3", "zero3_offload", "none")
TEMPLATES = ("internlm2_chat", "phi3_chat")

OPTIONS: tuple[Option, ...] = (
    Option("method", "lora (LLM adapters), qlora (4-bit LLM + adapters, needs bitsandbytes) or full",
           str, "lora", METHODS),
    Option("template", "xtuner prompt template (default: the one that fits the model)", str, None, TEMPLATES),
    Option("max_length", "maximum tokens per sample, image tokens included", int, 4096),
    Option("batch_size", "samples per GPU per step", int, 4),
    Option("grad_accum", "gradient accumulation steps", int, 4),
    Option("epochs", "passes over the data", int, 1),
    Option("max_iters", "stop after this many iterations instead of --epochs", int, None),
    Option("lr", "peak learning rate", float, 4e-5),
    Option("warmup_ratio", "share of the schedule used for linear warm-up", float, 0.03),
    Option("weight_decay", "AdamW weight decay", float, 0.05),
    Option("max_norm", "gradient clipping norm", float, 1.0),
    Option("save_steps", "save a checkpoint every N iterations", int, 500),
    Option("save_limit", "keep at most N checkpoints (-1: all)", int, 2),
    Option("lora_r", "LoRA rank on the LLM", int, 128),
    Option("lora_alpha", "LoRA alpha on the LLM", int, 256),
    Option("lora_dropout", "LoRA dropout on the LLM", float, 0.05),
    Option("vit_lora_r", "LoRA rank on the vision encoder (0: no ViT LoRA)", int, 0),
    Option("vit_lora_alpha", "LoRA alpha on the vision encoder", int, 16),
    Option("freeze_llm", "freeze the LLM's own weights (default: yes, except for full)", bool, None),
    Option("freeze_vit", "freeze the vision encoder's own weights", bool, True),
    Option("deepspeed", "DeepSpeed ZeRO stage, or none", str, "zero2", DEEPSPEED),
    Option("gpus", "GPUs on this machine (processes per node; default: 1, or the number of --devices)", int, 1),
    distributed.DEVICES,
    Option("nnodes", "machines taking part (torchrun --nnodes)", int, 1),
    Option("node_rank", "this machine's rank, 0 on the main one (torchrun --node_rank)", int, 0),
    Option("master_addr", "address of the rank-0 machine (torchrun --master_addr)", str, "127.0.0.1"),
    Option("master_port", "rendezvous port on the rank-0 machine (default: a free port per start on one "
                          "machine, 29500 with --nnodes > 1)", int, None),
    Option("eval_prompt", "prompt to answer about --eval-image during training (repeatable)", list, ()),
    Option("eval_image", "image for the evaluation prompts", str, None),
    Option("eval_every", "sample outputs every N iterations (default: --save-steps)", int, None),
    Option("val_every", "validate every N iterations on the prepared folder's val.json and val_mc.json (default: "
                        "chosen so that validation costs at most 10% of the training time; 0: off)", int, None),
    Option("val_items", "validate on at most N val.json records and N val_mc.json items (default: chosen with "
                        "--val-every; 0: off)", int, None),
    Option("best_metric", "validation metric that picks the best checkpoint (kept by --save-limit, converted by "
                          "`vlhub convert RUN`)", str, "val_loss", ("val_loss", "val_acc")),
    Option("report_to", "experiment tracker: tensorboard, wandb, swanlab or none (repeatable; default: TensorBoard, "
                        "plus W&B and SwanLab when installed in the train env and logged in)", list, ()),
    Option("image_root", "folder the data's image paths are relative to (default: from the data)", str, None),
    Option("workers", "dataloader worker processes", int, 2),
    Option("seed", "random seed", int, 42),
    Option("log_interval", "log every N iterations", int, 10),
    Option("strict", "refuse to plan when a sample is longer than --max-length (default: a warning; it is cut)",
           bool, False),
    Option("check_step", "before launching, also build the model on the CPU, run one training step and "
                         "answer one sample prompt (slow for big models)", bool, False),
    Option("launch_command", "replace `xtuner train ...` by this command line ({config}, {work_dir}, "
                             "{run_dir} are filled in); for wrappers such as srun, and for tests", str, None),
)
OPTIONS = translated(OPTIONS, "zh", labels_zh.OPTIONS)


@dataclass
class Settings(distributed.LaunchSettings):
    """Validated settings; ``None`` fields fall back to model- or method-dependent defaults."""

    method: str = "lora"
    template: str | None = None
    max_length: int = 4096
    batch_size: int = 4
    grad_accum: int = 4
    epochs: int = 1
    max_iters: int | None = None
    lr: float = 4e-5
    warmup_ratio: float = 0.03
    weight_decay: float = 0.05
    max_norm: float = 1.0
    save_steps: int = 500
    save_limit: int = 2
    lora_r: int = 128
    lora_alpha: int = 256
    lora_dropout: float = 0.05
    vit_lora_r: int = 0
    vit_lora_alpha: int = 16
    freeze_llm: bool | None = None
    freeze_vit: bool = True
    deepspeed: str = "zero2"
    gpus: int = 1
    devices: str | None = None
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int | None = None
    eval_prompt: list[str] = field(default_factory=list)
    eval_image: str | None = None
    eval_every: int | None = None
    val_every: int | None = None
    val_items: int | None = None
    best_metric: str = "val_loss"
    report_to: list[str] = field(default_factory=list)
    image_root: str | None = None
    workers: int = 2
    seed: int = 42
    log_interval: int = 10
    strict: bool = False
    check_step: bool = False
    launch_command: str | None = None

    @property
    def llm_frozen(self) -> bool:
        return self.method != "full" if self.freeze_llm is None else self.freeze_llm

    def public(self) -> dict[str, Any]:
        return asdict(self)


def at_least(s: Any, *names: str, minimum: float = 1) -> None:
    """Refuse a setting below ``minimum`` (``None``, an unset optional one, passes).

    Args:
        s: a trainer's settings (this module's or another trainer's :class:`Settings`).
        names: the settings' field names.
        minimum: the smallest value allowed.
    Raises:
        BadInput: the first named setting below ``minimum``; the message names its flag and the fix.
    """
    for name in names:
        value = getattr(s, name)
        if value is not None and value < minimum:
            raise BadInput(f"{_flag(name)} {value} is too small", f"use {_flag(name)} {minimum} or more")


def check_common(s: Any) -> None:
    """The checks of the settings every trainer has: the optimizer's (``lr``, ``warmup_ratio``,
    ``weight_decay``, ``max_norm``), ``lora_dropout``, ``save_limit`` and the launch topology (``nnodes``,
    ``node_rank``, ``master_addr``, ``master_port``).

    Args:
        s: a trainer's settings (this module's or another trainer's :class:`Settings`) with those fields.
    Raises:
        BadInput: a negative rate, ``--lr 0``, a warm-up ratio or dropout of 1 or more, a ``--save-limit``
            that keeps no checkpoint, a ``--node-rank`` outside ``--nnodes``, several machines without
            ``--master-addr``, or a ``--master-port`` that is not a port; the message names the flag and the fix.
    """
    for name in ("lr", "warmup_ratio", "weight_decay", "max_norm", "lora_dropout"):
        if getattr(s, name) < 0:
            raise BadInput(f"{_flag(name)} {getattr(s, name)} is negative", f"give {_flag(name)} a value >= 0")
    if s.lr == 0:
        raise BadInput("--lr 0 trains nothing", "use e.g. --lr 4e-5")
    if s.warmup_ratio >= 1 or s.lora_dropout >= 1:
        raise BadInput("--warmup-ratio and --lora-dropout must be below 1", "use e.g. --warmup-ratio 0.03")
    if s.save_limit == 0 or s.save_limit < -1:
        raise BadInput(f"--save-limit {s.save_limit} keeps no checkpoint", "use --save-limit 1 or more (-1: all)")
    if s.node_rank >= s.nnodes:
        raise BadInput(f"--node-rank {s.node_rank} needs --nnodes {s.node_rank + 1} or more",
                       f"give each machine a --node-rank from 0 to {s.nnodes - 1}")
    if s.nnodes > 1 and s.master_addr in ("127.0.0.1", "localhost"):
        raise BadInput("--nnodes > 1 needs the rank-0 machine's address",
                       "add --master-addr IP (the same on every machine)")
    if s.master_port is not None and not 0 < s.master_port < 65536:
        raise BadInput(f"--master-port {s.master_port} is not a port", "use e.g. --master-port 29500")


def batch_fits(s: Any, samples: int, model: Any) -> None:
    """Refuse batch and length settings that cannot train on the data and the model.

    Args:
        s: a trainer's settings (``batch_size``, ``grad_accum``, ``world_size``, ``max_length``).
        samples: the samples the data holds.
        model: the model as the trainer reads it (``tile_tokens``: image tokens per tile;
            ``max_image_tokens``: image tokens of one image at most).
    Raises:
        BadInput: fewer samples than one optimizer step takes, or ``--max-length`` cannot hold one image tile;
            the message names the flags and the fix.
    """
    per_step = s.batch_size * s.grad_accum * s.world_size
    if samples < per_step:
        raise BadInput(f"--batch-size {s.batch_size} x --grad-accum {s.grad_accum} x {s.world_size} GPU(s) = "
                       f"{per_step} samples per optimizer step, but the data has {samples}",
                       "lower --batch-size or --grad-accum, or add data")
    if s.max_length <= model.tile_tokens:
        raise BadInput(f"--max-length {s.max_length} cannot hold one image ({model.tile_tokens} tokens per tile)",
                       f"use --max-length {model.max_image_tokens + 512} or more")


def parse(options: Mapping[str, Any]) -> Settings:
    """Settings from a mapping of option names (CLI flags or form fields), checked.

    Args:
        options: option name -> value, text or typed (:func:`vlhub.core.options.resolve`); absent or
            ``None`` values take the default.
    Returns:
        :class:`Settings` with every field set.
    Raises:
        BadInput: an unknown option, a value of the wrong type or outside its choices, or a
            combination that cannot train; the message names the flag and the fix.
    """
    s = Settings(**resolve(OPTIONS, options, FLAGS))
    devices, gpus = distributed.parse_devices(s.devices, None if options.get("gpus") in (None, "") else s.gpus)
    s.devices, s.gpus = (",".join(map(str, devices)) or None), gpus or s.gpus
    at_least(s, "max_length", "batch_size", "grad_accum", "epochs", "max_iters", "save_steps", "lora_r",
             "lora_alpha", "gpus", "nnodes", "log_interval", "eval_every")
    at_least(s, "workers", "node_rank", "vit_lora_r", "val_every", "val_items", minimum=0)
    check_common(s)
    if s.method == "full" and s.llm_frozen and s.freeze_vit:
        raise BadInput("--method full with --freeze-llm and --freeze-vit trains only the projector",
                       "drop --freeze-llm, or use --method lora")
    if s.method != "full" and s.freeze_llm is False:
        raise BadInput(f"--method {s.method} keeps the LLM frozen (its adapters train)",
                       "drop --no-freeze-llm, or use --method full")
    if s.method == "qlora" and s.deepspeed == "zero3_offload":
        raise BadInput("--method qlora cannot offload 4-bit weights (--deepspeed zero3_offload)",
                       "use --deepspeed zero2 or zero3 with qlora")
    if s.eval_prompt and not s.eval_image:
        raise BadInput("--eval-prompt needs --eval-image", "add --eval-image PATH (a picture to ask about)")
    if s.eval_image:
        image = Path(s.eval_image).expanduser()
        if not image.is_file():
            raise BadInput(f"--eval-image {s.eval_image}: no such file", "give the path of an image file")
        s.eval_image = str(image.resolve())
        if not s.eval_prompt:
            s.eval_prompt = ["Describe this image."]
    if s.launch_command is not None and not shlex.split(s.launch_command):
        raise BadInput("--launch-command is empty", "give a command line, or drop --launch-command")
    return s


def from_public(data: Mapping[str, Any]) -> Settings:
    """Settings back from :meth:`Settings.public` (as stored in run.json)."""
    names = {f.name for f in fields(Settings)}
    return Settings(**{k: v for k, v in data.items() if k in names})
