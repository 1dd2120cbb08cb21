"""`vlhub launch`: serves on 127.0.0.1 only, refuses remote binding without --allow-remote,
answers only requests whose Host is this machine (DNS rebinding)."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from conftest import TOKEN_VARS, run_vlhub


def _other_addresses() -> list[str]:
    return [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
            if a.family == socket.AF_INET and not a.address.startswith("127.")]


def test_launch_serves_on_loopback_within_15s() -> None:
    exe = Path(sys.executable).parent / "vlhub"
    proc = subprocess.Popen([str(exe), "launch", "--no-browser", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        start = time.monotonic()
        url = None
        assert proc.stderr is not None
        while time.monotonic() - start < 15 and url is None:
            line = proc.stderr.readline()
            match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
            url = match.group(1) if match else None
        assert url, "the launcher printed no URL within 15 s"
        with urllib.request.urlopen(url, timeout=5) as resp:
            assert resp.status == 200 and b"<html" in resp.read(2048).lower()
        assert time.monotonic() - start < 15
        port = int(url.rsplit(":", 1)[1])
        for address in _other_addresses():
            with socket.socket() as sock, pytest.raises(OSError):
                sock.settimeout(2)
                sock.connect((address, port))
    finally:
        proc.terminate()
        proc.wait(15)
    with socket.socket() as sock, pytest.raises(OSError):  # SIGTERM stopped the Streamlit server as well
        sock.settimeout(2)
        sock.connect(("127.0.0.1", port))


def test_remote_host_needs_allow_remote() -> None:
    proc = run_vlhub("launch", "--no-browser", "--host", "0.0.0.0")
    assert proc.returncode == 2
    assert "--allow-remote" in proc.stderr


def test_streamlit_command_is_hardened() -> None:
    from vlhub.core.launch import streamlit_command

    argv = streamlit_command("127.0.0.1", 8600)
    assert argv[1:6] == ["-m", "vlhub.core.launch_guard", "127.0.0.1", "--", "run"]  # behind the Host guard
    pairs = dict(zip(argv[7::2], argv[8::2]))
    assert pairs["--server.address"] == "127.0.0.1"
    assert pairs["--server.enableXsrfProtection"] == "true"
    assert pairs["--server.fileWatcherType"] == "none"
    assert pairs["--browser.gatherUsageStats"] == "false"


def test_allow_remote_warns_before_serving() -> None:
    exe = Path(sys.executable).parent / "vlhub"
    proc = subprocess.Popen([str(exe), "launch", "--no-browser", "--host", "0.0.0.0", "--allow-remote", "--port", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line.startswith("WARNING") and "reachable from other machines on 0.0.0.0" in line
    finally:
        proc.terminate()
        proc.wait(15)


# ------------------------------------------------------------------ DNS rebinding (Host guard)
def _start_launcher(home: Path, *args: str) -> tuple[subprocess.Popen, int]:
    """A real `vlhub launch --no-browser --port 0 ARGS` and the port it printed."""
    exe = Path(sys.executable).parent / "vlhub"
    env = {k: v for k, v in os.environ.items() if k not in TOKEN_VARS}
    env.update(VLHUB_HOME=str(home / "vlhub-home"), HOME=str(home))
    proc = subprocess.Popen([str(exe), "launch", "--no-browser", "--port", "0", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    start = time.monotonic()
    while time.monotonic() - start < 30:
        match = re.search(r"vlhub launcher: http://\S+:(\d+)", proc.stderr.readline())
        if match:
            return proc, int(match.group(1))
        if proc.poll() is not None:
            break
    _stop(proc)
    raise AssertionError("the launcher printed no URL within 30 s")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.fixture(scope="module")
def launcher_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """One launcher on 127.0.0.1 for the module's Host-guard tests; stopped at the end."""
    proc, port = _start_launcher(tmp_path_factory.mktemp("launcher"))
    yield port
    _stop(proc)


def _exchange(port: int, *header_lines: str, address: str = "127.0.0.1",
              start_line: str = "GET / HTTP/1.1") -> tuple[int, dict[str, str], bytes]:
    """Send one raw request; the response's status, headers (lower-case names) and body."""
    request = "\r\n".join([start_line, *header_lines, "", ""]).encode("latin-1")
    with socket.create_connection((address, port), timeout=5) as sock:
        sock.settimeout(5)
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"the connection closed before a complete response: {data!r}"
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {name.strip().lower(): value.strip()
                   for name, _, value in (line.partition(":") for line in lines[1:])}
        while len(body) < int(headers.get("content-length", 0)):
            chunk = sock.recv(65536)
            assert chunk, "the connection closed before the whole body"
            body += chunk
    return int(lines[0].split()[1]), headers, body


