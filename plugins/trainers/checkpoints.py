"""Checkpoints in a run's work folder: ``iter_N.pth`` files or DeepSpeed ``iter_N.pth/`` folders.

A checkpoint is complete when mmengine has recorded it (or a later one) in
``work/last_checkpoint`` (written after the save returns) and, for a DeepSpeed folder,
when it holds the model states file. A save cut short by a stop or a crash is listed
but not complete, and never resumed from.
"""
from __future__ import annotations

import re
from pathlib import Path

from vlhub.core.types import Checkpoint

NAME = re.compile(r"^iter_(\d+)\.pth$")


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _recorded_step(work: Path) -> int:
    """The step of the checkpoint mmengine last finished saving (0 when none)."""
    try:
        match = NAME.match(Path((work / "last_checkpoint").read_text().strip()).name)
    except OSError:
        return 0
    return int(match.group(1)) if match else 0


def list_checkpoints(work: Path) -> list[Checkpoint]:
    """Every ``iter_N.pth`` in ``work``, oldest first."""
    if not work.is_dir():
        return []
    recorded = _recorded_step(work)
    found = []
    for path in work.iterdir():
        match = NAME.match(path.name)
        if not match:
            continue
        step = int(match.group(1))
        kind = "deepspeed" if path.is_dir() else "file"
        complete = step <= recorded and (kind == "file" or any(path.glob("*model_states.pt")))
        found.append(Checkpoint(step, path.resolve(), kind, complete, _size(path)))
    return sorted(found, key=lambda c: c.step)


def last_complete(work: Path) -> Checkpoint | None:
    """The newest complete checkpoint, if any."""
    done = [c for c in list_checkpoints(work) if c.complete]
    return done[-1] if done else None
