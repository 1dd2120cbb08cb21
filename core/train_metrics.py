"""A training run's metrics records and its best-checkpoint marker: the run-folder format every trainer writes.

These two files of a training run folder (``$VLHUB_HOME/runs/ID/``, :mod:`vlhub.core.runs`) are
trainer-neutral: the built-in xtuner trainer writes them (its supervisor turns the log into records,
its validation hook writes the marker), and any other trainer writes the same so that the Train
page, ``vlhub run show``, the model card's loss plot and ``vlhub convert RUN`` read every run alike.

``metrics.jsonl`` (:data:`METRICS`): one JSON object per line, appended while the run goes on (a torn
last line is skipped by readers). Two kinds of record:

=================  =====================================================================================
training record    ``{"iter": int (1-based iteration), "total": int (iterations of the run), "loss":
                   float, "lr": float, ...}``: the trainer's per-iteration numbers as it logs them
                   (xtuner: ``time``, ``data_time``, ``memory``, ``eta``, ``grad_norm`` ...) plus
                   ``logged`` (the log's time stamp). No ``split`` key.
validation record  ``{"iter": int (the iteration after which validation ran), "split": "val",
                   "val_loss": float (mean cross-entropy per answer token over the validation records,
                   as training computes its loss), "val_acc": float (0-1, multiple-choice accuracy;
                   absent without multiple-choice items), "val_items": int (records the loss was
                   measured on), "val_mc_items": int (multiple-choice items asked), "logged": str}``.
                   It has no ``loss`` key, so a reader of training losses never mistakes it for one.
=================  =====================================================================================

After a resume the re-run iterations are logged again; readers keep the last record per
``(split, iter)``.

``best_checkpoint.json`` (:data:`BEST_FILE`), written atomically whenever a validation improves on the
chosen metric and the checkpoint of that iteration exists::

    {"format": "vlhub.best/1", "metric": "val_loss" | "val_acc", "mode": "min" | "max",
     "value": float, "iter": int, "checkpoint": str (path relative to the run folder, e.g.
     "work/iter_40.pth"), "metrics": {name: float} (every validation number of that iteration)}

The checkpoint it names is never deleted by the trainer's checkpoint limit (``--save-limit`` keeps
the newest N *plus* the best), and is what :func:`vlhub.core.convert.convert` takes from a run by
default (:func:`choose_checkpoint`).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Sequence

from . import messages
from .errors import BadInput
from .fsutil import read_json

METRICS = "metrics.jsonl"
BEST_FILE = "best_checkpoint.json"
BEST_FORMAT = "vlhub.best/1"
VAL = "val"
#: the metrics a best checkpoint can be chosen by, and whether lower (``min``) or higher (``max``) is better
BEST_METRICS = {"val_loss": "min", "val_acc": "max"}
#: what ``--checkpoint`` accepts besides an iteration number
BEST, LAST = "best", "last"
_ITER = re.compile(r"^(?:iter_)?(\d+)(?:\.pth)?$")

messages.register(
    "convert.bad_checkpoint",
    ("{flag} {value!r} is not a checkpoint choice", "use {flag} best, {flag} last or {flag} N (an iteration, "
                                                    "e.g. {flag} 40; `vlhub run show RUN` lists them)"),
    ("{flag} {value!r} 不是有效的检查点选择", "请使用 {flag} `best`、{flag} `last` 或 {flag} N（迭代步数，例如 {flag} 40；`vlhub run show RUN` 列出检查点）"))
messages.register(
    "convert.checkpoint_needs_run",
    ("{flag} {value} applies to a run id, but {source} is a checkpoint path",
     "drop {flag}, or give the run id instead of the path (`vlhub runs`)"),
    ("{flag} {value} 只适用于运行 ID，而 {source} 是检查点路径", "请去掉 {flag}，或改为给出运行 ID（`vlhub runs`）"))
messages.register(
    "convert.no_best",
    ("run {run} has no best checkpoint marked (no validation ran, or its checkpoint is gone)",
     "use {flag} last, or train with validation (--val-every N, see docs/training.md)"),
    ("运行 {run} 没有标记最佳检查点（未进行验证，或该检查点已不存在）", "请使用 {flag} `last`，或开启训练中验证（`--val-every N`，见 docs/training.md）"))
messages.register(
    "convert.no_such_iter",
    ("run {run} has no complete checkpoint at iteration {iter} (complete: {found})",
     "pick one of them with {flag} N, or {flag} last"),
    ("运行 {run} 在第 {iter} 步没有完整的检查点（完整的：{found}）", "请用 {flag} N 选择其中之一，或用 {flag} `last`"))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete JSON object line of ``path`` (``[]`` when it does not exist); other lines are skipped."""
    if not Path(path).is_file():
        return []
    out = []
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            out.append(row)
    return out


