"""Launcher pages render real content (AppTest), in both languages, with and without stage envs."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from conftest import ROOT

VIEWS = ROOT / "streamlit_app" / "views"


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_home_shows_plugins_and_envs(lang: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("VLHUB_ENVS_DIR", str(tmp_path / "none"))
    at = AppTest.from_file(str(VIEWS / "home.py"), default_timeout=30)
    at.session_state["lang"] = lang
    at.run()
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    assert ("train" in text) and (("missing" in text) if lang == "en" else ("缺少" in text))
    plugin_names = set(at.dataframe[0].value["plugin" if lang == "en" else "插件"])
    assert {"datasets", "publishers"} <= plugin_names


def test_environment_page_never_shows_tokens(monkeypatch) -> None:
    canary = "hf_CANARY-not-a-token-0123456789"
    monkeypatch.setenv("HF_TOKEN", canary)
    at = AppTest.from_file(str(VIEWS / "environment.py"), default_timeout=30)
    at.run()
    assert not at.exception
    shown = " ".join(str(e.value) for e in at.markdown) + " ".join(str(e.value) for e in at.info)
    assert "$HF_TOKEN" in shown and canary not in shown
