"""A training run folder's files, and reading them: metrics, samples, per-rank logs, the outcome.

Layout (all under the run folder)::

    run.json          state (core/runs.py)          config.py     the generated xtuner config
    code/             the model class module         train.log     console of `xtuner train` (all ranks)
    metrics.jsonl     one record per Iter(train)     samples.jsonl sample outputs of the evaluation hook
    ranks/            torchrun's per-rank logs       work/         xtuner's work dir (iter_N.pth, ...)
    best_checkpoint.json  the best checkpoint by the validation metric   tensorboard/  TensorBoard event files

``metrics.jsonl`` also holds one validation record per validation, and ``best_checkpoint.json`` is
written by the validation hook: both in the trainer-neutral format of :mod:`vlhub.core.train_metrics`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vlhub.core import train_metrics
from vlhub.core.fsutil import atomic_write_text

from . import distributed
from .checkpoints import list_checkpoints
from .xtuner_log import parse_file, tail

CONFIG = "config.py"
CODE = "code"
LOG = "train.log"
METRICS = "metrics.jsonl"
SAMPLES = "samples.jsonl"
RANKS = "ranks"
WORK = "work"


def append_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    """Append records, one JSON object per line (readers skip a torn last line)."""
    if records:
        with open(path, "a", encoding="utf-8") as handle:
            handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete JSON line of ``path``."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def rebuild_records(run_dir: Path) -> dict[str, Any]:
    """Rewrite ``metrics.jsonl`` and ``samples.jsonl`` from the whole log (when no supervisor follows it);
    returns ``run.json``'s ``progress`` as the log gives it (iteration, total, saves, error)."""
    parser = parse_file(Path(run_dir) / LOG)
    metrics, samples = parser.take()
    for name, records in ((METRICS, metrics), (SAMPLES, samples)):
        atomic_write_text(Path(run_dir) / name, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return parser.summary()


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """Training metrics by iteration; after a resume the re-run iterations replace the first ones
    (:func:`vlhub.core.train_metrics.read_metrics`)."""
    return train_metrics.read_metrics(run_dir)[0]


def read_validation(run_dir: Path) -> list[dict[str, Any]]:
    """Validation records by iteration (``val_loss``, ``val_acc``, ...: :mod:`vlhub.core.train_metrics`)."""
    return train_metrics.read_metrics(run_dir)[1]


def read_samples(run_dir: Path) -> list[dict[str, Any]]:
    """Sample outputs of the evaluation hook, in the order they were logged."""
    return read_jsonl(Path(run_dir) / SAMPLES)


def rank_logs(run_dir: Path) -> list[dict[str, Any]]:
    """torchrun's per-rank files of the latest launch: ``{"rank", "stdout", "stderr", "error"}``
    (:func:`.distributed.rank_logs`)."""
    return distributed.rank_logs(Path(run_dir) / RANKS)


def rank_errors(run_dir: Path) -> list[str]:
    """The error of each rank that failed, the first to fail first (:func:`.distributed.rank_errors`)."""
    return distributed.rank_errors(Path(run_dir) / RANKS, Path(run_dir) / LOG)


def outcome(run_dir: Path, stopping: bool) -> dict[str, Any]:
    """How an ended run ended, judged from its log and files (``xtuner train`` exits 0 either way)."""
    run_dir = Path(run_dir)
    parser = parse_file(run_dir / LOG)
    checkpoints = list_checkpoints(run_dir / WORK)
    final = parser.finished and any(c.complete and c.step == parser.total for c in checkpoints)
    result: dict[str, Any] = {"progress": parser.summary(),
                              "checkpoints": [c.step for c in checkpoints if c.complete]}
    if stopping:
        result["status"] = "stopped"
    elif final:
        result["status"] = "finished"
    else:
        errors = rank_errors(run_dir)
        result["status"] = "failed"
        result["error"] = (errors[0] if errors else parser.error
                           or "the training ended without saving its final checkpoint; see the log tail")
        result["rank_errors"] = errors
        if errors:  # not torchrun's own ChildFailedError, which the console log ends with
            result["progress"]["error"] = errors[0]
        result["log_tail"] = tail(run_dir / LOG)
    return result
