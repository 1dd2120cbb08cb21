"""The launcher as a product (AppTest): fields and the language stay (page switches, new sessions), presets,
"new run from this run's settings", the command previews are what the CLI runs, dry runs stay out of run
lists, the model card preview shows what is sent.

Pages are switched through the app's own navigation (``app.py`` + ``AppTest.switch_page``), in one session.
"""
from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from conftest import ROOT
from publish_helpers import make_model
from vlhub.core import runs, settings_store
from vlhub.core.cli.publish import publish as publish_cmd
from vlhub.core.cli.train import train as train_cmd
from vlhub.core.fsutil import atomic_write_json
from vlhub.streamlit_app import commands

APP = str(ROOT / "streamlit_app" / "app.py")
VIEWS = ROOT / "streamlit_app" / "views"


def app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def go(at: AppTest, page: str) -> AppTest:
    at.switch_page(f"views/{page}.py").run()
    assert not at.exception, at.exception
    return at


def view(name: str, lang: str = "en") -> AppTest:
    at = AppTest.from_file(str(VIEWS / f"{name}.py"), default_timeout=60)
    at.session_state["lang"] = lang
    at.run()
    assert not at.exception, at.exception
    return at


def button(at: AppTest, label: str) -> Any:
    return next(b for b in at.button if b.label == label)


def preview(at: AppTest, prefix: str) -> str:
    return next(c.value for c in at.code if c.value.startswith(prefix))


def test_fields_survive_page_switches_and_a_new_session(tmp_path: Path) -> None:
    at = go(app(), "data")
    at.selectbox(key="data.name").set_value("foodieqa").run()
    at.text_input(key="data.source").set_value(str(tmp_path / "src"))
    at.text_input(key="data.opt.foodieqa.val_fraction").set_value("0.3")
    at.checkbox(key="data.strict").check().run()

    go(at, "train")
    at.text_input(key="train.model").set_value(str(tmp_path / "model"))
    at.text_input(key="train.opt.xtuner.lr").set_value("1e-4")
    at.selectbox(key="train.opt.xtuner.method").set_value("qlora")
    at.checkbox(key="train.opt.xtuner.freeze_vit").uncheck().run()

    go(at, "convert")
    at.radio(key="convert.from").set_value("path").run()
    at.text_input(key="convert.path").set_value(str(tmp_path / "iter_2.pth")).run()

    go(at, "publish")
    at.text_input(key="publish.folder").set_value(str(tmp_path / "model"))
    at.multiselect(key="publish.publishers").set_value(["git"]).run()
    at.text_input(key="publish.target.git").set_value("https://example.invalid/o/n.git").run()

    def check(at: AppTest) -> None:
        go(at, "data")
        assert at.selectbox(key="data.name").value == "foodieqa"
        assert at.text_input(key="data.source").value == str(tmp_path / "src")
        assert at.text_input(key="data.opt.foodieqa.val_fraction").value == "0.3"
        assert at.checkbox(key="data.strict").value is True
        go(at, "train")
        assert at.text_input(key="train.model").value == str(tmp_path / "model")
        assert at.text_input(key="train.opt.xtuner.lr").value == "1e-4"
        assert at.selectbox(key="train.opt.xtuner.method").value == "qlora"
        assert at.checkbox(key="train.opt.xtuner.freeze_vit").value is False
        go(at, "convert")
        assert at.radio(key="convert.from").value == "path"
        assert at.text_input(key="convert.path").value == str(tmp_path / "iter_2.pth")
        go(at, "publish")
        assert at.text_input(key="publish.folder").value == str(tmp_path / "model")
        assert at.multiselect(key="publish.publishers").value == ["git"]
        assert at.text_input(key="publish.target.git").value == "https://example.invalid/o/n.git"

    go(at, "home")
    check(at)  # the same session, back from other pages
    check(app())  # a new session (a reload, a restarted launcher): remembered under VLHUB_HOME
    values = settings_store.form_values()
    assert values["data.source"] == str(tmp_path / "src") and "data.out.foodieqa" not in values  # defaults not kept


def test_the_language_survives_a_new_session() -> None:
    at = app()
    assert at.title[0].value == "InternVL fine-tuning, from data to hub"
    at.selectbox(key="lang").set_value("zh").run()
    assert at.title[0].value == "InternVL 微调：从数据到模型仓库"
    again = app()  # a reload
    assert again.session_state["lang"] == "zh" and again.title[0].value == "InternVL 微调：从数据到模型仓库"
    go(again, "train")
    assert again.title[0].value == "微调训练"
    url = AppTest.from_file(APP, default_timeout=60)
    url.query_params["lang"] = "en"  # ?lang=en wins over the remembered language
    url.run()
    assert url.title[0].value == "InternVL fine-tuning, from data to hub"


