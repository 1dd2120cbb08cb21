"""A ``swift`` run folder's files, and reading what ms-swift writes into them.

Layout (all under the run folder)::

    run.json          state (core/runs.py)                swift_args.json  the ``swift sft`` arguments
    data/train.jsonl  the records in ms-swift's format     train.log        console of ``swift sft`` (all ranks)
    metrics.jsonl     one training record per logged step  ranks/           torchrun's per-rank logs
    work/             ms-swift's ``--output_dir``: ``logging.jsonl``, ``checkpoint-N/`` (adapter or full
                      weights + ``trainer_state.json``), ``args.json``

``metrics.jsonl`` uses the trainer-neutral format of :mod:`vlhub.core.train_metrics`; its records come from
``work/logging.jsonl``, which ms-swift's ``ProgressCallbackNew.on_log`` (``swift/trainers/patcher.py``)
appends one JSON object to per logging step (the trainer's ``logs`` plus ``global_step/max_steps``,
``remaining_time``, ``train_speed(s/it)``, ``memory(GiB)``), and to which ``SwiftSft.train`` appends a
last object with ``last_model_checkpoint`` when training returns (``swift/pipelines/train/sft.py``).

A checkpoint ``work/checkpoint-N/`` is complete once transformers' ``Trainer._save_checkpoint`` has
written its ``trainer_state.json``, the last file of a save; one cut short by a stop is listed but never
resumed from or converted.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from vlhub.core.fsutil import atomic_write_text
from vlhub.core.types import Checkpoint

from . import distributed

ARGS = "swift_args.json"
DATA = "data"
LOG = "train.log"
METRICS = "metrics.jsonl"
RANKS = "ranks"
WORK = "work"
LOGGING = "logging.jsonl"
STATE = "trainer_state.json"
NAME = re.compile(r"^checkpoint-(\d+)$")
STEP = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
#: A Python exception line of the console log.
EXCEPTION = distributed.EXCEPTION


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def list_checkpoints(work: Path) -> list[Checkpoint]:
    """Every ``checkpoint-N/`` of ms-swift's output folder, oldest first (``kind`` ``deepspeed`` when it holds
    DeepSpeed's ``global_stepN/`` states, else ``folder``)."""
    work = Path(work)
    if not work.is_dir():
        return []
    found = []
    for path in work.iterdir():
        match = NAME.match(path.name)
        if not match or not path.is_dir():
            continue
        kind = "deepspeed" if any(path.glob("global_step*")) else "folder"
        found.append(Checkpoint(int(match.group(1)), path.resolve(), kind, (path / STATE).is_file(), _size(path)))
    return sorted(found, key=lambda c: c.step)


def last_complete(work: Path) -> Checkpoint | None:
    """The newest complete checkpoint, if any."""
    done = [c for c in list_checkpoints(work) if c.complete]
    return done[-1] if done else None


def _mb(gib: Any) -> float | None:
    return round(float(gib) * 1024, 1) if isinstance(gib, (int, float)) else None


def to_metrics(logs: dict[str, Any]) -> dict[str, Any] | None:
    """One ``logging.jsonl`` object as a :mod:`vlhub.core.train_metrics` training record, or None (the end-of-
    training summary, evaluation lines, the final message).

    Returns:
        ``{"iter", "total", "loss", "lr", "grad_norm", "epoch", "time" (s/step), "eta", "memory" (MiB),
        "token_acc" (when logged), "logged"}``.
    """
    step = STEP.match(str(logs.get("global_step/max_steps", "")))
    if not step or "loss" not in logs:
        return None
    record: dict[str, Any] = {"iter": int(step.group(1)), "total": int(step.group(2)), "loss": logs["loss"],
                              "lr": logs.get("learning_rate"), "grad_norm": logs.get("grad_norm"),
                              "epoch": logs.get("epoch"), "time": logs.get("train_speed(s/it)"),
                              "eta": logs.get("remaining_time"), "memory": _mb(logs.get("memory(GiB)"))}
    if "token_acc" in logs:
        record["token_acc"] = logs["token_acc"]
    record["logged"] = time.strftime("%m/%d %H:%M:%S")
    return {k: v for k, v in record.items() if v is not None}


