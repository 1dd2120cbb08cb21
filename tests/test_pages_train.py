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
from vlhub.core import data, train
from vlhub.core.runs import list_runs, load_run
from vlhub.streamlit_app import jobs
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
    fields = {w.key for kind in ("text_input", "selectbox", "checkbox", "text_area") for w in getattr(at, kind)}
    assert {f"train.opt.xtuner.{o.name}" for o in train.options("xtuner")} <= fields  # every trainer setting is a field
    labels = {w.label for w in at.text_input} | {w.label for w in at.selectbox}
    assert ({"method", "lr", "deepspeed", "launch command"} if lang == "en" else {"微调方式", "学习率", "启动命令"}) <= labels


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


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_bad_setting_is_one_line_in_the_pages_language(lang: str, inputs: tuple[Path, Path]) -> None:
    at = page(lang)
    fill(at, *inputs, lr="fast")
    button(at, "Check (dry run)" if lang == "en" else "检查（试运行）").click().run()
    job = settle(at, "train.plan")
    assert job.status == "failed"
    assert [e.value for e in at.error] == (["“lr” 'fast' is not a valid number. Fix: give “lr” a number"]
                                           if lang == "en" else
                                           ["“学习率” 'fast' is not a valid number。解决办法：give “学习率” a number"])
    assert not at.exception  # never a traceback
    assert list_runs("train") == []


def test_a_refused_start_leaves_no_run_and_keeps_the_form_open(inputs: tuple[Path, Path]) -> None:
    """No GPU here and no launch_command: the trainer refuses to start. A double click is one job."""
    at = page()
    fill(at, *inputs, batch_size="1")
    start = button(at, "Start training")
    start.click().run()
    assert button(at, "Start training").disabled  # while its job runs
    assert any("is already running — following it" in c.value for c in at.caption)
    start.click().run()  # the second click of a double click, sent before the page showed the first one's job
    job = settle(at, "train.plan")
    assert job.status == "failed" and len(jobs.recent("train.plan")) == 1
    assert list_runs("train") == []  # no ghost "planned" run
    assert "gpus" in at.error[0].value and "Fix:" in at.error[0].value
    new_run = next(e for e in at.expander if e.label == "New run")
    assert new_run.proto.expanded and new_run.error  # the form stays open, the error inside it
    assert at.text_input(key="train.opt.xtuner.batch_size").value == "1"  # and filled in
    assert "No training run yet." in [i.value for i in at.info]


def test_start_follow_stop_resume_and_reload(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    fake = tmp_path / "fake_xtuner.py"
    fake.write_text(FAKE_XTUNER.replace("time.sleep(1.0)", "time.sleep(2.0)"))  # time to stop it on a busy machine
    at = page()
    fill(at, *inputs, batch_size="1", grad_accum="1", save_steps="2",
         launch_command=f"{sys.executable} {fake} {{config}} {{work_dir}}")
    assert "foodieqa: 17 records (train 15, val 2), 9 images" in [c.value for c in at.caption]  # before planning
    start = button(at, "Start training")
    start.click().run()
    start.click().run()  # a double click starts one run
    job = settle(at, "train.plan")
    assert job.status == "done", job.error
    assert len(jobs.recent("train.plan")) == 1 and len(list_runs("train")) == 1
    run = load_run(job.result["run_id"])
    assert run.status == "running" and at.query_params["run"] == run.id
    assert {m.label: m.value for m in at.metric}["samples"] == "15"  # the dataset as xtuner sees it

    wait(lambda: len(read_metrics(run.dir)) >= 3, 60, "iteration 3")
    at.run()
    text = " ".join(p.proto.text for p in at.get("progress"))
    assert f"/ {TOTAL}" in text and "ETA 0:00:0" in text
    assert len(at.get("vega_lite_chart")) == 3  # loss, lr, GPU memory
    assert "Iter(train)" in at.code[-1].value  # the log tail
    assert {m.label for m in at.metric} >= {"elapsed", "speed", "smoothed loss"}
    assert {m.label: m.value for m in at.metric}["speed"].endswith(("it/s", "s/it"))
    stop = button(at, "Stop")
    stop.click().run()
    if any(b.label == "Stop" for b in at.button):  # the run is still stopping: its button is disabled
        assert button(at, "Stop").disabled
    stop.click().run()  # a double click: one stop job, never "run ... is stopped, not running"
    settle(at, "train.stop")
    assert load_run(run.id).status == "stopped"
    assert len(jobs.recent("train.stop")) == 1 and not at.error, [e.value for e in at.error]
    assert "Status:** stopped" in " ".join(m.value for m in at.markdown)

    resume = button(at, "Resume from the last checkpoint")
    resume.click().run()
    resume.click().run()
    settle(at, "train.resume")
    assert len(jobs.recent("train.resume")) == 1
    at.run()
    assert any("the last resume started from checkpoint iter_" in c.value for c in at.caption)
    wait(lambda: load_run(run.id).data.get("status") == "finished", 90, "the resumed run to finish")

    reloaded = page(run_id=run.id)  # a new session: what a reload or a restarted launcher shows
    assert "Status:** finished" in " ".join(m.value for m in reloaded.markdown)
    assert f"iteration {TOTAL} / {TOTAL}" in " ".join(p.proto.text for p in reloaded.get("progress"))
    assert len(reloaded.get("vega_lite_chart")) == 3
    assert "A red bowl." in " ".join(c.value for c in reloaded.code)  # the sample output
    checkpoints = next(d.value for d in reloaded.dataframe if "step" in d.value.columns)
    assert list(checkpoints["step"])[-1] == TOTAL
