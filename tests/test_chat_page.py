"""The Chat page through AppTest: it opens without GPU or stage envs, picks a backend that runs, prefills the
newest converted model and its base, loads in the background, sends the system prompt and the uploaded
images (then clears the uploader), regenerates, unloads, and shows an evaluation that stays on screen."""
from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from conftest import ROOT
from servers.openai_api import OpenAITestServer, count_images, last_user_text
from test_chat_openai import letter_per_model, prepared_folder
from vlhub.core import chat as chatapi
from vlhub.core import eval as evalapi
from vlhub.core.home import vlhub_home
from vlhub.plugins.backends.lmdeploy_backend import LMDeployBackend
from vlhub.plugins.backends.transformers_backend import TransformersBackend

PAGE = str(ROOT / "streamlit_app" / "views" / "chat.py")


@pytest.fixture(autouse=True)
def unload_everything() -> None:
    """No model outlives its test (the registry of loaded models belongs to the process)."""
    yield
    for entry in list(chatapi._LOADED.values()):
        entry.unload()


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
    assert at.selectbox(key="chat.backend.0").value == "openai"  # the one backend that runs here


@pytest.mark.parametrize("runs, expected", [({"transformers"}, "transformers"),
                                            ({"lmdeploy", "transformers"}, "lmdeploy")])
def test_the_default_backend_is_one_that_runs_here(runs: set[str], expected: str, monkeypatch) -> None:
    for cls in (LMDeployBackend, TransformersBackend):
        monkeypatch.setattr(cls, "missing", lambda self: None if self.name in runs else "not here")
    at = AppTest.from_file(PAGE, default_timeout=30)
    at.run()
    assert not at.exception
    assert at.selectbox(key="chat.backend.0").value == expected
    at.toggle(key="chat.compare").set_value(True).run()
    assert at.selectbox(key="chat.backend.1").value == expected