class LoggingReader:
    """Reads the objects appended to ``work/logging.jsonl`` since the last call (a torn last line waits)."""

    def __init__(self, run_dir: Path, offset: int = 0) -> None:
        self.path = Path(run_dir) / WORK / LOGGING
        self.offset = offset
        self.partial = b""

    def read(self) -> list[dict[str, Any]]:
        """The complete JSON objects appended since the last call."""
        if not self.path.is_file():
            return []
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        self.offset += len(chunk)
        lines = (self.partial + chunk).split(b"\n")
        self.partial = lines.pop()
        out = []
        for line in lines:
            try:
                value = json.loads(line.decode("utf-8", errors="replace"))
            except ValueError:
                continue
            if isinstance(value, dict):
                out.append(value)
        return out


def read_logging(run_dir: Path) -> list[dict[str, Any]]:
    """Every object of ``work/logging.jsonl`` (``[]`` without it)."""
    return LoggingReader(run_dir).read()


def rebuild_metrics(run_dir: Path) -> dict[str, Any]:
    """Rewrite ``metrics.jsonl`` from the whole ``logging.jsonl`` (when no supervisor follows the run);
    returns ``run.json``'s ``progress`` (:func:`progress`)."""
    records = [m for m in map(to_metrics, read_logging(run_dir)) if m]
    atomic_write_text(Path(run_dir) / METRICS, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return progress(records)


def progress(records: list[dict[str, Any]]) -> dict[str, Any]:
    """``run.json``'s ``progress`` from the newest training record: ``iter``, ``total``, ``loss``, ``eta``."""
    if not records:
        return {}
    last = records[-1]
    return {"iter": last["iter"], "total": last["total"], "loss": last.get("loss"), "eta": last.get("eta")}


def tail(path: Path, lines: int = 40) -> list[str]:
    """The last ``lines`` lines of a text file (``[]`` when it does not exist)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - 256 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]


def last_error(path: Path) -> str | None:
    """The last exception line of the console log (``ValueError: ...``), or None."""
    found = [line.strip() for line in tail(path, 400) if EXCEPTION.match(line.strip())]
    return found[-1] if found else None


def outcome(run_dir: Path, stopping: bool, exit_code: int | None = None) -> dict[str, Any]:
    """How an ended run ended, from its files: ``stopped`` (a stop was asked), ``finished`` (ms-swift wrote its
    final message and the last step's checkpoint is complete), else ``failed`` with the first rank's error or
    the console's last exception.

    Returns:
        ``status``, ``progress``, ``checkpoints`` (complete steps), and for a failure ``error``, ``rank_errors``
        and ``log_tail``.
    """
    run_dir = Path(run_dir)
    logs = read_logging(run_dir)
    records = [m for m in map(to_metrics, logs) if m]
    checkpoints = list_checkpoints(run_dir / WORK)
    final = next((entry for entry in reversed(logs) if "last_model_checkpoint" in entry), None)
    steps = final.get("global_step") if final else None
    done = final is not None and exit_code in (0, None) and any(c.complete and c.step == steps for c in checkpoints)
    result: dict[str, Any] = {"progress": progress(records), "checkpoints": [c.step for c in checkpoints if c.complete]}
    if stopping:
        result["status"] = "stopped"
    elif done:
        result["status"] = "finished"
    else:
        errors = distributed.rank_errors(run_dir / RANKS, run_dir / LOG)
        result["status"] = "failed"
        result["error"] = (errors[0] if errors else last_error(run_dir / LOG)
                           or "the training ended without its final checkpoint; see the log tail")
        result["rank_errors"] = errors
        result["log_tail"] = tail(run_dir / LOG)
    return result
