"""The Home page's stepper (AppTest): each stage's status for the selected run, read from disk, and what to do next."""
from __future__ import annotations

from pathlib import Path

import psutil
import pytest
from streamlit.testing.v1 import AppTest

from conftest import ROOT
from fixtures.datasets import make_foodieqa
from vlhub.core import data, runs
from vlhub.core.fsutil import atomic_write_json
from vlhub.streamlit_app.pipeline import models_dir

PAGE = str(ROOT / "streamlit_app" / "views" / "home.py")


def steps(lang: str = "en") -> tuple[list[str], str]:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["lang"] = lang
    at.run()
    assert not at.exception, at.exception
    md = [m.value for m in at.markdown]
    states = [md[i + 1] for i, v in enumerate(md) if v.startswith("**") and v[2].isdigit()]
    return [s.split("] ", 1)[1] for s in states], at.info[0].value  # without the icon


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_no_run_yet_points_at_the_data_page(lang: str) -> None:
    states, nxt = steps(lang)
    assert states == (["to do"] * 5 if lang == "en" else ["待完成"] * 5)
    assert nxt == ("Next: prepare a dataset on the Data page." if lang == "en" else "下一步：在“数据”页准备数据集。")


def test_a_finished_converted_and_published_run(tmp_path: Path) -> None:
    prepared = tmp_path / "prepared"
    data.prepare("foodieqa", make_foodieqa(tmp_path / "src"), prepared)
    alive = psutil.Process()  # a live process stands for the training (refresh checks it)
    run = runs.new_run("train", data=str(prepared)).update(status="running", progress={"iteration": 3, "total": 8},
                                                           **runs.process_record(alive, "pid"))
    states, nxt = steps()
    assert states[:3] == ["done", "running", "to do"]
    assert nxt == "Next: training is running: follow it live on the Train page."

    run.update(status="finished", progress={"iteration": 8, "total": 8})
    model = models_dir() / f"{run.id}-iter_8"
    atomic_write_json(model / "vlhub_provenance.json", {"run": {"id": run.id, "dir": str(run.dir)}})
    states, nxt = steps()
    assert states == ["done", "done", "done", "ready", "to do"]
    assert nxt.startswith("Next: try the model on the Chat page")

    # the Publish page's jobs record the folder in their arguments; a preflight sends nothing
    job = {"action": "publish", "spec": {"folder": str(model), "targets": ["git:http://x/o/n"], "options": {}}}
    runs.new_run("publish", **job, result={}).update(status="done", spec={**job["spec"], "dry_run": True})
    states, nxt = steps()
    assert states[-1] == "to do"
    runs.new_run("publish", **job, result={}).update(status="done", spec={**job["spec"], "dry_run": False})
    states, nxt = steps()
    assert states[-1] == "done" and nxt.startswith("Next: everything is done")

    runs.new_run("publish", folder=str(model.resolve()), targets=["git:http://x/o/n"]).update(status="failed")
    states, _ = steps()  # `vlhub publish` records its own run: the newest one tells
    assert states[-1] == "failed"


def test_running_jobs_and_runs_refresh_the_home_page() -> None:
    """While a run or a job is active the stepper polls by itself; the jobs that run are listed as running."""
    alive = psutil.Process()  # a live process stands for the job's
    runs.new_run("convert", action="convert", label="Converting iter_8.pth", spec={}) \
        .update(status="running", **runs.process_record(alive, "pid"))
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    assert any(m.value.startswith("- ⏳ running · Converting iter_8.pth") for m in at.markdown)
