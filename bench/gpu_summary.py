"""Summary of a bench/gpu_e2e.sh run: python bench/gpu_summary.py WORK RUN_ID [STEP TIME ...] -- [FAILURE ...].

Reads the files the script left in WORK and vlhub's run folder; prints a text summary and
writes summary.json into $OUT. Exits 1 when something the proof needs is missing.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def load(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def main() -> int:
    work, run_id, rest = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    cut = rest.index("--") if "--" in rest else len(rest)
    times, failed = rest[:cut], [f for f in rest[cut + 1:] if f]
    run_dir = Path(os.environ["VLHUB_HOME"]) / "runs" / run_id
    run = load(work / "run.json") or load(run_dir / "run.json")
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()
               if line.strip()] if (run_dir / "samples.jsonl").exists() else []
    plan = load(work / "train.json")
    converted = load(work / "convert.json")
    chat = load(work / "chat.json")
    losses = [(m["iter"], m["loss"]) for m in metrics if m.get("loss") is not None]
    answers = [t["text"] for t in chat.get("turns", []) if t.get("role") == "assistant"]
    checkpoints = sorted(p.name for p in (run_dir / "work").glob("iter_*.pth"))
    verified = converted.get("verified", {})
    summary = {
        "versions": (work / "versions.txt").read_text().splitlines() if (work / "versions.txt").exists() else [],
        "timings": dict(zip(times[0::2], times[1::2])) if all(" " not in t for t in times) else times,
        "dataset": {k: plan.get("dataset", {}).get(k) for k in ("samples", "tokens", "iterations")},
        "command": plan.get("command"),
        "run": {"id": run_id, "status": run.get("status"), "resumes": run.get("resumes"),
                "resumed_from": run.get("resumed_from"), "progress": run.get("progress"),
                "complete_checkpoints": run.get("checkpoints"), "checkpoint_folders": checkpoints},
        "loss": {"first": losses[0] if losses else None, "last": losses[-1] if losses else None,
                 "points": len(losses), "max_memory_mb": max((m.get("memory") or 0 for m in metrics), default=None)},
        "sample_outputs": len(samples),
        "convert": {"out": converted.get("out"), "verified": verified},
        "chat": {"backend": chat.get("backend"), "answers": answers},
        "failed": failed,
    }
    if run.get("status") != "finished":
        failed.append(f"run status {run.get('status')}")
    if not (losses and losses[-1][1] < losses[0][1]):
        failed.append("the loss did not fall")
    if not run.get("resumes"):
        failed.append("the run was not resumed")
    if not verified.get("ok"):
        failed.append("conversion not verified")
    if len(answers) != 2 or not all(a.strip() for a in answers):
        failed.append(f"expected 2 non-empty chat answers, got {answers!r}")
    Path(os.environ.get("OUT", work), "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    print("=" * 30, "SUMMARY", "=" * 30)
    for line in summary["versions"]:
        print(line)
    print("timings:", ", ".join(times))
    print(f"dataset: {summary['dataset']}")
    print(f"run {run_id}: {run.get('status')}, resumes {run.get('resumes')} from {run.get('resumed_from')}")
    print(f"loss: first {summary['loss']['first']} last {summary['loss']['last']} ({len(losses)} points), "
          f"max memory {summary['loss']['max_memory_mb']} MB; sample outputs logged: {len(samples)}")
    print(f"checkpoints: complete {run.get('checkpoints')}, folders {checkpoints}")
    print(f"convert: {converted.get('out')} verified={json.dumps(verified, ensure_ascii=False)[:600]}")
    for i, answer in enumerate(answers, 1):
        print(f"chat answer {i}: {answer!r}")
    print("RESULT:", "ALL STEPS SUCCEEDED" if not failed else "FAILED: " + "; ".join(failed))
    summary["failed"] = failed
    Path(os.environ.get("OUT", work), "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
