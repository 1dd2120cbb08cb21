"""The xtuner trainer's validation set-up: where the validation data is, and what a run validates.

The data is the prepared folder's own validation split (:mod:`vlhub.core.prepared.format`):
``val.json`` (LLaVA-style records: the loss) and ``val_mc.json`` (multiple-choice items: the accuracy),
named by ``prepared.json``'s ``files``, or found by name in a folder without a manifest. A training
JSON file given alone has none. How often and on how many items is
:func:`vlhub.core.train_validation.plan`'s choice (or ``--val-every``/``--val-items``); the config then
runs mmengine's validation loop (:mod:`.xtuner_config`) and the worker-side classes of
``train_internvl.py`` score it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from vlhub.core import messages
from vlhub.core.errors import BadInput
from vlhub.core.prepared.format import MANIFEST, load_manifest
from vlhub.core.train_validation import ValidationPlan, plan as plan_validation

from .settings import Settings

messages.register(
    "train.best_needs_mc",
    ("--best-metric val_acc needs multiple-choice items (val_mc.json) in the validation split; {data} has none",
     "use --best-metric val_loss, or prepare the data with a plugin that writes val_mc.json (e.g. foodieqa)"),
    ("--best-metric val_acc 需要验证集中的多选题（val_mc.json），而 {data} 中没有",
     "请改用 --best-metric val_loss，或用会生成 val_mc.json 的数据插件（如 foodieqa）重新准备数据"))


@dataclass(frozen=True)
class ValidationData:
    """A prepared folder's validation files (``None`` when absent) and their sizes."""

    val: Path | None = None
    mc: Path | None = None
    records: int = 0
    mc_items: int = 0
    mean_choices: float = 0.0


def _count(path: Path) -> list:
    try:
        rows = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        raise BadInput(f"--data: {path} cannot be read as JSON ({exc})",
                       "prepare the data again with `vlhub data prepare ... --force`") from None
    return rows if isinstance(rows, list) else []


def find(data: Path) -> ValidationData:
    """The validation split of ``--data`` (a prepared folder, a folder with ``val.json``/``val_mc.json``, or a
    training file, which has none).

    Raises:
        BadInput: a validation file that is not a JSON list (the file and the fix are named).
    """
    data = Path(data).expanduser().resolve()
    if not data.is_dir():
        return ValidationData()
    if (data / MANIFEST).is_file():
        files = load_manifest(data).files
        val, mc = files.get("val"), files.get("val_mc")
    else:
        val, mc = data / "val.json", data / "val_mc.json"
    val = val if val is not None and val.is_file() else None
    mc = mc if mc is not None and mc.is_file() else None
    records = len(_count(val)) if val else 0
    items = [i for i in _count(mc) if isinstance(i, dict) and isinstance(i.get("choices"), list)] if mc else []
    mean = sum(len(i["choices"]) for i in items) / len(items) if items else 0.0
    return ValidationData(val, mc, records, len(items), mean)


def plan(s: Settings, found: ValidationData, iterations: int, data: Path | str = "--data") -> ValidationPlan:
    """What a run with settings ``s`` validates (:func:`vlhub.core.train_validation.plan`).

    Raises:
        BadInput: ``--val-every``/``--val-items`` refused; ``--best-metric val_acc`` without multiple-choice items.
    """
    chosen = plan_validation(iterations, s.batch_size, s.world_size, s.save_steps, found.records if found.val else 0,
                             found.mc_items if found.mc else 0, found.mean_choices, s.val_every, s.val_items)
    if s.best_metric == "val_acc" and chosen.enabled and not chosen.mc_items:
        raise BadInput("train.best_needs_mc", data=str(data))
    return chosen
