"""Chat models the launcher loads are leased: when nobody renews the lease (the Chat tab was closed), the
worker ends by itself, LMDeploy's api_server with it; the launcher unloads expired models and cleans up
after records of a launcher that is gone; Unload stops a model even while it loads.

The transformers worker runs the tiny model in the train env (real weights, real remote code); the
LMDeploy worker is the real ``chat_lmdeploy.py`` in a stand-in serve env whose ``lmdeploy`` and ``torch``
are stubs: ``python -m lmdeploy serve api_server`` is a small OpenAI-compatible server with ``/health``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import psutil
import pytest

from conftest import train_python
from vlhub.core import chat as chatapi
from vlhub.core.runs import process_record
from vlhub.plugins.backends.lmdeploy_backend import LMDeployBackend
from vlhub.plugins.devtools.tiny_model import make_tiny_model

#: seconds: the lease of these tests, and what exiting may take on a loaded 2-core machine
TTL, MARGIN = 6.0, 10.0


@pytest.fixture(autouse=True)
def unload_everything() -> None:
    yield
    for entry in list(chatapi._LOADED.values()):
        entry.unload()


@pytest.fixture
def no_janitor(monkeypatch: pytest.MonkeyPatch) -> None:
    """The launcher does nothing about expired leases: whatever ends, ends by itself."""
    monkeypatch.setattr(chatapi, "_start_janitor", lambda: None)
    monkeypatch.setattr(chatapi, "sweep", lambda: [])


class Renewer:
    """What an open Chat page does: renew the lease every second until stopped."""

    def __init__(self, entry: chatapi.Loaded) -> None:
        self.entry, self.stopped = entry, threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stopped.wait(1.0):
            self.entry.renew()

    def stop(self) -> float:
        """Stop renewing (the tab is closed); the time of the last renewal."""
        self.stopped.set()
        self.thread.join()
        return self.entry.record.stat().st_mtime


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_until(check: Callable[[], bool], timeout: float) -> float:
    """Seconds until ``check()`` held (fails after ``timeout``)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, "timed out"
        time.sleep(0.2)
    return time.monotonic() - started


