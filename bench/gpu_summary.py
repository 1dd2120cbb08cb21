"""Summary of a bench/gpu_e2e.sh run: python bench/gpu_summary.py WORK RUN_ID [STEP TIME ...] -- [FAILURE ...].

Several GPUs (``gpu_e2e.sh --gpus N``): python bench/gpu_summary.py --multi WORK GPUS RUN_ID... -- [FAILURE ...]
(one run per DeepSpeed stage, ZeRO-2 then ZeRO-3; prints the command and variables vlhub ran, each
rank's first lines from RUN/ranks, loss first/last, and each conversion's verification).

Reads the files the script left in WORK and vlhub's run folder; prints a text summary and
writes summary.json into $OUT. Exits 1 when something the proof needs is missing.
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path


def load(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


START = re.compile(r"(?i)rank|world.?size|distributed|nccl|initializ")


def rank_start_lines(run_dir: Path, lines: int = 3) -> dict[int, list[str]]:
    """Each rank's first telling lines in torchrun's per-rank logs (RUN/ranks/*/attempt_*/RANK/std*.log)."""
    out: dict[int, list[str]] = {}
    for folder in sorted((run_dir / "ranks").glob("*/attempt_*/*")):
        if not folder.is_dir() or not folder.name.isdigit():
            continue
        text = []
        for name in ("stdout.log", "stderr.log"):
            try:
                text += [line.strip() for line in (folder / name).read_text(errors="replace").splitlines() if line.strip()]
            except OSError:
                pass
        picked = [line for line in text if START.search(line)][:lines] or text[:lines]
        out[int(folder.name)] = [line[:300] for line in picked] + [f"({len(text)} lines in {folder})"]
    return out


def multi(args: list[str]) -> int:
    """The --gpus N chain: one run per ZeRO stage, each converted."""
    cut = args.index("--") if "--" in args else len(args)
    work, gpus = Path(args[0]), int(args[1])
    failed = [f for f in args[cut + 1:] if f]
    home = Path(os.environ["VLHUB_HOME"]) / "runs"
    summary: dict = {"gpus": gpus, "versions": (work / "versions.txt").read_text().splitlines()
                     if (work / "versions.txt").exists() else [], "runs": {}}
    print("=" * 30, f"SUMMARY ({gpus} GPUs)", "=" * 30)
    for line in summary["versions"]:
        print(line)
    for zero in ("zero2", "zero3"):
        plan = load(work / f"train-{zero}.json")
        run_id = plan.get("run_id")
        if not run_id:
            failed.append(f"{zero}: no run")
            continue
        run_dir = home / run_id
        shown = load(work / f"run-{zero}.json")
        run = (shown.get("run") if "run" in shown else shown) or load(run_dir / "run.json")
        metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()] \
            if (run_dir / "metrics.jsonl").exists() else []
        losses = [(m["iter"], m["loss"]) for m in metrics if m.get("loss") is not None]
        samples = [x for x in (run_dir / "samples.jsonl").read_text().splitlines() if x.strip()] \
            if (run_dir / "samples.jsonl").exists() else []
        ranks = rank_start_lines(run_dir)
        converted = load(work / f"convert-{zero}.json")
        verified = converted.get("verified", {})
        llm = (verified.get("weights") or {}).get("llm", {}).get("checked") or []
        env = {k: v for k, v in (plan.get("env") or {}).items() if k != "PYTHONPATH"}
        row = {"run": run_id, "status": run.get("status"), "error": run.get("error"),
               "command": plan.get("command"), "env": env, "ranks": ranks,
               "loss": {"first": losses[0] if losses else None, "last": losses[-1] if losses else None,
                        "points": len(losses), "max_memory_mb": max((m.get("memory") or 0 for m in metrics), default=None)},
               "sample_outputs": len(samples),
               "convert": {"out": converted.get("out"), "ok": verified.get("ok"),
                           "llm_checked": [{k: r.get(k) for k in ("tensor", "max_error", "tolerance", "max_delta", "ok")}
                                           for r in llm[:2]],
                           "chat": verified.get("chat")}}
        summary["runs"][zero] = row
        print(f"--- {zero}: run {run_id}: {row['status']}" + (f" ({row['error']})" if row["error"] else ""))
        print("command:", " ".join(f"{k}={v}" for k, v in env.items()), " ".join(plan.get("command") or []))
        for rank, lines in sorted(ranks.items()):
            for line in lines:
                print(f"  rank {rank}: {line}")
        print(f"loss: first {row['loss']['first']} last {row['loss']['last']} ({len(losses)} points), "
              f"max memory {row['loss']['max_memory_mb']} MB; sample outputs logged: {len(samples)}")
        print(f"convert: {converted.get('out')} ok={verified.get('ok')} llm {json.dumps(row['convert']['llm_checked'])}")
        if row["status"] != "finished":
            failed.append(f"{zero}: run {row['status']}")
        if not (losses and losses[-1][1] < losses[0][1]):
            failed.append(f"{zero}: the loss did not fall")
        if len(ranks) != gpus:
            failed.append(f"{zero}: {len(ranks)} per-rank log folders, expected {gpus}")
        if not verified.get("ok"):
            failed.append(f"{zero}: conversion not verified")
    summary["failed"] = failed
    Path(os.environ.get("OUT", work), "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    print("RESULT:", "ALL STEPS SUCCEEDED" if not failed else "FAILED: " + "; ".join(dict.fromkeys(failed)))
    return 1 if failed else 0


def main() -> int:
    if sys.argv[1:2] == ["--multi"]:
        return multi(sys.argv[2:])
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
