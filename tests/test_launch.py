"""`vlhub launch`: serves on 127.0.0.1 only, refuses remote binding without --allow-remote,
answers only requests whose Host is this machine (DNS rebinding), keeps the port it is given (or
says in one line who holds it), and runs once per VLHUB_HOME."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
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


# ------------------------------------------------------------------ the port, and one launcher per VLHUB_HOME
class _Launch:
    """A real `vlhub launch --no-browser ARGS` whose stderr lines are collected by a thread (bounded waits)."""

    def __init__(self, env: dict[str, str], *args: str, new_session: bool = False) -> None:
        exe = Path(sys.executable).parent / "vlhub"
        self.proc = subprocess.Popen([str(exe), "launch", "--no-browser", *args], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, env=env, start_new_session=new_session)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def url(self) -> str | None:
        """The URL it serves, once it printed it."""
        found = [m.group(1) for line in list(self.lines) if (m := re.search(r"vlhub launcher: (http://\S+)", line))]
        return found[0] if found else None

    def finished(self) -> bool:
        if self.proc.poll() is None:
            return False
        self._reader.join(5)  # the rest of its output
        return True

    def stop(self) -> None:
        _stop(self.proc)
        self._reader.join(5)


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in TOKEN_VARS}
    env.update(VLHUB_HOME=str(home / "vlhub-home"), HOME=str(home))
    return env


def _wait(condition, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f} s"
        time.sleep(0.1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch_guards(pid: int) -> list[psutil.Process]:
    """The Streamlit servers (`python -m vlhub.core.launch_guard`) under ``pid``."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [c for c in children if "vlhub.core.launch_guard" in c.cmdline()]


def test_two_launches_at_once_end_with_one_server(tmp_path: Path) -> None:
    """The second `vlhub launch` of a VLHUB_HOME, started at the same moment, opens the first one and exits 0."""
    env, port = _env(tmp_path), _free_port()
    both = [_Launch(env, "--port", str(port)), _Launch(env, "--port", str(port))]
    try:
        _wait(lambda: any(b.finished() for b in both) and any(b.url() for b in both), 90,
              "server and no 'already running' exit")
        second = next(b for b in both if b.finished())
        first = next(b for b in both if b is not second)
        url = f"http://127.0.0.1:{port}"
        assert first.url() == url and first.proc.poll() is None
        assert second.proc.returncode == 0, second.lines
        assert f"vlhub launcher already running at {url} (pid {first.proc.pid})" in second.lines, second.lines
        assert not any("Error" in line for line in second.lines)
        assert len(_launch_guards(first.proc.pid)) == 1 and _launch_guards(second.proc.pid) == []
        record = json.loads((tmp_path / "vlhub-home" / "launcher.json").read_text())
        assert record["url"] == url and record["pid"] == first.proc.pid
        assert record["server_pid"] == _launch_guards(first.proc.pid)[0].pid
        with urllib.request.urlopen(url + "/_stcore/health", timeout=5) as resp:
            assert resp.status == 200

        third = run_vlhub("launch", "--no-browser", env=env, timeout=60)  # later, and without --port: the same
        assert third.returncode == 0 and f"already running at {url} (pid {first.proc.pid})" in third.stderr
    finally:
        for launch in both:
            launch.stop()
    assert not (tmp_path / "vlhub-home" / "launcher.json").exists()  # removed when the launcher stopped


def test_a_record_that_proves_nothing_is_not_trusted(tmp_path: Path) -> None:
    """launcher.json naming a live process that is not that launcher (or a dead URL): a new server starts."""
    from vlhub.core.fsutil import atomic_write_json
    from vlhub.core.runs import process_record

    home = tmp_path / "vlhub-home"
    atomic_write_json(home / "launcher.json", {"url": "http://127.0.0.1:9", "host": "127.0.0.1", "port": 9,
                                               "vlhub_home": str(home.resolve()),
                                               **process_record(os.getpid(), "pid")})  # alive, no server
    proc, port = _start_launcher(tmp_path)
    try:
        record = json.loads((home / "launcher.json").read_text())
        assert record["pid"] == proc.pid and record["port"] == port
    finally:
        _stop(proc)


def test_a_server_left_by_a_killed_launch_is_stopped_and_its_port_reused(tmp_path: Path) -> None:
    """`vlhub launch` killed with SIGKILL leaves its server running; the next launch of that home stops it
    (proven by its record) instead of calling the port "in use by another program". The first runs in a
    session of its own, as a shell's job does (vlhub never signals its own process group)."""
    env, port = _env(tmp_path), _free_port()
    first = _Launch(env, "--port", str(port), new_session=True)
    orphans: list[psutil.Process] = []
    try:
        _wait(lambda: first.url() or first.finished(), 60, "URL")
        orphans = _launch_guards(first.proc.pid)
        assert len(orphans) == 1
        first.proc.kill()
        first.proc.wait(15)
        assert orphans[0].is_running()
        second = _Launch(env, "--port", str(port))
        try:
            _wait(lambda: second.url() or second.finished(), 60, "URL")
            assert second.url() == f"http://127.0.0.1:{port}", second.lines
            assert any(f"(pid {orphans[0].pid})" in line and "stopped the launcher server" in line
                       for line in second.lines), second.lines
            assert not orphans[0].is_running()
        finally:
            second.stop()
    finally:
        first.stop()
        for orphan in orphans:
            if orphan.is_running():
                orphan.kill()


def test_a_named_port_held_by_another_program_is_one_line_exit_2(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = run_vlhub("launch", "--no-browser", "--port", str(port), env=_env(tmp_path), timeout=60)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert line.startswith(f"Error: port {port} on 127.0.0.1 is in use by another program (pid {os.getpid()}, ")
    assert "Fix: " in line and "--port 0" in line
    assert not (tmp_path / "vlhub-home" / "launcher.json").exists()


def test_a_named_free_port_is_kept_across_a_restart(tmp_path: Path) -> None:
    """--port N serves on N, and again on N right after a restart while the old connections still linger
    (the probe binds with SO_REUSEADDR, as Streamlit does), so an open tab reconnects."""
    env, port = _env(tmp_path), _free_port()
    first, tab = _Launch(env, "--port", str(port)), None
    try:
        _wait(lambda: first.url() or first.finished(), 60, "URL")
        assert first.url() == f"http://127.0.0.1:{port}", first.lines
        tab = socket.create_connection(("127.0.0.1", port), timeout=5)  # a keep-alive connection, like a tab's
        tab.sendall(f"GET /_stcore/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        assert tab.recv(64).startswith(b"HTTP/1.1 200")
    finally:
        first.stop()
    try:
        lingering = [c.status for c in psutil.net_connections(kind="tcp")
                     if c.laddr and c.laddr.port == port and c.status != psutil.CONN_LISTEN]
        assert lingering, "the old server left no connection behind: the test would prove nothing"
        second = _Launch(env, "--port", str(port))
        try:
            _wait(lambda: second.url() or second.finished(), 60, "URL")
            assert second.url() == f"http://127.0.0.1:{port}", second.lines
        finally:
            second.stop()
    finally:
        if tab is not None:
            tab.close()


def test_the_default_port_falls_back_and_says_so() -> None:
    from vlhub.core.launch import choose_port

    said: list[str] = []
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        chosen = choose_port("127.0.0.1", port, strict=False, say=said.append)
    assert chosen not in (0, port)
    assert said == [f"port {port} on 127.0.0.1 is in use by another program (pid {os.getpid()}, "
                    f"{psutil.Process().name()}); serving on port {chosen} instead"]
    assert choose_port("127.0.0.1", 0, strict=True) > 0  # --port 0: any free port
