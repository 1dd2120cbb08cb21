"""The xtuner trainer's keyed messages (English and 中文): its refusals and the warnings of a plan.

Registered with :func:`vlhub.core.messages.register`; raised as ``BadInput(KEY, ...)`` or returned as
:class:`vlhub.core.messages.Keyed` lines, they read as before on the command line and in the Train page's
language there (a refusal with the flag it names replaced by the field's label).
"""
from __future__ import annotations

from vlhub.core import messages
from vlhub.core.messages import Keyed

NO_GPUS = "xtuner.no_gpus"

messages.register(NO_GPUS,
                  ("{flag} {gpus}: the train environment sees {visible} CUDA GPU(s); xtuner train cannot train on "
                   "the CPU", "run on a machine with GPUs (--dry-run checks settings anywhere), or lower {flag}"),
                  ("{flag} 为 {gpus}，但训练环境只看到 {visible} 块 CUDA GPU；xtuner 无法在 CPU 上训练",
                   "请在有 GPU 的机器上运行（“检查（试运行）”即 `--dry-run`，在任何机器上都能检查设置），或调低 {flag}"))
messages.register("xtuner.images_left_out",
                  ("{records} left out for a missing or unreadable image (first: {first})", ""),
                  ("{records_zh} 条记录因图片缺失或无法读取而被剔除（第一条：{first}）", ""))
messages.register("xtuner.over_length",
                  ("{count} of {samples} {verb} --max-length {max_length} and will be cut (worst: record {index}, "
                   "{tokens} tokens, {over} over)", ""),
                  ("{samples_zh} 个样本中有 {count} 个{verb_zh}超过最大长度（`--max-length`）{max_length}，将被截断（最长的是第 {index} 条"
                   "记录，{tokens} 个 token，超出 {over} 个）", ""))
messages.register("xtuner.tracking", ("tracking: {trackers}", ""), ("实验跟踪：{trackers}", ""))
messages.register("xtuner.tracking_none", ("tracking: none (--report-to none)", ""),
                  ("实验跟踪：无（`--report-to none`）", ""))
messages.register("xtuner.save_steps_over",
                  ("--save-steps {steps} > {iterations} iterations: only the final checkpoint will be saved", ""),
                  ("保存间隔（`--save-steps`）{steps} 大于总迭代数 {iterations}：只会保存最后一个检查点", ""))
messages.register("xtuner.qlora_no_gpu",
                  ("QLoRA loads 4-bit weights with bitsandbytes on a CUDA GPU; none is visible here", ""),
                  ("QLoRA 需要在 CUDA GPU 上用 bitsandbytes 加载 4 比特权重，但这里看不到 GPU", ""))
messages.register("xtuner.no_flash_attn",
                  ("flash-attn is not installed: the LLM trains with sdpa/eager attention (slower)", ""),
                  ("未安装 flash-attn：LLM 将用 `sdpa` 或 `eager` 注意力训练（较慢）", ""))


def images_left_out(count: int, first: str) -> Keyed:
    """``count`` records are left out for their images; ``first`` describes the first one."""
    return Keyed("xtuner.images_left_out", records=f"{count} record{' is' if count == 1 else 's are'}",
                 records_zh=count, first=first)


def over_length(count: int, kept: int, max_length: int, worst: dict) -> Keyed:
    """``count`` of ``kept`` samples are longer than ``max_length`` tokens; ``worst``: ``index``, ``tokens``,
    ``over`` of the longest."""
    return Keyed("xtuner.over_length", count=count, samples=f"{kept} sample{'' if kept == 1 else 's'}", samples_zh=kept,
                 verb=f"exceed{'s' if count == 1 else ''}", verb_zh="", max_length=max_length, index=worst["index"],
                 tokens=worst["tokens"], over=worst["over"])


def tracking(trackers: list[str]) -> Keyed:
    """The experiment trackers the run reports to (none: ``--report-to none``)."""
    return Keyed("xtuner.tracking", trackers=", ".join(trackers)) if trackers else Keyed("xtuner.tracking_none")


def save_steps_over(steps: int, iterations: int) -> Keyed:
    """``--save-steps`` is larger than the run: only its final checkpoint is saved."""
    return Keyed("xtuner.save_steps_over", steps=steps, iterations=iterations)


def qlora_no_gpu() -> Keyed:
    """QLoRA needs a CUDA GPU for bitsandbytes, and none is visible."""
    return Keyed("xtuner.qlora_no_gpu")


def no_flash_attn() -> Keyed:
    """flash-attn is not installed in the train environment."""
    return Keyed("xtuner.no_flash_attn")
