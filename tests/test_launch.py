"""`vlhub launch`: serves on 127.0.0.1 only, refuses remote binding without --allow-remote."""
from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from conftest import run_vlhub


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
    pairs = dict(zip(argv[5::2], argv[6::2]))
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
