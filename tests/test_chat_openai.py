"""The openai backend, `vlhub chat` and `vlhub eval` against a local OpenAI-compatible server."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from conftest import run_vlhub
from servers.openai_api import OpenAITestServer, count_images
from vlhub.core.chat import Conversation, export

KEY = "sk-canary-KEYkeyKEY-0123456789"


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    out = []
    for name, colour in (("a.png", "red"), ("b.png", "green"), ("c.png", "blue")):
        Image.new("RGB", (32, 24), colour).save(tmp_path / name)
        out.append(tmp_path / name)
    return out


def one_line_error(proc: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("Error: ") and all(n in proc.stderr for n in needles), proc.stderr


def test_cli_sends_the_image_as_data_url_and_the_key_only_in_the_header(images: list[Path]) -> None:
    with OpenAITestServer(models=("base", "tuned"), api_key=KEY) as srv:
        proc = run_vlhub("chat", "--backend", "openai", "--base-url", srv.base_url, "--model", "tuned",
                         "--image", str(images[0]), "--message", "What dish is this?",
                         env={"OPENAI_API_KEY": KEY})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "tuned saw 1 image(s) and read: What dish is this?"
    request = [r for r in srv.requests if r["path"].endswith("/chat/completions")][-1]
    content = request["body"]["messages"][0]["content"]
    assert content[0] == {"type": "text", "text": "What dish is this?"}
    url = content[1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == images[0].read_bytes()
    assert request["body"]["stream"] is True
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert headers["authorization"] == f"Bearer {KEY}"
    assert not [k for k, v in headers.items() if KEY in v and k != "authorization"]
    assert KEY not in request["raw"] and KEY not in proc.stdout + proc.stderr


def test_history_and_images_of_earlier_turns_are_sent_again(images: list[Path]) -> None:
    with OpenAITestServer(models=("base",)) as srv:
        with Conversation("", "openai", {"base_url": srv.base_url}) as chat:
            assert chat.session.model == "base"  # the endpoint's first model
            first = "".join(chat.ask("Two dishes:", images[:2]))
            second = chat.answer("And a third?", [images[2]])
            third = chat.answer("Which is spicier?")
            markdown, data = export(chat, "md"), json.loads(export(chat, "json"))
    assert first == "base saw 2 image(s) and read: Two dishes:"
    assert second == "base saw 3 image(s) and read: And a third?"
    assert third == "base saw 3 image(s) and read: Which is spicier?"
    messages = srv.requests[-1]["body"]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert messages[1]["content"] == first and count_images(messages) == 3
    assert [len(t["images"]) for t in data["turns"]] == [2, 0, 1, 0, 0, 0]
    assert "And a third?" in markdown and images[2].name in markdown


def test_interactive_loop_reads_turns_and_image_commands(images: list[Path]) -> None:
    with OpenAITestServer(models=("base",)) as srv:
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "vlhub"), "chat", "--base-url", srv.base_url,
             "--image", str(images[0])],
            input=f"hello\n/image {images[1]}\nand this?\n/exit\nnever sent\n", capture_output=True, text=True,
            timeout=60, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["base saw 1 image(s) and read: hello",
                                        "base saw 2 image(s) and read: and this?"]


@pytest.mark.parametrize("case", ["unreachable", "missing-image", "no-folder", "unknown-model", "bad-key"])
def test_errors_are_one_line_without_traceback(case: str, images: list[Path], tmp_path: Path) -> None:
    with OpenAITestServer(models=("base",), api_key=KEY) as srv:
        env = {"OPENAI_API_KEY": KEY}
        if case == "unreachable":
            srv.httpd.server_close()  # the port is free again: nothing listens there
            proc = run_vlhub("chat", "--base-url", srv.base_url, "--model", "base", "-m", "hi", env=env)
            one_line_error(proc, 1, "cannot reach", srv.base_url)
        elif case == "missing-image":
            proc = run_vlhub("chat", "--base-url", srv.base_url, "--image", str(tmp_path / "nope.png"), "-m", "hi",
                             env=env)
            one_line_error(proc, 2, "image not found", "nope.png")
        elif case == "no-folder":
            one_line_error(run_vlhub("chat", str(tmp_path / "no-model"), "-m", "hi"), 2, "no such model folder")
        elif case == "unknown-model":
            proc = run_vlhub("chat", "--base-url", srv.base_url, "--model", "other", "-m", "hi", env=env)
            one_line_error(proc, 2, "'other' not found")
        else:
            proc = run_vlhub("chat", "--base-url", srv.base_url, "-m", "hi", env={"OPENAI_API_KEY": "sk-wrong-key"})
            one_line_error(proc, 2, "refused the API key")
            assert "sk-wrong-key" not in proc.stderr


def prepared_folder(root: Path, images: list[Path]) -> Path:
    """A prepared dataset folder as `vlhub data prepare` writes it (manifest, val.json, val_mc.json)."""
    folder = root / "prepared"
    folder.mkdir()
    items = [{"id": f"q{n}", "subset": "sivqa", "image": images[n].name, "question": f"Which dish is {n}?",
              "choices": ["饺子", "肠粉", "包子", "面条"], "answer": answer,
              "prompt": f"<image>\nWhich dish is {n}?\nA. 饺子\nB. 肠粉\nC. 包子\nD. 面条"}
             for n, answer in enumerate([1, 1, 0])]
    records = [{"id": f"r{n}", "image": images[n].name, "conversations": [
        {"from": "human", "value": f"<image>\n图中的菜是什么？{n}"}, {"from": "gpt", "value": "肠粉"}]}
        for n in range(2)]
    (folder / "val_mc.json").write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    (folder / "val.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    (folder / "prepared.json").write_text(json.dumps({"format": "vlhub.prepared/1",
                                                      "image_root": str(images[0].parent)}), encoding="utf-8")
    return folder


def letter_per_model(model: str, messages: list[dict[str, Any]]) -> str:
    return {"base": "A", "tuned": "B. 肠粉"}[model]


def test_eval_compares_two_models(images: list[Path], tmp_path: Path) -> None:
    data = prepared_folder(tmp_path, images)
    with OpenAITestServer(models=("base", "tuned"), answer=letter_per_model) as srv:
        proc = run_vlhub("eval", "base", "tuned", "--data", str(data), "--backend", "openai",
                         "--base-url", srv.base_url, "--json")
        table = run_vlhub("eval", "base", "tuned", "--data", str(data), "--base-url", srv.base_url, "--limit", "2")
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)["results"]
    assert [(r["model"], r["correct"], r["total"]) for r in results] == [("base", 1, 3), ("tuned", 2, 3)]
    assert results[1]["items"][0] == {"index": 0, "id": "q0", "question": "Which dish is 0?",
                                      "choices": ["饺子", "肠粉", "包子", "面条"], "answer": 1, "reply": "B. 肠粉",
                                      "picked": 1, "correct": True}
    sent = [r["body"] for r in srv.requests if r["body"]][0]
    assert sent["temperature"] == 0 and count_images(sent["messages"]) == 1
    assert sent["messages"][0]["content"][0]["text"].startswith("Which dish is 0?\nA. 饺子")
    assert table.returncode == 0 and "tuned" in table.stdout and "100.0%" in table.stdout
