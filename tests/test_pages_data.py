"""The Data page (AppTest): bad input is refused, a fixture dataset is prepared in a background job, the report shows."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from conftest import ROOT
from fixtures.datasets import make_foodieqa
from vlhub.streamlit_app import jobs

PAGE = str(ROOT / "streamlit_app" / "views" / "data.py")


def settle(at: AppTest, kind: str, timeout: float = 120) -> jobs.Job:
    """Wait for the newest ``kind`` job to end, then rerun the page (what the page's poll does)."""
    deadline = time.monotonic() + timeout
    job = jobs.latest(kind)
    assert job is not None, f"no {kind} job was started"
    while job.active:
        assert time.monotonic() < deadline, f"{kind} job still running after {timeout} s"
        time.sleep(0.2)
        job = jobs.load(job.id)
    at.run()
    assert not at.exception, at.exception
    return job


def page(lang: str = "en") -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["lang"] = lang
    at.run()
    assert not at.exception
    return at


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_renders_and_refuses_missing_folders(lang: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLHUB_ENVS_DIR", str(tmp_path / "no-envs"))
    at = page(lang)
    assert at.title[0].value == ("Prepare a dataset" if lang == "en" else "准备数据集")
    assert {"foodieqa", "clot", "llava-json"} <= set(at.selectbox(key="data.name").options)
    next(b for b in at.button if b.label == ("Prepare" if lang == "en" else "开始准备")).click().run()
    assert [e.value for e in at.error] == ["Give the source folder and the prepared folder." if lang == "en"
                                           else "请填写源文件夹和数据文件夹。"]
    assert jobs.latest("data.prepare") is None


def test_a_missing_source_fails_with_the_core_message(tmp_path: Path) -> None:
    at = page()
    at.text_input(key="data.source").set_value(str(tmp_path / "nowhere"))
    next(b for b in at.button if b.label == "Prepare").click().run()
    job = settle(at, "data.prepare")
    assert job.status == "failed"
    assert any("does not exist" in e.value and "Fix:" in e.value for e in at.error)
    assert not (tmp_path / "prepared").exists()


def test_prepares_a_fixture_and_shows_report_and_preview(tmp_path: Path) -> None:
    source = make_foodieqa(tmp_path / "src")
    out = tmp_path / "prepared"
    at = page()
    at.selectbox(key="data.name").set_value("foodieqa").run()
    at.text_input(key="data.source").set_value(str(source))
    at.text_input(key="data.out.foodieqa").set_value(str(out))
    at.text_input(key="data.opt.foodieqa.val_fraction").set_value("0.25")
    at.run()
    assert f"vlhub data prepare foodieqa --source {source} --out {out} --opt val_fraction=0.25" in \
        [c.value for c in at.code]  # the command preview
    prepare = next(b for b in at.button if b.label == "Prepare")
    prepare.click().run()
    if jobs.latest("data.prepare").active:
        assert next(b for b in at.button if b.label == "Prepare").disabled  # while its job runs
        assert any("is already running — following it" in c.value for c in at.caption)
    prepare.click().run()  # a double click: the second click finds the button disabled
    job = settle(at, "data.prepare")
    assert job.status == "done", job.error
    assert len(jobs.recent("data.prepare")) == 1 and not at.error
    assert (out / "train.json").is_file() and (out / "prepared.json").is_file()
    assert job.args["options"] == {"val_fraction": "0.25"}  # only what differs from the plugin's defaults
    assert any(s.value.startswith("Prepared 17 records") and str(out) in s.value for s in at.success)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["records"] == "17" and metrics["images"] == "9"
    assert len(at.get("vega_lite_chart")) >= 3  # splits, answer lengths, categories
    lengths = at.get("vega_lite_chart")[1].proto.spec
    assert '"sort":null' in lengths.replace(" ", "") or '"sort": null' in lengths  # bins in length order
    assert len(at.get("image")) == 8  # the preview grid: two rows of four
    captions = " ".join(c.value for c in at.caption)
    assert "Q: 图片中的食物是哪个地区的特色美食？" in captions and "A: 川，图中的菜是麻婆豆腐" in captions


def test_a_job_error_speaks_the_pages_language_with_its_labels(tmp_path: Path) -> None:
    source = make_foodieqa(tmp_path / "src")
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("not vlhub's")
    at = page("zh")
    at.selectbox(key="data.name").set_value("foodieqa").run()
    at.text_input(key="data.source").set_value(str(source))
    at.text_input(key="data.out.foodieqa").set_value(str(out)).run()
    assert any("已存在且包含其他文件" in c.value for c in at.caption)  # checked as typed, before any job
    next(b for b in at.button if b.label == "开始准备").click().run()
    job = settle(at, "data.prepare")
    assert job.status == "failed" and "--out" in job.error  # the job records the CLI's words
    shown = at.error[0].value
    assert "“要创建的数据文件夹”" in shown and "--out" not in shown and "解决办法" in shown, shown
