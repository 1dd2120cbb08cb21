"""No hang without a bound: a server that accepts and never answers ends every command in one line.

The server is a real TCP listener on 127.0.0.1 that accepts connections and never sends a byte
(a dead proxy, a hung hub). Each target (git over HTTP, Hugging Face's API, ModelScope's API, an
OpenAI-compatible endpoint) must give up within a bound set by ``VLHUB_CONNECT_TIMEOUT`` /
``VLHUB_READ_TIMEOUT`` and say which host did not answer and the fix. A second publish of the same
folder to the same target while one runs follows it and says so, instead of waiting on its lock.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import run_vlhub
from publish_helpers import make_model

LIMITS = {"VLHUB_CONNECT_TIMEOUT": "3", "VLHUB_READ_TIMEOUT": "3"}
#: Wall-clock bound for one command: the limits above, the SDKs' one retry, start-up.
BOUND_S = 45


@pytest.fixture
def silent() -> Iterator[int]:
    """A port whose server accepts every connection and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    listener.close()


def _target_env(kind: str, port: int) -> tuple[str, dict[str, str]]:
    base = f"http://127.0.0.1:{port}"
    if kind == "git":
        return f"git:{base}/org/InternVL2-silent", {"VLHUB_GIT_TOKEN": "silent-token-1234"}
    if kind == "hf":
        return "hf:tester/InternVL2-silent", {"HF_ENDPOINT": base, "HF_TOKEN": "hf_silenttoken1234"}
    return "modelscope:tester/InternVL2-silent", {"MODELSCOPE_ENDPOINT": base,
                                                   "MODELSCOPE_API_TOKEN": "silent-ms-token-1234"}


@pytest.mark.parametrize("kind", ["git", "hf", "modelscope"])
def test_publish_to_a_silent_server_ends_in_one_line(kind: str, silent: int, tmp_path: Path,
                                                     isolated: Path) -> None:
    model = make_model(tmp_path / "model")
    target, env = _target_env(kind, silent)
    started = time.monotonic()
    proc = run_vlhub("publish", str(model), "--to", target, "--dry-run",
                     env={**env, **LIMITS, "MODELSCOPE_CACHE": str(tmp_path / "ms")}, timeout=BOUND_S + 30)
    elapsed = time.monotonic() - started
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    shown = f"exit {proc.returncode} after {elapsed:.0f}s\n{proc.stderr[-2000:]}"
    assert proc.returncode != 0 and elapsed < BOUND_S, shown
    assert len(errors) == 1 and "Fix:" in errors[0] and "Traceback" not in proc.stderr, shown
    assert f"127.0.0.1:{silent}" in errors[0], shown
    assert "VLHUB_READ_TIMEOUT" in errors[0] or "VLHUB_CONNECT_TIMEOUT" in errors[0], shown


def test_chat_with_a_silent_endpoint_ends_in_one_line(silent: int, isolated: Path) -> None:
    started = time.monotonic()
    proc = run_vlhub("chat", "--backend", "openai", "--base-url", f"http://127.0.0.1:{silent}/v1", "--model", "m",
                     "-m", "hi", env=LIMITS, timeout=BOUND_S + 30)
    elapsed = time.monotonic() - started
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    shown = f"exit {proc.returncode} after {elapsed:.0f}s\n{proc.stderr[-2000:]}"
    assert proc.returncode == 1 and elapsed < BOUND_S, shown
    assert len(errors) == 1 and f"127.0.0.1:{silent}" in errors[0] and "VLHUB_READ_TIMEOUT" in errors[0], shown


def test_bad_timeout_setting_is_refused(isolated: Path, tmp_path: Path) -> None:
    proc = run_vlhub("publish", str(make_model(tmp_path / "m")), "--to", "git:http://127.0.0.1:9/o/n", "--dry-run",
                     env={"VLHUB_READ_TIMEOUT": "soon"})
    assert proc.returncode == 2 and "VLHUB_READ_TIMEOUT='soon' is not a positive number of seconds" in proc.stderr


def test_git_sees_the_limits_through_its_environment_only() -> None:
    from vlhub.core.net import with_git_config

    env = with_git_config({"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "credential.helper", "GIT_CONFIG_VALUE_0": ""})
    proc = subprocess.run(["git", "config", "--get", "http.lowSpeedTime"], capture_output=True, text=True,
                          env={**os.environ, **env})
    assert proc.stdout.strip() == "30" and env["GIT_CONFIG_KEY_0"] == "credential.helper"
    assert {env[f"GIT_CONFIG_KEY_{i}"] for i in range(int(env["GIT_CONFIG_COUNT"]))} >= {
        "lfs.dialtimeout", "lfs.activitytimeout", "http.lowSpeedLimit"}


def test_second_publish_follows_the_running_one(silent: int, tmp_path: Path, isolated: Path) -> None:
    """The first publish hangs on a silent remote; the same publish again says so at once and follows it."""
    model = make_model(tmp_path / "model")
    target, env = _target_env("git", silent)
    env = {**os.environ, **env, "VLHUB_CONNECT_TIMEOUT": "3", "VLHUB_READ_TIMEOUT": "8"}
    exe = str(Path(sys.executable).parent / "vlhub")
    first = subprocess.Popen([exe, "publish", str(model), "--to", target], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        running = None
        while time.monotonic() < deadline and running is None:
            for path in (Path(os.environ["VLHUB_HOME"]) / "runs").glob("*-publish-*/run.json"):
                data = json.loads(path.read_text())
                if data.get("status") == "running":
                    running = data
            time.sleep(0.2)
        assert running is not None, "the first publish recorded no running run"
        started = time.monotonic()
        second = run_vlhub("publish", str(model), "--to", target, "--dry-run", env=env, timeout=BOUND_S + 30)
        elapsed = time.monotonic() - started
        first_rc = first.wait(BOUND_S)
    finally:
        if first.poll() is None:
            first.kill()
    assert f"already running as run {running['id']} (pid {first.pid}); following it" in second.stderr, second.stderr
    assert elapsed < BOUND_S, f"{elapsed:.0f}s"
    assert first_rc == 1 and second.returncode == 1, second.stderr
    assert "Traceback" not in second.stderr
    runs = list((Path(os.environ["VLHUB_HOME"]) / "runs").glob("*-publish-*"))
    assert len(runs) == 1, "the second command must not start a publish of its own"