def descendants(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if marker in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.Error:
            pass
    return found


def test_the_transformers_worker_exits_by_itself_once_renewals_stop(tmp_path: Path, no_janitor: None) -> None:
    train_python()
    tiny = make_tiny_model(tmp_path / "tiny")
    entry = chatapi.load(str(tiny), "transformers", {}, ttl=TTL)
    page = Renewer(entry)
    assert entry.wait(240), "the tiny model did not load"
    assert entry.status == chatapi.READY, entry.error
    record = json.loads(entry.record.read_text())
    proc, log = entry.session.worker.proc, entry.session.worker.log
    assert record["worker_pid"] == proc.pid and record["lease_s"] == TTL
    convo = entry.conversation(chatapi.GenerationSettings(0.0, 1.0, 4), system="You are a cook.")
    assert convo.answer("hi") is not None and entry.session.last["system"] is True
    assert chatapi.load(str(tiny), "transformers", {}, ttl=TTL) is entry  # a second page reuses it

    last = page.stop()  # the tab is closed
    time.sleep(max(0.0, last + TTL - 1.5 - time.time()))
    assert proc.poll() is None, "the worker ended before its lease did"
    wait_until(lambda: proc.poll() is not None, TTL + MARGIN)
    assert time.time() - last <= TTL + MARGIN and proc.returncode == 0
    assert not entry.record.exists()  # the worker dropped its stale record
    assert "not renewed" in Path(log).read_text()  # the last line of its log says why
    assert not entry.alive() and entry.status == chatapi.UNLOADED


STUB_TORCH = """
class cuda:
    @staticmethod
    def is_available():
        return True

    @staticmethod
    def device_count():
        return 1
"""

STUB_SERVER = r'''
"""`python -m lmdeploy serve api_server MODEL --server-port P --model-name N ...`: a stand-in server."""
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

argv = sys.argv[1:]
port = int(argv[argv.index("--server-port") + 1])
name = argv[argv.index("--model-name") + 1]
time.sleep(float(os.environ.get("STUB_LOAD_S", "0")))


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _json(self, data):
        body = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/health":
            self._json({})
        else:
            self._json({"object": "list", "data": [{"id": name, "object": "model", "created": 0,
                                                     "owned_by": "stub"}]})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        text = " ".join(m["role"] for m in body.get("messages", []))  # what it was sent
        if not body.get("stream"):
            self._json({"id": "x", "object": "chat.completion", "created": 0, "model": name, "choices": [
                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}]})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for delta, finish in (({"content": text}, None), ({}, "stop")):
            chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": name,
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
'''


@pytest.fixture
def stub_serve_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A serve env whose Python sees stub ``torch`` and ``lmdeploy`` packages; a model folder for it."""
    stubs = tmp_path / "stubs"
    (stubs / "torch").mkdir(parents=True)
    (stubs / "torch" / "__init__.py").write_text(STUB_TORCH)
    (stubs / "lmdeploy" / "cli").mkdir(parents=True)
    (stubs / "lmdeploy" / "__init__.py").write_text('__version__ = "0.0.0+stub"\n')
    (stubs / "lmdeploy" / "cli" / "__init__.py").write_text("")
    (stubs / "lmdeploy" / "cli" / "utils.py").write_text("class ArgumentHelper:\n    pass\n")
    # lmdeploy.archs.autoget_backend: the engine choice the worker asks for (no TurboMind here: pytorch)
    (stubs / "lmdeploy" / "archs.py").write_text("def autoget_backend(model_path, trust_remote_code=False):\n"
                                                  "    return 'pytorch'\n")
    (stubs / "lmdeploy" / "__main__.py").write_text(STUB_SERVER)
    python = tmp_path / "bin" / "python"
    python.parent.mkdir()
    python.write_text(f'#!/bin/sh\nPYTHONPATH="{stubs}" exec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    envs = tmp_path / "envs"
    (envs / "serve").mkdir(parents=True)
    (envs / "serve" / "env.json").write_text(json.dumps({"python": str(python)}))
    monkeypatch.setenv("VLHUB_ENVS_DIR", str(envs))
    monkeypatch.setattr(LMDeployBackend, "missing", lambda self: None)  # no GPU needed by the stubs
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    return model


def test_the_lmdeploy_worker_and_its_api_server_exit_once_renewals_stop(stub_serve_env: Path,
                                                                         no_janitor: None) -> None:
    entry = chatapi.load(str(stub_serve_env), "lmdeploy", {"engine": "pytorch"}, ttl=TTL)
    page = Renewer(entry)
    assert entry.wait(60) and entry.status == chatapi.READY, entry.error
    record = json.loads(entry.record.read_text())
    worker, log, server = entry.session.worker.proc, entry.session.worker.log, record["server_pid"]
    assert record["worker_pid"] == worker.pid and not gone(server)
    convo = entry.conversation(system="Be brief.")
    assert convo.answer("hi") == "system user"  # the system prompt reaches the server

    last = page.stop()
    wait_until(lambda: worker.poll() is not None and gone(server), TTL + MARGIN)
    assert time.time() - last <= TTL + MARGIN
    assert "not renewed" in Path(log).read_text()


def test_unload_while_loading_stops_the_worker_and_the_server(stub_serve_env: Path, monkeypatch) -> None:
    monkeypatch.setenv("STUB_LOAD_S", "120")  # the server never gets healthy in time
    entry = chatapi.load(str(stub_serve_env), "lmdeploy", {}, ttl=60)
    wait_until(lambda: len(descendants("serve api_server")) == 1, 30)
    procs = descendants("chat_lmdeploy.py") + descendants("serve api_server")
    assert entry.status == chatapi.LOADING and len(procs) == 2
    entry.unload()  # the Unload button
    wait_until(lambda: all(gone(p.pid) for p in procs), MARGIN)
    assert entry.wait(MARGIN) and entry.status == chatapi.UNLOADED and not entry.record.exists()
    assert chatapi.loaded() == []


def test_the_launcher_unloads_models_whose_lease_expired(monkeypatch) -> None:
    from servers.openai_api import OpenAITestServer

    with OpenAITestServer(models=("tuned",)) as srv:
        entry = chatapi.load("tuned", "openai", {"base_url": srv.base_url}, ttl=2)
        assert entry.wait(10) and entry.alive()
        assert chatapi.loaded() == [entry]
        wait_until(lambda: entry.status == chatapi.UNLOADED, 2 + MARGIN)  # the janitor, nobody renewing
    assert "lease expired" in entry.reason and not entry.record.exists() and chatapi.loaded() == []


def test_records_of_a_launcher_that_is_gone_are_cleaned_up() -> None:
    worker = subprocess.Popen(["sleep", "300"])
    server = subprocess.Popen(["sleep", "301"], start_new_session=True)
    stranger = subprocess.Popen(["sleep", "302"])
    folder = chatapi.workers_dir()
    folder.mkdir(parents=True)
    try:
        dead = {"pid": 2 ** 22 + 17, "pid_started": 1.0, "pid_cmdline": "sha256:0"}
        (folder / "dead.json").write_text(json.dumps({
            "launcher": dead, "lease_s": 180, **process_record(worker.pid, "worker_pid"),
            **process_record(server.pid, "server_pid")}))
        not_provably_ours = {**process_record(stranger.pid, "worker_pid"), "worker_pid_started": 1.0}
        (folder / "reused.json").write_text(json.dumps({"launcher": dead, "lease_s": 180, **not_provably_ours}))
        (folder / "live.json").write_text(json.dumps({"launcher": process_record(os.getpid()), "lease_s": 180}))
        assert set(chatapi.sweep()) <= {"dead", "reused"}  # (the janitor of an earlier test may be first)
        worker.wait(MARGIN)  # stopped (TimeoutExpired otherwise)
        server.wait(MARGIN)
        assert stranger.poll() is None  # a pid vlhub cannot prove it started is never signalled
        assert sorted(p.name for p in folder.iterdir()) == ["live.json"]
    finally:
        for proc in (worker, server, stranger):
            proc.kill()
            proc.wait()