def _websocket(host: str, origin: str) -> tuple[str, ...]:
    return (f"Host: {host}", f"Origin: {origin}", "Upgrade: websocket", "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Protocol: streamlit")


def _assert_refused(response: tuple[int, dict[str, str], bytes]) -> None:
    status, headers, body = response
    assert status == 403
    assert headers["content-type"].startswith("text/plain") and body.startswith(b"Forbidden")


def test_host_name_parser() -> None:
    from vlhub.core.launch_guard import allowed_names, host_name

    assert host_name("127.0.0.1:8501") == "127.0.0.1"
    assert host_name("LocalHost.:9000") == "localhost"
    assert host_name("localhost") == "localhost"
    assert host_name("[::1]:8501") == "::1"
    assert host_name("[::1]") == "::1"
    assert host_name("127.0.0.1.evil.example:8501") == "127.0.0.1.evil.example"
    for malformed in (None, "", "::1", "::1:8501", "localhost:", "localhost:port", "[::1", "[::1]x", ":8501"):
        assert host_name(malformed) is None, malformed
    assert allowed_names() == {"127.0.0.1", "localhost", "::1"}
    assert allowed_names(["Box.LAN."]) == {"127.0.0.1", "localhost", "::1", "box.lan"}


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "[::1]:{port}", "LOCALHOST.:{port}",
                                  "127.0.0.1:9000"])  # another port: `ssh -L 9000:127.0.0.1:8501`
def test_loopback_hosts_are_served(launcher_port: int, host: str) -> None:
    host = host.format(port=launcher_port)
    status, _, body = _exchange(launcher_port, f"Host: {host}", f"Origin: http://{host}", "Connection: close")
    assert status == 200 and b"<html" in body[:2048].lower()


@pytest.mark.parametrize("host", ["evil.example:{port}", "evil.example", "127.0.0.1.evil.example:{port}",
                                  "localhost.evil.example:{port}", "0.0.0.0:{port}"])
def test_other_hosts_are_refused(launcher_port: int, host: str) -> None:
    host = host.format(port=launcher_port)
    _assert_refused(_exchange(launcher_port, f"Host: {host}", f"Origin: http://{host}", "Connection: close"))
    _assert_refused(_exchange(launcher_port, f"Host: {host}", "Connection: close",
                              start_line="GET /_stcore/health HTTP/1.1"))


def test_request_without_host_is_refused(launcher_port: int) -> None:
    _assert_refused(_exchange(launcher_port, start_line="GET / HTTP/1.0"))


def test_websocket_upgrade_needs_a_local_host(launcher_port: int) -> None:
    stream = "GET /_stcore/stream HTTP/1.1"
    evil = f"evil.example:{launcher_port}"
    _assert_refused(_exchange(launcher_port, *_websocket(evil, f"http://{evil}"), start_line=stream))
    _assert_refused(_exchange(launcher_port, *_websocket("evil.example", "http://evil.example"), start_line=stream))
    local = f"127.0.0.1:{launcher_port}"
    status, headers, _ = _exchange(launcher_port, *_websocket(local, f"http://{local}"), start_line=stream)
    assert status == 101 and headers["upgrade"].lower() == "websocket"


def test_allow_remote_host_is_served_by_its_exact_name(tmp_path: Path) -> None:
    proc, port = _start_launcher(tmp_path, "--host", "127.0.0.2", "--allow-remote")
    try:
        for host in (f"127.0.0.2:{port}", f"127.0.0.1:{port}"):
            assert _exchange(port, f"Host: {host}", "Connection: close", address="127.0.0.2")[0] == 200
        _assert_refused(_exchange(port, f"Host: 127.0.0.3:{port}", "Connection: close", address="127.0.0.2"))
    finally:
        _stop(proc)


def test_guard_refuses_to_start_without_its_hook(tmp_path: Path) -> None:
    """A Streamlit without the hook point: the launcher exits with a clear error instead of serving unguarded."""
    package = tmp_path / "streamlit" / "web" / "server"
    package.mkdir(parents=True)
    for folder in (package, package.parent, package.parent.parent):
        (folder / "__init__.py").write_text("")
    proc = subprocess.run([sys.executable, "-m", "vlhub.core.launch_guard", "--", "run", "app.py"],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 2
    assert "cannot guard the launcher against DNS rebinding" in proc.stderr
    assert "create_starlette_app" in proc.stderr and "Traceback" not in proc.stderr
