"""Where the selected run stands in data -> train -> convert -> chat -> publish (read from disk only)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vlhub.core import jobs, provenance, runs
from vlhub.core.errors import BadInput
from vlhub.core.home import vlhub_home
from vlhub.core.lifecycle import refresh
from vlhub.core.provenance import PROVENANCE

TRAIN_STATE = {"finished": "done", "running": "running", "starting": "running", "stopping": "running",
               "failed": "failed", "stopped": "stopped", "lost": "failed", "planned": "todo", "created": "todo"}


@dataclass
class Step:
    """One stage of the pipeline: ``done``, ``running``, ``failed``, ``stopped``, ``ready`` or ``todo``."""

    stage: str
    status: str
    detail: str = ""


def models_dir() -> Path:
    """Where the Convert page writes model folders by default."""
    return vlhub_home() / "models"


def latest_model() -> str:
    """The newest converted model folder (from the launcher's convert jobs, then ``models_dir()``)."""
    job = jobs.latest("convert")
    if job is not None and job.status == "done":
        return job.data["result"]["out"]
    found = sorted(models_dir().glob(f"*/{PROVENANCE}"), key=lambda p: p.stat().st_mtime)
    return str(found[-1].parent) if found else ""


def models_of(run: runs.Run) -> list[Path]:
    """Converted folders whose provenance names this run (a damaged provenance names none)."""
    return [p.parent for p in sorted(models_dir().glob(f"*/{PROVENANCE}")) if _run_id(p.parent) == run.id]


def _run_id(folder: Path) -> str:
    """The id of the run a model folder's provenance names (``""`` when none, or when it is damaged)."""
    try:
        ref = provenance.read(folder).run
    except BadInput:
        return ""
    return ref.id if ref else ""


def _published(run: runs.Run) -> tuple[str, list[str]] | None:
    """``(folder, targets)`` a publish run sent (``vlhub publish`` records them itself, a page's job in its
    ``spec``); ``None`` for a preflight."""
    spec = run.data.get("spec") or {}
    if spec.get("dry_run") or run.data.get("dry_run"):
        return None
    folder = run.data.get("folder") or spec.get("folder")
    if not folder:
        return None
    return str(Path(folder).expanduser().resolve()), list(run.data.get("targets") or spec.get("targets") or [])


def _publish_step(models: list[Path]) -> Step:
    folders = {str(m.resolve()) for m in models}
    done = [(r, sent) for r in runs.list_runs("publish") if (sent := _published(r)) and sent[0] in folders]
    if not done:
        return Step("publish", "todo")
    last, (_, targets) = done[0]
    return Step("publish", "done" if last.status == "done" else "failed", ", ".join(targets))


def steps(run: runs.Run | None) -> list[Step]:
    """The five steps for a training run (or for no run yet)."""
    if run is None:
        prepared = jobs.latest("data.prepare")
        data_done = prepared is not None and prepared.status == "done"
        return [Step("data", "done" if data_done else "todo", prepared.data["result"]["out"] if data_done else ""),
                Step("train", "todo"), Step("convert", "todo"), Step("chat", "todo"), Step("publish", "todo")]
    run = refresh(run)
    data_ok = (Path(run.data.get("data", "")) / "prepared.json").is_file()
    progress = run.data.get("progress") or {}
    train_detail = f"{progress.get('iteration', 0)}/{progress.get('total') or '?'}" if progress else run.status
    models = models_of(run)
    return [Step("data", "done" if data_ok else "failed", run.data.get("data", "")),
            Step("train", TRAIN_STATE.get(run.status, "todo"), train_detail),
            Step("convert", "done" if models else "todo", models[-1].name if models else ""),
            Step("chat", "ready" if models else "todo"),
            _publish_step(models)]


def next_action(plan: list[Step]) -> str:
    """The catalogue key of what to do next."""
    by = {s.stage: s.status for s in plan}
    if by["data"] != "done":
        return "next.data"
    if by["train"] in ("todo", "failed", "stopped"):
        return f"next.train_{by['train']}"
    if by["train"] == "running":
        return "next.train_running"
    if by["convert"] != "done":
        return "next.convert"
    return "next.done" if by["publish"] == "done" else "next.chat_publish"