def test_presets_save_and_load(tmp_path: Path) -> None:
    at = view("train")
    at.text_input(key="train.model").set_value(str(tmp_path / "model"))
    at.text_input(key="train.opt.xtuner.lr").set_value("1e-4")
    at.text_input(key="train.opt.xtuner.batch_size").set_value("2")
    at.text_area(key="train.opt.xtuner.eval_prompt").set_value("What dish?\nWhere from?")
    at.checkbox(key="train.opt.xtuner.freeze_vit").uncheck().run()
    at.text_input(key="train.preset.name").set_value("  small  gpu ").run()
    button(at, "Save preset").click().run()
    assert "Saved the preset “small gpu”." in [s.value for s in at.success]
    saved = settings_store.load_preset("small gpu")
    assert saved["trainer"] == "xtuner" and saved["model"] == str(tmp_path / "model")
    assert saved["options"] == {"lr": "1e-4", "batch_size": "2", "eval_prompt": ["What dish?", "Where from?"],
                                "freeze_vit": False}

    at.text_input(key="train.opt.xtuner.lr").set_value("5e-5")
    at.text_input(key="train.opt.xtuner.batch_size").set_value("4")
    at.text_area(key="train.opt.xtuner.eval_prompt").set_value("")
    at.checkbox(key="train.opt.xtuner.freeze_vit").check()
    at.text_input(key="train.opt.xtuner.max_length").set_value("1024").run()
    fresh = view("train")  # another session loads it
    fresh.selectbox(key="train.preset.pick").set_value("small gpu").run()
    button(fresh, "Load").click().run()
    assert "Loaded the preset “small gpu” into the form." in [s.value for s in fresh.success]
    assert fresh.text_input(key="train.opt.xtuner.lr").value == "1e-4"
    assert fresh.text_input(key="train.opt.xtuner.batch_size").value == "2"
    assert fresh.text_input(key="train.opt.xtuner.max_length").value == "4096"  # not in the preset: the default
    assert fresh.text_area(key="train.opt.xtuner.eval_prompt").value == "What dish?\nWhere from?"
    assert fresh.checkbox(key="train.opt.xtuner.freeze_vit").value is False
    assert "--lr 1e-4" in preview(fresh, "vlhub train") and "--batch-size 2" in preview(fresh, "vlhub train")

    fresh.selectbox(key="train.preset.pick").set_value("small gpu").run()
    button(fresh, "Delete").click().run()
    assert settings_store.presets() == {}


def test_new_run_from_a_runs_settings(tmp_path: Path) -> None:
    runs.new_run("train", trainer="xtuner", model=str(tmp_path / "base"), data=str(tmp_path / "prepared"),
                 options={"lr": "2e-4", "eval_prompt": ["a", "b"], "freeze_vit": False, "method": "full"}) \
        .update(status="stopped")
    at = view("train")
    button(at, "New run from these settings").click().run()
    assert at.text_input(key="train.model").value == str(tmp_path / "base")
    assert at.text_input(key="train.data").value == str(tmp_path / "prepared")
    assert at.text_input(key="train.opt.xtuner.lr").value == "2e-4"
    assert at.selectbox(key="train.opt.xtuner.method").value == "full"
    assert at.text_area(key="train.opt.xtuner.eval_prompt").value == "a\nb"
    assert at.checkbox(key="train.opt.xtuner.freeze_vit").value is False
    assert next(e for e in at.expander if e.label == "New run").proto.expanded


def test_train_preview_is_the_command_the_cli_runs(tmp_path: Path) -> None:
    at = view("train")
    at.text_input(key="train.model").set_value(str(tmp_path / "my model"))
    at.text_input(key="train.data").set_value(str(tmp_path / "prepared"))
    at.text_input(key="train.opt.xtuner.lr").set_value("1e-4")
    at.selectbox(key="train.opt.xtuner.method").set_value("qlora")
    at.selectbox(key="train.opt.xtuner.freeze_llm").set_value("false")
    at.checkbox(key="train.opt.xtuner.freeze_vit").uncheck()
    at.text_area(key="train.opt.xtuner.eval_prompt").set_value("What's this?\nName it")
    at.text_input(key="train.opt.xtuner.launch_command").set_value("python fake.py {config} {work_dir}").run()
    line = preview(at, "vlhub train")
    words = shlex.split(line)
    assert words[:2] == ["vlhub", "train"] and "--dry-run" not in words
    ctx = train_cmd.make_context("train", words[2:])
    params = {k: v for k, v in ctx.params.items() if v not in (None, ())}
    assert params.pop("model") == tmp_path / "my model" and params.pop("data") == tmp_path / "prepared"
    assert params.pop("trainer") == "xtuner" and params.pop("dry_run") is False and params.pop("as_json") is False
    assert params == {"lr": "1e-4", "method": "qlora", "freeze_llm": False, "freeze_vit": False,
                      "eval_prompt": ("What's this?", "Name it"), "launch_command": "python fake.py {config} {work_dir}"}
    assert commands.train({"model": "m", "data": "d", "trainer": "xtuner", "options": {}, "launch": False}) == \
        "vlhub train --trainer xtuner --model m --data d --dry-run"


