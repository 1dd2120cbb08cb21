"""The Convert page (AppTest): without the train env it says how to get one; a bad checkpoint is one line;
a real xtuner checkpoint of the tiny model is converted and verified from the page."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from conftest import ROOT, SHARED_ENVS
from test_convert_internvl import built  # noqa: F401  (the module's checkpoint fixture)
from test_pages_data import settle
from vlhub.core import convert, stage
from vlhub.streamlit_app import jobs

PAGE = str(ROOT / "streamlit_app" / "views" / "convert.py")


def page(lang: str = "en") -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["lang"] = lang
    at.run()
    assert not at.exception, at.exception
    return at


def convert_button(at: AppTest, lang: str = "en") -> Any:
    return next(b for b in at.button if b.label == ("Convert" if lang == "en" else "开始转换"))


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_without_the_train_env_it_says_how_to_install(lang: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("VLHUB_ENVS_DIR", str(tmp_path / "no-envs"))
    at = page(lang)
    assert at.title[0].value == ("Convert a checkpoint" if lang == "en" else "转换检查点")
    assert at.code[0].value.startswith("vlhub env create train")
    assert convert_button(at, lang).disabled
    assert at.info[0].value.startswith("No planned or finished training run" if lang == "en" else "还没有")


def from_path(at: AppTest, checkpoint: Path, out: Path) -> None:
    at.radio(key="convert.from").set_value("path").run()
    at.text_input(key="convert.path").set_value(str(checkpoint))
    at.text_input(key="convert.out.model").set_value(str(out)).run()


def test_a_bad_checkpoint_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    at = page()
    from_path(at, tmp_path / "notes.txt", tmp_path / "out")
    convert_button(at).click().run()
    job = settle(at, "convert")
    assert job.status == "failed"
    assert "is not a checkpoint" in at.error[0].value and "Fix:" in at.error[0].value
    assert not (tmp_path / "out").exists()


def test_converts_and_verifies_a_real_checkpoint(built: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "converted"
    at = page()
    from_path(at, built["file"], out)
    assert f"vlhub convert {built['file']} --out {out}" in [c.value for c in at.code]  # the command preview
    button = convert_button(at)
    button.click().run()
    assert convert_button(at).disabled  # while the conversion runs
    button.click().run()  # a double click: one conversion, never "already exists"
    assert any("is already running — following it" in c.value for c in at.caption)
    if jobs.latest("convert").active:  # its first seconds say what it does
        assert any(s.label.startswith("Converting") for s in at.status)
        assert any(c.value.startswith(("Starting the conversion", "convert")) for c in at.caption)
    job = settle(at, "convert", timeout=300)
    assert job.status == "done", job.error
    assert len(jobs.recent("convert")) == 1 and not at.error, [e.value for e in at.error]
    assert (out / "vlhub_provenance.json").is_file() and (out / "config.json").is_file()
    assert [s.value for s in at.success] == [f"Converted and verified: {out}"]


def test_only_the_environment_of_the_checkpoints_converter_is_needed(tmp_path: Path, monkeypatch) -> None:
    """An xtuner checkpoint converts in the train env: another converter's missing env (swift) does not matter."""
    envs = tmp_path / "envs"
    envs.mkdir()
    (envs / "train").symlink_to(SHARED_ENVS / "train")  # the train env only
    monkeypatch.setenv("VLHUB_ENVS_DIR", str(envs))
    checkpoint = tmp_path / "work" / "iter_2.pth"
    checkpoint.mkdir(parents=True)
    (checkpoint / "mp_rank_00_model_states.pt").write_bytes(b"weights")
    (tmp_path / "work" / "config.py").write_text("model = dict(type=VlhubInternVL)\n")
    others = {stage.env_of(c) for c in convert.converters().values()} - {"train", None}
    at = page()
    assert convert_button(at).disabled == bool(others)  # nothing chosen: every converter's env is named
    from_path(at, checkpoint, tmp_path / "out")
    assert not convert_button(at).disabled
    assert not [w.value for w in at.warning if any(f"{env} " in w.value for env in others)]
