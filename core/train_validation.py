"""How often, and on how many items, a training run validates: the default that keeps validation cheap.

Validation measures the loss on records of the prepared folder's ``val.json`` and, when the folder
has ``val_mc.json``, multiple-choice accuracy (each choice scored by the model). By default it may
cost at most :data:`SHARE` (10 %) of the training time. Costs are counted in *sample passes* (one
forward pass over one sample), a rule of thumb that holds whatever the GPU:

- a training iteration is ``3 x batch_size`` passes per GPU (forward plus a backward of about twice
  the forward's work; activation checkpointing makes it more, so the estimate errs on the safe side);
- a validation round is ``(loss records + multiple-choice items x their mean number of choices) / GPUs``
  passes per GPU (each choice is one scored sequence; items are shared across GPUs);
- a run of ``T`` iterations validating every ``N`` validates ``ceil(T / N)`` times (every ``N``
  iterations and after the last one, as mmengine's loop does).

Defaults (:func:`plan`): at most :data:`DEFAULT_ITEMS` records and as many multiple-choice items;
``N`` is the smallest divisor or multiple of the checkpoint interval that keeps the share under
:data:`SHARE` and validates at most :data:`MAX_ROUNDS` times (more points add nothing to a curve).
``N`` lines up with the checkpoints so that every checkpoint is validated (``N`` divides the interval)
or every validation has its checkpoint (``N`` is a multiple), which the best checkpoint needs. When no
such ``N`` fits, validation runs once, after the last iteration, on as many items as fit; when not
even one item fits, it is off and the plan says why. Given values (``--val-every``, ``--val-items``)
are kept; the plan then only warns when the estimate is over the share.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from . import messages
from .errors import BadInput
from .messages import Keyed

#: the share of the training time validation may cost by default
SHARE = 0.10
#: default cap on validation records (and, separately, on multiple-choice items)
DEFAULT_ITEMS = 100
#: validations worth having in one run by default (points on the validation curve)
MAX_ROUNDS = 20
#: sample passes of one training sample (forward + backward)
TRAIN_PASSES = 3.0

messages.register(
    "train.val_misaligned",
    ("{flag} {every} does not line up with --save-steps {save}: checkpoints would be saved where no validation "
     "ran, so no best checkpoint could be chosen among them",
     "use a divisor or a multiple of --save-steps (e.g. {flag} {example}), or {flag} 0 to validate not at all"),
    ("{flag} {every} 与 --save-steps {save} 对不齐：检查点保存时没有验证，无法从中选出最佳检查点",
     "请使用 --save-steps 的约数或倍数（例如 {flag} {example}），或用 {flag} 0 关闭验证"))
_WHAT = {"en": "{items} val.json record(s) and {mc_items} val_mc.json item(s): about {share} of the training time",
         "zh": "{items} 条 val.json 记录和 {mc_items} 道 val_mc.json 多选题：约占训练时间的 {share}"}
_OVER = ("lower {flag_items} or raise {flag_every} (over the default {limit})",
         "请减小 {flag_items} 或增大 {flag_every}（超过默认的 {limit}）")
for _key, _en, _zh in (("train.val_plan", "validation every {every} iterations ({rounds}x) on ", "每 {every} 次迭代验证一次（共 {rounds} 次），使用 "),
                       ("train.val_plan_end", "validation after the last iteration on ", "最后一次迭代后验证一次，使用 ")):
    messages.register(_key, (_en + _WHAT["en"], ""), (_zh + _WHAT["zh"], ""))
    messages.register(_key + "_over", (_en + _WHAT["en"], _OVER[0]), (_zh + _WHAT["zh"], _OVER[1]))
messages.register("train.val_off_flag", ("validation is off ({flag} 0)", ""), ("已关闭验证（{flag} 0）", ""))
messages.register(
    "train.val_off_no_split",
    ("validation is off: the data has no validation split (val.json or val_mc.json)",
     "`vlhub data prepare` writes them"),
    ("已关闭验证：数据中没有验证集（val.json 或 val_mc.json）", "`vlhub data prepare` 会生成它们"))
messages.register(
    "train.val_off_short",
    ("validation is off: the run is too short ({iterations} iterations) to validate one item within {limit} of its "
     "time", "set {flag} N to validate anyway"),
    ("已关闭验证：运行太短（{iterations} 次迭代），无法在其 {limit} 的时间内验证哪怕一条", "如仍要验证，请设置 {flag} N"))
messages.register(
    "train.val_negative",
    ("{flag} {value} is negative", "use {flag} 0 (off) or a positive number"),
    ("{flag} {value} 为负数", "请使用 {flag} 0（关闭）或正数"))


@dataclass(frozen=True)
class ValidationPlan:
    """What a run validates: ``every`` iterations (0: off) on ``items`` records and ``mc_items`` multiple-choice
    items; ``share`` is the estimated share of the training time (0-1); ``note`` says why it was chosen
    (or why validation is off) in one line, a :class:`vlhub.core.messages.Keyed` message (English text that
    pages show in their language)."""

    every: int
    items: int
    mc_items: int
    rounds: int
    share: float
    note: str = ""

    @property
    def enabled(self) -> bool:
        return self.every > 0 and (self.items > 0 or self.mc_items > 0)

    def public(self) -> dict[str, Any]:
        """The plan as JSON-ready data (``every``, ``items``, ``mc_items``, ``rounds``, ``share``, ``note``)."""
        return asdict(self)


def rounds(iterations: int, every: int) -> int:
    """Validations in a run of ``iterations`` validating every ``every`` (and after the last iteration)."""
    return math.ceil(iterations / every) if every > 0 else 0


def share(iterations: int, batch_size: int, gpus: int, every: int, items: int, mc_items: int,
          mean_choices: float) -> float:
    """The estimated share (0-1) of the training time that validation costs (module docstring's rule)."""
    if every <= 0 or iterations <= 0:
        return 0.0
    passes = rounds(iterations, every) * (items + mc_items * mean_choices) / max(1, gpus)
    return passes / (TRAIN_PASSES * batch_size * iterations)


def _intervals(save_steps: int, iterations: int) -> list[int]:
    """Divisors and multiples of ``save_steps`` up to ``iterations``, ascending."""
    found = {d for d in range(1, save_steps + 1) if save_steps % d == 0}
    found |= set(range(save_steps, iterations + 1, save_steps))
    return sorted(n for n in found if n <= iterations)


def aligned(every: int, save_steps: int) -> bool:
    """Whether ``every`` divides ``save_steps`` or is a multiple of it."""
    return every > 0 and (save_steps % every == 0 or every % save_steps == 0)


def plan(iterations: int, batch_size: int, gpus: int, save_steps: int, records: int, mc_records: int,
         mean_choices: float, every: int | None = None, items: int | None = None,
         flag_every: str = "--val-every", flag_items: str = "--val-items") -> ValidationPlan:
    """Choose how often and on how many items a run validates (module docstring's defaults).

    Args:
        iterations: the run's iterations (dataloader batches).
        batch_size: samples per GPU per iteration.
        gpus: GPUs taking part (the world size).
        save_steps: the checkpoint interval, in iterations.
        records: validation records available (``val.json``).
        mc_records: multiple-choice items available (``val_mc.json``; 0 without).
        mean_choices: their mean number of choices.
        every: the user's interval (``--val-every``): ``None`` to choose, 0 for off.
        items: the user's cap on records and on multiple-choice items each (``--val-items``): ``None`` to
            choose, 0 for off.
        flag_every, flag_items: the flags named in messages.
    Returns:
        The :class:`ValidationPlan` (``every == 0`` when validation is off, with the reason in ``note``).
    Raises:
        BadInput: a negative value; an ``every`` that is neither a divisor nor a multiple of ``save_steps``.
    """
    for flag, value in ((flag_every, every), (flag_items, items)):
        if value is not None and value < 0:
            raise BadInput("train.val_negative", flag=flag, value=value)
    if every == 0 or items == 0:
        return ValidationPlan(0, 0, 0, 0, 0.0, Keyed("train.val_off_flag", flag=flag_every if every == 0 else flag_items))
    if records == 0 and mc_records == 0:
        return ValidationPlan(0, 0, 0, 0, 0.0, Keyed("train.val_off_no_split"))
    if every is not None and not aligned(every, save_steps) and every < iterations:
        example = max(d for d in range(1, save_steps + 1) if save_steps % d == 0 and d <= every)
        raise BadInput("train.val_misaligned", flag=flag_every, every=every, save=save_steps, example=example)

    def sized(cap: int) -> tuple[int, int]:
        return min(records, cap), min(mc_records, cap)

    def cost(n: int, cap: int) -> float:
        return share(iterations, batch_size, gpus, n, *sized(cap), mean_choices)

    cap = items if items is not None else DEFAULT_ITEMS
    if every is None:
        wanted = [n for n in _intervals(save_steps, iterations) if rounds(iterations, n) <= MAX_ROUNDS]
        fits = [n for n in wanted if cost(n, cap) <= SHARE]
        every = fits[0] if fits else iterations
        if not fits and items is None:
            budget = SHARE * TRAIN_PASSES * batch_size * iterations * max(1, gpus)   # passes of one round
            cap = max((c for c in range(1, cap + 1) if sum(sized(c)) and
                       sized(c)[0] + sized(c)[1] * mean_choices <= budget), default=0)
            if cap == 0:
                return ValidationPlan(0, 0, 0, 0, 0.0, Keyed("train.val_off_short", iterations=iterations,
                                                             limit=f"{SHARE:.0%}", flag=flag_every))
    loss_items, mc_items = sized(cap)
    estimate = share(iterations, batch_size, gpus, every, loss_items, mc_items, mean_choices)
    n = rounds(iterations, every)
    key = ("train.val_plan_end" if every >= iterations else "train.val_plan") + ("_over" if estimate > SHARE else "")
    note = Keyed(key, every=every, rounds=n, items=loss_items, mc_items=mc_items, share=f"{estimate:.0%}",
                 limit=f"{SHARE:.0%}", flag_items=flag_items, flag_every=flag_every)
    return ValidationPlan(every, loss_items, mc_items, n, round(estimate, 4), note)