def test_publish_preview_is_the_command_the_cli_runs(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model dir")
    at = view("publish")
    at.text_input(key="publish.folder").set_value(str(model))
    at.multiselect(key="publish.publishers").set_value(["git", "hf"]).run()
    at.text_input(key="publish.target.git").set_value("https://example.invalid/o/n.git")
    at.text_input(key="publish.target.hf").set_value("me/InternVL2-food")
    at.checkbox(key="publish.opt.private").check()
    at.text_input(key="publish.opt.message").set_value("first version").run()
    line = preview(at, "vlhub publish")
    words = shlex.split(line)
    ctx = publish_cmd.make_context("publish", words[2:])
    assert ctx.params["folder"] == model and ctx.params["private"] is True and ctx.params["dry_run"] is False
    assert ctx.params["targets"] == ("git:https://example.invalid/o/n.git", "hf:me/InternVL2-food")
    assert ctx.params["message"] == "first version"
    assert commands.publish({"folder": "f", "targets": ["hf:o/n"], "options": {"via": "git"}, "dry_run": True}) == \
        "vlhub publish f --to hf:o/n --via git --dry-run"


def test_dry_runs_stay_out_of_run_lists_unless_asked_for() -> None:
    checked = runs.new_run("train", trainer="xtuner").update(status="planned")
    stopped = runs.new_run("train", trainer="xtuner").update(status="stopped")
    at = view("train")
    run_box = next(s for s in at.selectbox if s.label == "Run")
    assert run_box.options == [f"{stopped.id} (stopped)"]
    at.checkbox(key="train.show_dry").check().run()
    run_box = next(s for s in at.selectbox if s.label == "Run")
    assert f"{checked.id} (dry run)" in run_box.options
    home = view("home")
    assert home.selectbox(key="home.run").options == [f"{stopped.id} (stopped)"]


def test_the_card_preview_is_what_is_sent(tmp_path: Path) -> None:
    """No raw marker comment, the loss plot's curve shown, local paths pointed out."""
    run = runs.new_run("train", trainer="xtuner", options={"eval_image": str(tmp_path / "images" / "000.jpg"),
                                                          "lr": "1e-4"}).update(status="finished")
    (run.dir / "metrics.jsonl").write_text("".join(json.dumps({"iter": i, "total": 4, "loss": 2 - i / 10}) + "\n"
                                                   for i in range(1, 5)))
    model = make_model(tmp_path / "model")
    atomic_write_json(model / "vlhub_provenance.json", {"run": {"id": run.id, "dir": str(run.dir)}})
    at = view("publish")
    at.text_input(key="publish.folder").set_value(str(model)).run()
    card = next(e for e in at.text_area if e.key.startswith("publish.card."))
    assert "<!-- generated by vlhub publish -->" in card.value  # the text sent, unchanged
    assert str(tmp_path) not in card.value and not at.warning  # no local path is published
    rendered = "\n".join(m.value for m in at.markdown)
    assert "<!--" not in rendered and "| lr | 1e-4 |" in rendered
    assert "](assets/loss.svg)" not in rendered and at.get("vega_lite_chart")  # the curve, not a broken image
    assert any("assets/loss.svg" in c.value for c in at.caption)

    (model / "README.md").write_text(f"# My model\n\nTrained on {tmp_path}/data/train.json.\n")
    at.run()  # the folder's own card is sent as it is: a local path in it is pointed out
    assert any(f"{tmp_path}/data/train.json" in w.value for w in at.warning)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_paths_are_checked_as_typed(lang: str, tmp_path: Path) -> None:
    at = view("data", lang)
    at.text_input(key="data.source").set_value(str(tmp_path / "nowhere")).run()
    assert any(str(tmp_path / "nowhere") in c.value and (":red[" in c.value) for c in at.caption)  # checked as typed


def test_pick_a_prepared_folder_instead_of_typing(isolated: Path, tmp_path: Path) -> None:
    found = isolated / "data" / "foodieqa"
    atomic_write_json(found / "prepared.json", {"dataset": "foodieqa"})
    elsewhere = tmp_path / "mine" / "prepared-b"
    atomic_write_json(elsewhere / "prepared.json", {"dataset": "foodieqa"})
    settings_store.remember_place("datasets", elsewhere)
    assert set(settings_store.find("datasets")) == {str(found.resolve()), str(elsewhere.resolve())}
    at = view("train")
    picker = at.selectbox(key="train.data.pick")
    assert len(picker.options) == 2 and picker.value is None
    picker.set_value(str(found.resolve())).run()
    assert at.text_input(key="train.data").value == str(found.resolve())
    assert any("a prepared dataset folder" in c.value for c in at.caption)
