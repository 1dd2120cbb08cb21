"""The ``swift`` trainer's settings: the xtuner trainer's flags where ms-swift has the same knob, each mapped
to ``swift sft``'s argument (ms-swift 4.6, ``swift/arguments/sft_args.py``, ``tuner_args.py`` and
transformers' ``TrainingArguments``), checked here so that a bad value is one line naming the flag.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from vlhub.core.errors import BadInput
from vlhub.core.options import FLAGS, Option, resolve, translated

from . import distributed
from .settings import at_least, check_common

METHODS = ("lora", "full")
#: ms-swift's bundled DeepSpeed configs (``swift/config/zeroN.json``), or none.
DEEPSPEED = ("zero2", "zero3", "zero2_offload", "zero3_offload", "none")

OPTIONS: tuple[Option, ...] = (
    Option("method", "lora (adapters on the LLM's linear layers) or full (every weight of the LLM)", str, "lora",
           METHODS),
    Option("max_length", "maximum tokens per sample, image tokens included (longer samples are cut)", int, 4096),
    Option("batch_size", "samples per GPU per step", int, 4),
    Option("grad_accum", "gradient accumulation steps", int, 4),
    Option("epochs", "passes over the data", int, 1),
    Option("max_iters", "stop after this many optimizer steps instead of --epochs", int, None),
    Option("lr", "peak learning rate", float, 4e-5),
    Option("warmup_ratio", "share of the schedule used for linear warm-up", float, 0.03),
    Option("weight_decay", "AdamW weight decay", float, 0.05),
    Option("max_norm", "gradient clipping norm", float, 1.0),
    Option("save_steps", "save a checkpoint every N optimizer steps (and at the end)", int, 500),
    Option("save_limit", "keep at most N checkpoints (-1: all)", int, 2),
    Option("lora_r", "LoRA rank", int, 128),
    Option("lora_alpha", "LoRA alpha", int, 256),
    Option("lora_dropout", "LoRA dropout", float, 0.05),
    Option("freeze_llm", "freeze the LLM (full: its weights; lora: no adapters on it)", bool, False),
    Option("freeze_vit", "freeze the vision encoder (full: its weights; lora: no adapters on it)", bool, True),
    Option("deepspeed", "DeepSpeed ZeRO stage (ms-swift's bundled config), or none; needs CUDA GPUs", str,
           "zero2", DEEPSPEED),
    Option("gradient_checkpointing", "recompute activations in the backward pass (less memory, slower)", bool,
           True),
    Option("gpus", "GPUs on this machine (processes per node; default: 1, or the number of --devices)", int, None),
    distributed.DEVICES,
    Option("nnodes", "machines taking part (torchrun --nnodes)", int, 1),
    Option("node_rank", "this machine's rank, 0 on the main one (torchrun --node_rank)", int, 0),
    Option("master_addr", "address of the rank-0 machine (torchrun --master_addr)", str, "127.0.0.1"),
    Option("master_port", "rendezvous port on the rank-0 machine (default: a free port per start on one machine, "
                          "29500 with --nnodes > 1)", int, None),
    Option("image_root", "folder the data's image paths are relative to (default: from the data)", str, None),
    Option("workers", "dataloader worker processes", int, 2),
    Option("seed", "random seed", int, 42),
    Option("log_interval", "log every N optimizer steps", int, 10),
    Option("strict", "refuse to plan when a sample is longer than --max-length (default: a warning; it is cut)",
           bool, False),
)

#: Chinese labels and help texts (:func:`vlhub.core.options.translated`); terms as on LlamaBoard's Chinese pages.
LABELS_ZH: dict[str, tuple] = {
    "method": ("微调方式", "LoRA（在 LLM 的线性层上加适配器）或全量微调（训练 LLM 的全部权重）",
               {"lora": "LoRA", "full": "全量微调"}),
    "max_length": ("最大长度", "每个样本的最大 token 数（含图像 token，更长的样本会被截断）"),
    "batch_size": ("批大小", "每张 GPU 每步的样本数"),
    "grad_accum": ("梯度累积", "梯度累积步数"),
    "epochs": ("训练轮数", "遍历数据的次数"),
    "max_iters": ("最大步数", "达到该优化步数后停止（代替训练轮数）"),
    "lr": ("学习率", "峰值学习率"),
    "warmup_ratio": ("预热比例", "线性预热占整个学习率调度的比例"),
    "weight_decay": ("权重衰减", "AdamW 的权重衰减"),
    "max_norm": ("梯度裁剪", "梯度裁剪的范数上限"),
    "save_steps": ("保存间隔", "每 N 个优化步保存一个检查点（结束时也保存）"),
    "save_limit": ("保留检查点数", "最多保留 N 个检查点（-1：全部保留）"),
    "lora_r": ("LoRA 秩", "LoRA 的秩"),
    "lora_alpha": ("LoRA 缩放系数", "LoRA 的缩放系数 α"),
    "lora_dropout": ("LoRA 随机丢弃", "LoRA 层的随机丢弃比例"),
    "freeze_llm": ("冻结 LLM", "冻结 LLM（全量微调：冻结其权重；LoRA：不在其上加适配器）"),
    "freeze_vit": ("冻结视觉编码器", "冻结视觉编码器（全量微调：冻结其权重；LoRA：不在其上加适配器）"),
    "deepspeed": ("DeepSpeed", "DeepSpeed ZeRO 阶段（ms-swift 自带的配置），或不使用；需要 CUDA GPU",
                  {"zero2": "ZeRO-2", "zero3": "ZeRO-3", "zero2_offload": "ZeRO-2（卸载到 CPU）",
                   "zero3_offload": "ZeRO-3（卸载到 CPU）", "none": "不使用"}),
    "gradient_checkpointing": ("梯度检查点", "反向传播时重新计算激活值（省显存，较慢）"),
    "gpus": ("GPU 数", "本机使用的 GPU 数（每台机器的进程数；默认 1，或所选 GPU 编号的个数）"),
    "devices": ("使用的 GPU 编号", "训练使用的 GPU 编号，用逗号分隔，例如 0,1（设置 `CUDA_VISIBLE_DEVICES`；"
                "GPU 数默认为编号个数）"),
    "nnodes": ("节点数", "参与训练的机器数（torchrun 的 `--nnodes`）"),
    "node_rank": ("节点序号", "本机的序号，主节点为 0（torchrun 的 `--node_rank`）"),
    "master_addr": ("主节点地址", "0 号机器的地址（torchrun 的 `--master_addr`）"),
    "master_port": ("主节点端口", "0 号机器上的汇合端口（默认：单机时每次启动选一个空闲端口，多机时为 29500）"),
    "image_root": ("图片根目录", "数据中图片路径的相对根目录（默认：取自数据）"),
    "workers": ("数据加载进程数", "数据加载的工作进程数"),
    "seed": ("随机种子", "随机种子"),
    "log_interval": ("日志间隔", "每 N 个优化步记录一次日志"),
    "strict": ("严格检查", "有样本超过最大长度时拒绝开始（默认：只提示，超出部分被截断）"),
}
OPTIONS = translated(OPTIONS, "zh", LABELS_ZH)


@dataclass
class Settings(distributed.LaunchSettings):
    """Validated settings of one swift run."""

    method: str = "lora"
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
    freeze_llm: bool = False
    freeze_vit: bool = True
    deepspeed: str = "zero2"
    gradient_checkpointing: bool = True
    gpus: int = 1
    devices: str | None = None
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int | None = None
    image_root: str | None = None
    workers: int = 2
    seed: int = 42
    log_interval: int = 10
    strict: bool = False

    def public(self) -> dict[str, Any]:
        """JSON-ready (stored in ``run.json``; :func:`from_public` reads it back)."""
        return asdict(self)


def parse(options: Mapping[str, Any]) -> Settings:
    """Settings from option names and values (CLI flags or form fields), checked.

    Args:
        options: option name -> value, text or typed (:func:`vlhub.core.options.resolve`); absent or ``None``
            values take the default.
    Returns:
        :class:`Settings` with every field set (``gpus`` from ``--devices`` when only that is given).
    Raises:
        BadInput: an unknown option, a value of the wrong type or outside its choices, or a combination that
            cannot train; the message names the flag and the fix.
    """
    values = resolve(OPTIONS, options, FLAGS)
    _, values["gpus"] = distributed.parse_devices(values.get("devices"), values.get("gpus"))
    values["gpus"] = values["gpus"] or 1
    s = Settings(**values)
    at_least(s, "max_length", "batch_size", "grad_accum", "epochs", "max_iters", "save_steps", "lora_r",
             "lora_alpha", "gpus", "nnodes", "log_interval")
    at_least(s, "workers", "node_rank", minimum=0)
    check_common(s)
    if s.freeze_llm and s.freeze_vit and s.method == "lora":
        raise BadInput("--freeze-llm with --freeze-vit leaves LoRA nothing to adapt",
                       "drop --freeze-llm (or use --no-freeze-vit to adapt the vision encoder)")
    if s.world_size > 1 and s.deepspeed == "none" and s.method == "full":
        raise BadInput("--method full on several GPUs without DeepSpeed keeps a whole copy of the model and "
                       "optimizer on every GPU", "use --deepspeed zero2 or zero3")
    return s


def from_public(data: Mapping[str, Any]) -> Settings:
    """Settings back from :meth:`Settings.public` (as stored in ``run.json``)."""
    names = {f.name for f in fields(Settings)}
    return Settings(**{k: v for k, v in data.items() if k in names})


def swift_args(s: Settings) -> dict[str, Any]:
    """The ``swift sft`` arguments these settings set (ms-swift's names; the trainer adds the model, data and
    output ones).

    Returns:
        argument name -> value; ``None`` values are left out of the command line.
    """
    args: dict[str, Any] = {
        "tuner_type": s.method, "max_length": s.max_length, "truncation_strategy": "right",
        "per_device_train_batch_size": s.batch_size, "gradient_accumulation_steps": s.grad_accum,
        "num_train_epochs": s.epochs, "max_steps": s.max_iters, "learning_rate": s.lr, "warmup_ratio": s.warmup_ratio,
        "weight_decay": s.weight_decay, "max_grad_norm": s.max_norm, "save_steps": s.save_steps,
        "save_total_limit": None if s.save_limit == -1 else s.save_limit, "freeze_llm": s.freeze_llm,
        "freeze_vit": s.freeze_vit, "freeze_aligner": s.method == "lora",
        "gradient_checkpointing": s.gradient_checkpointing, "dataloader_num_workers": s.workers, "seed": s.seed,
        "logging_steps": s.log_interval, "deepspeed": None if s.deepspeed == "none" else s.deepspeed,
    }
    if s.method == "lora":
        args.update(lora_rank=s.lora_r, lora_alpha=s.lora_alpha, lora_dropout=s.lora_dropout,
                    target_modules="all-linear")
    return args


def image_root_of(s: Settings) -> Path | None:
    """``--image-root`` as an absolute path, or None."""
    return Path(s.image_root).expanduser().resolve() if s.image_root else None
