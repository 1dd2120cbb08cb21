"""The Chat page through AppTest: it opens without GPU or stage envs, and compare mode shows two answers."""
from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from conftest import ROOT
from servers.openai_api import OpenAITestServer
from test_chat_openai import prepared_folder

PAGE = str(ROOT / "streamlit_app" / "views" / "chat.py")


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_page_opens_and_says_what_is_missing(lang: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("VLHUB_ENVS_DIR", str(tmp_path / "no-envs"))
    at = AppTest.from_file(PAGE, default_timeout=30)
    at.session_state["lang"] = lang
    at.run()
    assert not at.exception
    shown = " ".join(i.value for i in at.info)
    assert "lmdeploy" in shown and "vlhub env create serve" in shown
    assert "vlhub env create train" in shown  # transformers: no stage env at all
    assert at.title[0].value == ("Chat with a model" if lang == "en" else "与模型对话")


def start_compare(at: AppTest, base_url: str) -> None:
    at.toggle(key="chat.compare").set_value(True).run()
    for side in (0, 1):
        at.selectbox(key=f"chat.backend.{side}").set_value("openai")
    at.run()
    for side, model in enumerate(("base", "tuned")):
        at.text_input(key=f"chat.model.{side}").set_value(model)
        at.text_input(key=f"chat.base_url.{side}").set_value(base_url)
    next(b for b in at.button if b.label == "Start / restart").click().run()
    assert not at.exception and not at.error


def answers(at: AppTest) -> list[str]:
    return [m.markdown[-1].value for m in at.chat_message if m.name == "assistant"]


def test_compare_mode_shows_two_answers_for_one_question(tmp_path: Path) -> None:
    images = []
    for name in ("a.png", "b.png"):
        Image.new("RGB", (32, 24), "red").save(tmp_path / name)
        images.append(tmp_path / name)
    data = prepared_folder(tmp_path, images + [images[0]])
    with OpenAITestServer(models=("base", "tuned")) as srv:
        at = AppTest.from_file(PAGE, default_timeout=30)
        at.run()
        start_compare(at, srv.base_url)
        assert [c.value for c in at.caption][:2] == ["openai · base", "openai · tuned"]

        at.chat_input[0].set_value("What dish is this?").run()
        assert not at.exception
        assert answers(at) == ["base saw 0 image(s) and read: What dish is this?",
                               "tuned saw 0 image(s) and read: What dish is this?"]

        at.text_input(key="chat.examples_data").set_value(str(data)).run()
        next(b for b in at.button if b.key == "chat.example.1").click().run()  # an example with its image
        assert not at.exception
        assert answers(at) == ["base saw 0 image(s) and read: What dish is this?",  # one column per model
                               "base saw 1 image(s) and read: 图中的菜是什么？1",
                               "tuned saw 0 image(s) and read: What dish is this?",
                               "tuned saw 1 image(s) and read: 图中的菜是什么？1"]
        assert [len(side.history) for side in at.session_state["chat.comparison"].sides] == [4, 4]
        at.text_input(key="chat.eval_data").set_value(str(data)).run()
        next(b for b in at.button if b.label == "Evaluate").click().run()
        assert not at.exception and not at.error
        table = at.dataframe[0].value
        assert list(table["model"]) == ["openai · base", "openai · tuned"] and list(table["total"]) == [3, 3]
        assert len(at.get("vega_lite_chart")) == 1  # st.bar_chart of the accuracies
        next(b for b in at.button if b.label == "Clear the conversation").click().run()
        assert answers(at) == []
        at.session_state["chat.comparison"].close()


def test_every_chat_string_is_in_both_catalogues() -> None:
    import json
    import re

    used = set(re.findall(r"""\bt\(["'](chat\.[a-z_]+)["']""", Path(PAGE).read_text(encoding="utf-8")))
    used |= set(re.findall(r"""\bt\(["'](chat\.[a-z_]+)["']""", (ROOT / "streamlit_app" / "app.py").read_text()))
    for lang in ("en", "zh"):
        catalogue = json.loads((ROOT / "streamlit_app" / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))
        assert used - set(catalogue) == set(), lang
