"""A training run folder's files, and reading them: metrics, samples, per-rank logs, the outcome.

Layout (all under the run folder)::

    run.json          state (core/runs.py)          config.py     the generated xtuner config
    code/             the model class module         train.log     console of `xtuner train` (all ranks)
    metrics.jsonl     one record per Iter(train)     samples.jsonl sample outputs of the evaluation hook
    ranks/            torchrun's per-rank logs       work/         xtuner's work dir (iter_N.pth, ...)
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from vlhub.core.fsutil import atomic_write_text

from .checkpoints import list_checkpoints
from .xtuner_log import EXCEPTION, parse_file, tail

CONFIG = "config.py"
CODE = "code"
LOG = "train.log"
METRICS = "metrics.jsonl"
SAMPLES = "samples.jsonl"
RANKS = "ranks"
WORK = "work"
RANK_DIR = re.compile(r"attempt_(\d+)/(\d+)$")


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


def rebuild_records(run_dir: Path) -> None:
    """Rewrite ``metrics.jsonl`` and ``samples.jsonl`` from the whole log (when no supervisor follows it)."""
    parser = parse_file(Path(run_dir) / LOG)
    metrics, samples = parser.take()
    for name, records in ((METRICS, metrics), (SAMPLES, samples)):
        atomic_write_text(Path(run_dir) / name, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """Metrics by iteration; after a resume the re-run iterations replace the first ones."""
    by_iter = {r["iter"]: r for r in read_jsonl(Path(run_dir) / METRICS) if "iter" in r}
    return [by_iter[k] for k in sorted(by_iter)]


def read_samples(run_dir: Path) -> list[dict[str, Any]]:
    """Sample outputs of the evaluation hook, in the order they were logged."""
    return read_jsonl(Path(run_dir) / SAMPLES)


def rank_logs(run_dir: Path) -> list[dict[str, Any]]:
    """torchrun's per-rank files of the latest attempt: ``{"rank", "stdout", "stderr", "error"}``."""
    ranks: dict[int, dict[str, Any]] = {}
    for folder in sorted((Path(run_dir) / RANKS).glob("*/attempt_*/*"), key=lambda p: p.stat().st_mtime):
        match = RANK_DIR.search(folder.as_posix())
        if not match or not folder.is_dir():
            continue
        error_file = folder / "error.json"
        ranks[int(match.group(2))] = {"rank": int(match.group(2)), "stdout": str(folder / "stdout.log"),
                                      "stderr": str(folder / "stderr.log"),
                                      "error": _error_json(error_file) if error_file.is_file() else None}
    return [ranks[k] for k in sorted(ranks)]


def _error_json(path: Path) -> str | None:
    try:
        message = json.loads(path.read_text()).get("message")
    except (OSError, ValueError):
        return None
    if isinstance(message, dict):
        message = message.get("message")
    return str(message).strip().splitlines()[-1] if message else None


def rank_errors(run_dir: Path) -> list[str]:
    """The error of each rank that failed: torchrun's error.json, else the last exception in its stderr."""
    errors = []
    for rank in rank_logs(run_dir):
        error = rank["error"]
        if not error:
            found = [line.strip() for line in tail(Path(rank["stderr"]), 200) if EXCEPTION.match(line.strip())]
            error = found[-1] if found else None
        if error:
            errors.append(f"rank {rank['rank']}: {error}")
    return errors


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
        result["log_tail"] = tail(run_dir / LOG)
    return result
