"""The transformers backend on CPU with the tiny InternVL2-format model: real weights, real remote code."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from conftest import run_vlhub, train_python
from vlhub.core.chat import Conversation
from vlhub.core.types import GenerationSettings
from vlhub.plugins.devtools.tiny_model import make_tiny_model

GREEDY = GenerationSettings(temperature=0.0, top_p=1.0, max_new_tokens=6)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("images")
    out = []
    for name, size, colour in (("a.png", (300, 200), "red"), ("b.jpg", (120, 360), "green"),
                               ("c.png", (224, 224), "blue")):
        Image.new("RGB", size, colour).save(folder / name)
        out.append(folder / name)
    return out


def test_two_turns_with_images_keep_the_history(tiny: Path, images: list[Path]) -> None:
    train_python()
    with Conversation(str(tiny), "transformers", settings=GREEDY) as chat:
        chunks = list(chat.ask("Compare these two dishes.", images[:2]))
        # 300x200: a 3x2 grid of 224px tiles (max_dynamic_patch 6) + a thumbnail; 120x360: 1x3 + a thumbnail
        assert chunks and chat.session.last == {"event": "done", "images": 2, "tiles": 11, "earlier_turns": 0,
                                                "system": False}
        second = chat.answer("And this one?", [images[2]])
        assert chat.session.last["images"] == 3 and chat.session.last["earlier_turns"] == 1
        assert [t.role for t in chat.history] == ["user", "assistant", "user", "assistant"]
        assert chat.history[0].images == images[:2] and chat.history[2].images == [images[2]]
        assert chat.history[3].text == second
        chat.answer("Which one is spicier?")  # a turn without images still sends the earlier ones
        assert chat.session.last["images"] == 3 and chat.session.last["earlier_turns"] == 2
        chat.system = "You are a Sichuan cook."  # the model's system message, replaced for this turn
        before = [t.text for t in chat.history]
        again = "".join(chat.regenerate())  # the last question again: its answer replaced, nothing added
        last = chat.session.last
        assert (last["images"], last["earlier_turns"], last["system"]) == (3, 2, True)
        assert [t.text for t in chat.history][:-1] == before[:-1] and chat.history[-1].text == again.strip()


def test_cli_one_shot_answers_and_exits(tiny: Path, images: list[Path]) -> None:
    train_python()
    proc = run_vlhub("chat", str(tiny), "--image", str(images[0]), "--backend", "transformers",
                     "--message", "What is in the image?", "--max-new-tokens", "8", "--json", timeout=180)
    assert proc.returncode == 0, proc.stderr
    turns = json.loads(proc.stdout)["turns"]
    assert [t["role"] for t in turns] == ["user", "assistant"]
    assert turns[0]["images"] == [str(images[0].resolve())]


def test_folder_without_config_is_one_line_error(tmp_path: Path, images: list[Path]) -> None:
    train_python()
    proc = run_vlhub("chat", str(tmp_path), "--backend", "transformers", "--image", str(images[0]), "-m", "hi")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "not a model folder (no config.json)" in proc.stderr


def test_lmdeploy_without_serve_env_or_gpu_says_how_to_fix(tiny: Path) -> None:
    proc = run_vlhub("chat", str(tiny), "--backend", "lmdeploy", "-m", "hi")
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "the lmdeploy chat backend cannot run here" in proc.stderr
    assert "vlhub env create serve" in proc.stderr or "GPU" in proc.stderr
