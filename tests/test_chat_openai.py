"""The openai backend, `vlhub chat` and `vlhub eval` against a local OpenAI-compatible server."""
from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import struct
import sys
import threading
import time
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


# ------------------------------------------------------------------ endpoint mistakes: one line, the URL and the fix
def _raw_server(behaviour: str) -> tuple[socket.socket, threading.Thread]:
    """A TCP server on 127.0.0.1 that ``close``s each connection unanswered, ``cut``s a streamed answer short,
    or stays ``silent``."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    held: list[socket.socket] = []

    def loop() -> None:
        while listener.fileno() != -1:
            try:
                conn, _ = listener.accept()
            except OSError:   # timeout (poll again) or closed (the test ended)
                continue
            if behaviour == "close":
                conn.recv(65536)
                conn.close()
            elif behaviour == "cut":   # the first words of a streamed answer, then the connection breaks
                conn.recv(65536)
                chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "base",
                         "choices": [{"index": 0, "delta": {"content": "The dish"}, "finish_reason": None}]}
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"
                             + f"data: {json.dumps(chunk)}\n\n".encode())
                time.sleep(0.2)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))   # reset
                conn.close()
            else:
                held.append(conn)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return listener, thread


ENDPOINT_CASES = {
    # case: (exit code, fragments of the one line; {v1} = the API root, {root} = without /v1, {port})
    "root-without-v1": (2, ["--base-url {root} is not the API root", "Fix: give the API root: {v1}"]),
    "root-without-v1-no-model": (2, ["{root}/models answered 404", "Fix: give the API root: {v1}"]),
    "env-root-without-v1": (2, ["OPENAI_BASE_URL {root} is not the API root", "Fix: give the API root: {v1}"]),
    "wrong-path": (2, ["{root}/api/chat/completions answered 404", "Fix: give the API root: {v1}"]),
    "chat-completions-appended": (2, ["ends with the request path /chat/completions", "Fix: give the API root: {v1}"]),
    "no-scheme": (2, ["localhost:{port} has no http:// or https://", "Fix: give the API root: http://localhost:{port}/v1"]),
    "https-on-http-port": (2, ["127.0.0.1:{port} speaks plain HTTP", "Fix: give the API root with http://: {v1}"]),
    "html-page": (2, ["{v1}/chat/completions answered 200 with an HTML page", "Fix: give the API root"]),
    "html-page-no-model": (2, ["{v1}/models answered 200 with an HTML page", "Fix: give the API root"]),
    "unknown-model": (2, ["model 'nosuch' not found", "serves: base, tuned", "Fix: pass --model with one of: base"]),
    "no-key": (2, ["{v1}/chat/completions refused the API key (401", "OPENAI_API_KEY is not set"]),
    "forbidden": (2, ["{v1}/chat/completions denied access (403: refused by the test server)", "Fix: use a key"]),
    "server-error": (1, ["{v1}/chat/completions answered 500", "Fix: check the server's log"]),
    "server-loading": (1, ["{v1}/chat/completions is unavailable (503", "Fix: wait until"]),
    "refused": (1, ["cannot reach the OpenAI-compatible endpoint {v1}/chat/completions: connection refused",
                    "Fix: start the server"]),
    "closes-unanswered": (1, ["closed the connection without an HTTP answer to {v1}/chat/completions",
                              "Fix: check that {port} is the API server's port"]),
    "silent": (1, ["{v1}/chat/completions accepted the connection but sent no answer", "VLHUB_READ_TIMEOUT"]),
}


@pytest.mark.parametrize("case", list(ENDPOINT_CASES))
def test_endpoint_mistakes_are_one_line_naming_the_url_and_the_right_form(case: str, tmp_path: Path) -> None:
    code, fragments = ENDPOINT_CASES[case]
    env: dict[str, str] = {"VLHUB_READ_TIMEOUT": "2", "VLHUB_CONNECT_TIMEOUT": "2"}
    model = ["--model", "base"]
    raw = None
    with OpenAITestServer(models=("base", "tuned"), api_key=KEY if case == "no-key" else None) as srv:
        v1 = srv.base_url
        root, port = v1[:-len("/v1")], str(srv.httpd.server_address[1])
        url = {"root-without-v1": root, "root-without-v1-no-model": root, "wrong-path": f"{root}/api",
               "chat-completions-appended": f"{v1}/chat/completions", "no-scheme": f"localhost:{port}",
               "https-on-http-port": "https" + v1[len("http"):]}.get(case, v1)
        if case == "root-without-v1-no-model" or case == "html-page-no-model":
            model = []
        if case == "unknown-model":
            model = ["--model", "nosuch"]
        srv.html = case.startswith("html-page")
        srv.chat_status = {"forbidden": 403, "server-error": 500, "server-loading": 503}.get(case)
        if case in ("refused", "closes-unanswered", "silent"):
            srv.httpd.server_close()
            if case != "refused":
                raw, _ = _raw_server("close" if case == "closes-unanswered" else "silent")
                port = str(raw.getsockname()[1])
                v1 = url = f"http://127.0.0.1:{port}/v1"
        args = ["--base-url", url] if case != "env-root-without-v1" else []
        if case == "env-root-without-v1":
            env["OPENAI_BASE_URL"] = url = root
        try:
            proc = run_vlhub("chat", *args, *model, "-m", "hi", env=env, cwd=tmp_path, timeout=120)
        finally:
            if raw is not None:
                raw.close()
    wanted = [f.format(v1=v1, root=root, port=port) for f in fragments]
    one_line_error(proc, code, *wanted)
    assert "Fix: " in proc.stderr
    assert not re.search(r"\b[A-Z][A-Za-z0-9]*(Error|Exception)\b", proc.stderr), proc.stderr   # no class names
    assert KEY not in proc.stderr and list(tmp_path.iterdir()) == []


def test_an_answer_cut_off_mid_stream_keeps_what_came_and_says_so(tmp_path: Path) -> None:
    raw, _ = _raw_server("cut")
    url = f"http://127.0.0.1:{raw.getsockname()[1]}/v1"
    try:
        proc = run_vlhub("chat", "--base-url", url, "--model", "base", "-m", "hi", cwd=tmp_path, timeout=120,
                         env={"VLHUB_READ_TIMEOUT": "2"})
    finally:
        raw.close()
    one_line_error(proc, 1, f"the answer from {url}/chat/completions was cut off", "Fix: check the server's log")
    assert proc.stdout.startswith("The dish")


def test_a_server_that_does_not_stream_is_still_understood() -> None:
    with OpenAITestServer(models=("base",)) as srv:
        srv.ignore_stream = True
        proc = run_vlhub("chat", "--base-url", srv.base_url, "--model", "base", "-m", "hi")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "base saw 0 image(s) and read: hi"
