"""The Plugins & environment page (AppTest): create an environment (background job with progress), adopt one."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from conftest import ROOT, train_python
from test_pages_data import settle
from vlhub.core import stage
from vlhub.streamlit_app import jobs

PAGE = str(ROOT / "streamlit_app" / "views" / "environment.py")


@pytest.fixture
def no_envs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VLHUB_ENVS_DIR", str(tmp_path / "envs"))
    return tmp_path / "envs"


def page(lang: str = "en") -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["lang"] = lang
    at.run()
    assert not at.exception, at.exception
    return at


def test_create_runs_in_the_background_and_reports_progress_and_failure(no_envs: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # An offline package index with nothing in it: the real `env create` fails fast at the pip step.
    (tmp_path / "no-wheels").mkdir()
    for key, value in {"PIP_CONFIG_FILE": "/dev/null", "PIP_NO_INDEX": "1",
                       "PIP_FIND_LINKS": str(tmp_path / "no-wheels")}.items():
        monkeypatch.setenv(key, value)
    at = page("zh")
    button = next(b for b in at.button if b.label == "创建 serve 环境")
    button.click().run()
    button.click().run()  # a double click creates it once
    job = jobs.latest("env.create", name="serve")
    assert job is not None
    deadline = time.monotonic() + 60
    while not job.progress() and job.active:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert any(p.task == "env create serve" for p in job.progress().values())
    settle(at, "env.create")
    assert len(jobs.recent("env.create")) == 1
    assert "install.log" in at.error[0].value and "解决办法：" in at.error[0].value  # in the page's language
    assert (no_envs / "serve" / "venv" / "bin" / "python").exists()  # the work done so far is kept


def test_adopt_checks_the_interpreter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    python = train_python()  # the cached env's interpreter, adopted into an empty envs folder
    monkeypatch.setenv("VLHUB_ENVS_DIR", str(tmp_path / "envs"))
    at = page()
    at.text_input(key="env.adopt.train").set_value("/no/such/python")
    next(b for b in at.button if b.key == "env.adopt_button.train").click().run()
    assert "no such file" in at.error[0].value
    at.text_input(key="env.adopt.train").set_value(str(python))
    next(b for b in at.button if b.key == "env.adopt_button.train").click().run()
    assert not at.exception and not at.error
    assert stage.check("train").ready and stage.check("train").adopted
    assert any(m.value.startswith("**train** — ready") for m in at.markdown)