def converted(folder: Path, base: str) -> Path:
    """A model folder as `vlhub convert` leaves it (config and provenance naming its base model)."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "vlhub_provenance.json").write_text(json.dumps(
        {"format": "vlhub-provenance/2", "format_version": 2, "converter": "internvl-official",
         "base_model": base}))
    return folder


def test_the_newest_converted_model_and_its_base_are_prefilled(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(TransformersBackend, "missing", lambda self: None)
    base = tmp_path / "InternVL2-1B"
    base.mkdir()
    models = vlhub_home() / "models"
    older = converted(models / "older", str(base))
    newest = converted(models / "newest", str(base))
    os.utime(older / "vlhub_provenance.json", (1, 1))  # written long ago
    at = AppTest.from_file(PAGE, default_timeout=30)
    at.run()
    assert not at.exception
    assert at.text_input(key="chat.model.0").value == str(newest)  # one model: the newest
    at.toggle(key="chat.compare").set_value(True).run()
    assert at.text_input(key="chat.model.0").value == str(base)  # compare: its base on the left
    assert at.text_input(key="chat.model.1").value == str(newest)
    at.toggle(key="chat.compare").set_value(False).run()
    assert at.text_input(key="chat.model.0").value == str(newest)


def start(at: AppTest, base_url: str, models: tuple[str, ...]) -> None:
    if len(models) == 2:
        at.toggle(key="chat.compare").set_value(True).run()
    for side in range(len(models)):
        at.selectbox(key=f"chat.backend.{side}").set_value("openai")
    at.run()
    for side, model in enumerate(models):
        at.text_input(key=f"chat.model.{side}").set_value(model)
        at.text_input(key=f"chat.base_url.{side}").set_value(base_url)
    next(b for b in at.button if b.label == "Start / restart").click().run()
    for entry in at.session_state["chat.entries"]:
        assert entry.wait(10)
    at.run()
    assert not at.exception and not at.error


def answers(at: AppTest) -> list[str]:
    return [m.markdown[-1].value for m in at.chat_message if m.name == "assistant"]


def captions(at: AppTest) -> list[str]:
    return [c.value for c in at.caption if " · " in c.value and len(c.value) < 40]


def png(colour: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 24), colour).save(out, "PNG")
    return out.getvalue()


def test_compare_mode_shows_two_answers_for_one_question(tmp_path: Path) -> None:
    images = []
    for name in ("a.png", "b.png"):
        Image.new("RGB", (32, 24), "red").save(tmp_path / name)
        images.append(tmp_path / name)
    data = prepared_folder(tmp_path, images + [images[0]])
    with OpenAITestServer(models=("base", "tuned")) as srv:
        at = AppTest.from_file(PAGE, default_timeout=30)
        at.run()
        start(at, srv.base_url, ("base", "tuned"))
        assert captions(at)[:2] == ["openai · base", "openai · tuned"]

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
        next(b for b in at.button if b.label == "Clear the conversation").click().run()
        assert answers(at) == []


def numbered(model: str, messages: list[dict[str, Any]], seen: dict[str, int] = {}) -> str:  # noqa: B006
    seen[model] = seen.get(model, 0) + 1
    return f"answer {seen[model]} to {last_user_text(messages)} with {count_images(messages)} image(s)"


def test_system_prompt_images_uploader_and_regenerate(tmp_path: Path) -> None:
    with OpenAITestServer(models=("tuned",), answer=numbered) as srv:
        at = AppTest.from_file(PAGE, default_timeout=30)
        at.run()
        start(at, srv.base_url, ("tuned",))
        at.text_area(key="chat.system").set_value("You are a Sichuan cook.")
        at.file_uploader(key="chat.upload.0").set_value([("dish.png", png("red"), "image/png"),
                                                          ("side.png", png("green"), "image/png")])
        at.chat_input[0].set_value("What dish is this?").run()
        assert not at.exception and not at.error
        assert answers(at) == ["answer 1 to What dish is this? with 2 image(s)"]
        sent = [r for r in srv.requests if r["path"].endswith("/chat/completions")]
        assert sent[-1]["body"]["messages"][0] == {"role": "system", "content": "You are a Sichuan cook."}
        assert [m["role"] for m in sent[-1]["body"]["messages"]] == ["system", "user"]
        # the uploader was emptied once the images were sent: a new widget, no files
        uploaders = at.file_uploader
        assert [u.key for u in uploaders] == ["chat.upload.1"] and not uploaders[0].value

        next(b for b in at.button if b.key == "chat.regenerate").click().run()
        assert not at.exception and not at.error
        assert answers(at) == ["answer 2 to What dish is this? with 2 image(s)"]  # replaced, not added
        convo = at.session_state["chat.comparison"].sides[0]
        assert [t.role for t in convo.history] == ["user", "assistant"]
        again = [r for r in srv.requests if r["path"].endswith("/chat/completions")][-1]["body"]["messages"]
        assert again[0]["role"] == "system" and count_images(again) == 2  # the same question and images
        at.run()
        assert answers(at) == ["answer 2 to What dish is this? with 2 image(s)"]


def test_start_reuses_a_loaded_model_and_unload_stops_it(tmp_path: Path) -> None:
    with OpenAITestServer(models=("tuned",)) as srv:
        first = AppTest.from_file(PAGE, default_timeout=30)
        first.run()
        start(first, srv.base_url, ("tuned",))
        loaded = first.session_state["chat.entries"][0]
        record = json.loads(loaded.record.read_text())
        assert record["backend"] == "openai" and record["launcher"]["pid"] > 1

        second = AppTest.from_file(PAGE, default_timeout=30)  # a reloaded tab: a new session
        second.run()
        assert any("openai · tuned" in m.value for m in second.markdown)  # listed as loaded by this launcher
        start(second, srv.base_url, ("tuned",))
        assert second.session_state["chat.entries"][0] is loaded  # reused, not loaded twice
        assert len(chatapi.loaded()) == 1

        next(b for b in second.button if b.label == "Unload" and b.key is None).click().run()
        assert not second.exception
        assert loaded.status == chatapi.UNLOADED and not loaded.record.exists() and chatapi.loaded() == []
        assert second.session_state["chat.comparison"] is None
        first.run()  # the other tab says so instead of failing later
        assert first.session_state["chat.comparison"] is None
        assert any("no longer loaded" in w.value for w in first.warning)


def test_an_evaluation_shows_ci_categories_and_fixed_broken_examples_and_stays(tmp_path: Path) -> None:
    images = []
    for name, colour in (("a.png", "red"), ("b.png", "green"), ("c.png", "blue")):
        Image.new("RGB", (32, 24), colour).save(tmp_path / name)
        images.append(tmp_path / name)
    data = prepared_folder(tmp_path, images)
    items = json.loads((data / "val_mc.json").read_text(encoding="utf-8"))
    for item, region in zip(items, ("粤", "粤", "京")):
        item["categories"] = {"food_type": "点心", "main_region": region}
    (data / "val_mc.json").write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    with OpenAITestServer(models=("base", "tuned"), answer=letter_per_model) as srv:
        at = AppTest.from_file(PAGE, default_timeout=30)
        at.run()
        start(at, srv.base_url, ("base", "tuned"))
        at.text_input(key="chat.eval_data").set_value(str(data)).run()
        next(b for b in at.button if b.label == "Evaluate").click().run()
        assert not at.exception and not at.error
        report = at.session_state["chat.eval"]
        assert evalapi.load_eval(report["run_id"])["fixed"] == [0, 1]  # a recorded eval run, as `vlhub eval`

        def check() -> None:
            table = at.dataframe[0].value
            assert list(table["model"]) == ["openai · base", "openai · tuned"]
            assert list(table["total"]) == [3, 3] and list(table["correct"]) == [1, 2]
            assert all(ci.endswith("%") and "–" in ci for ci in table["95% CI"])
            regions = at.dataframe[2].value  # food_type, then main_region
            assert list(regions["main_region"]) == ["粤", "京"]
            assert list(regions["openai · tuned"])[0].startswith("100.0% (")
            assert len(at.get("vega_lite_chart")) == 1  # st.bar_chart of the accuracies
            shown = " ".join(m.value for m in at.markdown)
            assert "Fixed by openai · tuned (2)" in shown and "Broken by openai · tuned (1)" in shown
            assert "Which dish is 2?" in shown
            assert len(at.get("image")) == 3  # a thumbnail per fixed / broken item (st.image)

        check()
        at.chat_input[0].set_value("And now?").run()  # another turn: the results stay on screen
        assert not at.exception
        check()


def test_every_chat_string_is_in_both_catalogues() -> None:
    import re

    used = set(re.findall(r"""\bt\(["'](chat\.[a-z_]+)["']""", Path(PAGE).read_text(encoding="utf-8")))
    used |= set(re.findall(r"""\bt\(["'](chat\.[a-z_]+)["']""", (ROOT / "streamlit_app" / "app.py").read_text()))
    for lang in ("en", "zh"):
        catalogue = json.loads((ROOT / "streamlit_app" / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))
        assert used - set(catalogue) == set(), lang
