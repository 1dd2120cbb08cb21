"""The Train page (AppTest): without the train env it says how to get one; with it a run is planned, started,
followed live, stopped and resumed from the page, and a reload shows the same progress and charts.

As in test_train_lifecycle, ``xtuner train`` (which needs a GPU) is replaced through the
documented ``launch_command`` setting by a script that writes what xtuner writes.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from conftest import ROOT, train_python
from fixtures.datasets import make_foodieqa
from test_pages_data import settle
from fixtures.fake_trainer import FAKE_XTUNER, TOTAL
from vlhub.core import data
from vlhub.core.runs import list_runs, load_run
from vlhub.plugins.devtools.tiny_model import make_tiny_model
from vlhub.plugins.trainers.run_files import read_metrics

PAGE = str(ROOT / "streamlit_app" / "views" / "train.py")


def page(lang: str = "en", run_id: str | None = None) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["lang"] = lang
    if run_id:
        at.query_params["run"] = run_id
    at.run()
    assert not at.exception, at.exception
    return at


def button(at: AppTest, label: str) -> Any:
    return next(b for b in at.button if b.label == label)


def wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_without_the_train_env_it_says_how_to_install(lang: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("VLHUB_ENVS_DIR", str(tmp_path / "no-envs"))
    at = page(lang)
    assert at.title[0].value == ("Fine-tune" if lang == "en" else "微调训练")
    assert "train" in at.warning[0].value and ("missing" in at.warning[0].value or "缺少" in at.warning[0].value)
    assert at.code[0].value.startswith("vlhub env create train")
    assert button(at, "Start training" if lang == "en" else "开始训练").disabled
    assert {"method", "lr", "deepspeed", "launch_command"} <= {w.label.replace(" ", "_") for w in at.text_input} | \
        {w.label.replace(" ", "_") for w in at.selectbox}  # every trainer setting is a field


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    train_python()
    model = make_tiny_model(tmp_path / "tiny")
    data.prepare("foodieqa", make_foodieqa(tmp_path / "src"), tmp_path / "prepared")
    return model, tmp_path / "prepared"


def fill(at: AppTest, model: Path, prepared: Path, **options: str) -> None:
    at.text_input(key="train.model").set_value(str(model))
    at.text_input(key="train.data").set_value(str(prepared)).run()
    for name, value in options.items():
        at.text_input(key=f"train.opt.xtuner.{name}").set_value(value)


def test_bad_setting_is_one_line_from_the_trainer(inputs: tuple[Path, Path]) -> None:
    at = page()
    fill(at, *inputs, lr="fast")
    button(at, "Check (dry run)").click().run()
    job = settle(at, "train.plan")
    assert job.status == "failed"
    assert [e.value for e in at.error] == ["--lr 'fast' is not a valid number. Fix: give --lr a number"]
    assert list_runs("train") == []


def test_start_follow_stop_resume_and_reload(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    fake = tmp_path / "fake_xtuner.py"
    fake.write_text(FAKE_XTUNER)
    at = page()
    fill(at, *inputs, batch_size="1", grad_accum="1", save_steps="2",
         launch_command=f"{sys.executable} {fake} {{config}} {{work_dir}}")
    assert "foodieqa: 17 records (train 15, val 2), 9 images" in [c.value for c in at.caption]  # before planning
    button(at, "Start training").click().run()
    job = settle(at, "train.plan")
    assert job.status == "done", job.error
    run = load_run(job.result["run_id"])
    assert run.status == "running" and at.query_params["run"] == run.id
    assert {m.label: m.value for m in at.metric}["samples"] == "15"  # the dataset as xtuner sees it

    wait(lambda: len(read_metrics(run.dir)) >= 3, 60, "iteration 3")
    at.run()
    text = " ".join(p.proto.text for p in at.get("progress"))
    assert f"/ {TOTAL}" in text and "ETA 0:00:0" in text
    assert len(at.get("vega_lite_chart")) == 3  # loss, lr, GPU memory
    assert "Iter(train)" in at.code[-1].value  # the log tail
    button(at, "Stop").click().run()
    settle(at, "train.stop")
    assert load_run(run.id).status == "stopped"
    assert "Status:** stopped" in " ".join(m.value for m in at.markdown)

    button(at, "Resume from the last checkpoint").click().run()
    settle(at, "train.resume")
    wait(lambda: load_run(run.id).data.get("status") == "finished", 60, "the resumed run to finish")

    reloaded = page(run_id=run.id)  # a new session: what a reload or a restarted launcher shows
    assert "Status:** finished" in " ".join(m.value for m in reloaded.markdown)
    assert f"iteration {TOTAL} / {TOTAL}" in " ".join(p.proto.text for p in reloaded.get("progress"))
    assert len(reloaded.get("vega_lite_chart")) == 3
    assert "A red bowl." in " ".join(c.value for c in reloaded.code)  # the sample output
    assert [row for row in reloaded.dataframe[0].value["step"]][-1] == TOTAL