def split_records(rows: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(training, validation)`` records of ``metrics.jsonl`` rows, each by iteration, the last of an iteration
    kept (a resumed run logs re-run iterations again)."""
    train: dict[int, dict[str, Any]] = {}
    val: dict[int, dict[str, Any]] = {}
    for row in rows:
        step = row.get("iter")
        if not isinstance(step, int) or isinstance(step, bool):
            continue
        (val if row.get("split") == VAL else train)[step] = row
    return [train[k] for k in sorted(train)], [val[k] for k in sorted(val)]


def read_metrics(run_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(training, validation)`` records of a run folder's ``metrics.jsonl`` (:func:`split_records`)."""
    return split_records(read_jsonl(Path(run_dir) / METRICS))


def is_better(metric: str, value: float, than: float | None) -> bool:
    """Whether ``value`` of ``metric`` (a key of :data:`BEST_METRICS`) beats ``than`` (``None``: nothing yet)."""
    if than is None:
        return True
    return value < than if BEST_METRICS[metric] == "min" else value > than


def read_best(run_dir: Path) -> dict[str, Any] | None:
    """The run's best-checkpoint marker (:data:`BEST_FILE`) with ``path`` (the checkpoint's absolute path) added,
    or ``None`` when there is none, it is damaged, or its checkpoint is gone."""
    run_dir = Path(run_dir)
    try:
        data = read_json(run_dir / BEST_FILE, None, expect=dict)
    except BadInput:
        return None
    if not data or not isinstance(data.get("checkpoint"), str) or not isinstance(data.get("iter"), int):
        return None
    path = (run_dir / data["checkpoint"]).resolve()
    if not path.exists():
        return None
    return {**data, "path": str(path)}


def parse_choice(value: str | int, flag: str = "--checkpoint") -> str | int:
    """``--checkpoint``'s value as :data:`BEST`, :data:`LAST` or an iteration (``40``, ``iter_40``, ``iter_40.pth``).

    Raises:
        BadInput: anything else (the accepted forms are named).
    """
    text = str(value).strip().lower()
    if text in (BEST, LAST):
        return text
    match = _ITER.match(text)
    if not match:
        raise BadInput("convert.bad_checkpoint", flag=flag, value=str(value))
    return int(match.group(1))


def choose_checkpoint(run_id: str, run_dir: Path, complete: Sequence[tuple[int, Path]], choice: str | int | None,
                      flag: str = "--checkpoint") -> tuple[Path | None, dict[str, Any]]:
    """The checkpoint of a run a conversion takes, and why.

    Args:
        run_id: the run's id (for messages).
        run_dir: its folder (its :data:`BEST_FILE` is read).
        complete: ``(iteration, path)`` of the run's complete checkpoints, oldest first.
        choice: :func:`parse_choice`'s value, or ``None``: the best checkpoint when the run marked one,
            else the last.
        flag: the flag named in messages.
    Returns:
        ``(path, why)``: ``path`` is ``None`` for "the last" (the converter finds it: mmengine's
        ``last_checkpoint``); ``why`` is ``{"chosen": "best" | "last" | "iter", ...}`` plus, for the best,
        ``metric``, ``value`` and ``iter`` (what the provenance records).
    Raises:
        BadInput: ``choice`` is an iteration without a complete checkpoint (the complete ones are named);
            ``best`` was asked for and the run marked none (the fix says how to get one).
    """
    if choice in (None, BEST):
        best = read_best(run_dir)
        if best is not None and any(step == best["iter"] for step, _ in complete):
            return Path(best["path"]), {"chosen": BEST, "metric": best.get("metric"), "value": best.get("value"),
                                        "iter": best["iter"]}
        if choice == BEST:
            raise BadInput("convert.no_best", run=run_id, flag=flag)
        return None, {"chosen": LAST}
    if choice == LAST:
        return None, {"chosen": LAST}
    for step, path in complete:
        if step == choice:
            return Path(path), {"chosen": "iter", "iter": step}
    raise BadInput("convert.no_such_iter", run=run_id, iter=choice, flag=flag,
                   found=", ".join(str(s) for s, _ in complete) or "none")
