"""LMDeploy's OpenAI-compatible ``api_server`` for one model folder, kept alive while vlhub holds stdin
(and renews the lease, when it gives one).

Usage: ``chat_lmdeploy.py MODEL_DIR --model-name NAME [--engine turbomind|pytorch] [--tp N]
[--session-len N] [--max-batch-size N] [--cache-max-entry-count F] [--eager-mode] [--timeout S]
[--lease FILE --lease-ttl SECONDS]`` (a setting left out is LMDeploy's own default).

The engine is chosen here, with LMDeploy's own rule (:func:`chosen_engine`), and the server is started
with it, so the worker knows which engine answers. Starts ``python -m lmdeploy serve api_server`` on a
free 127.0.0.1 port (its output in a temporary log named in errors), waits until ``/health`` answers
200, prints ``{"event": "ready", "base_url": ..., "model": ..., "server_pid": ..., "engine":
"turbomind" | "pytorch", "engine_asked": ..., "eager_mode": bool}``, then waits for stdin to close
and stops the server (dropping its log after a clean stop). Each request runs in the server's
own event loop, so lmdeploy issue 2101 (several images / turns through
``pipeline.chat`` in a foreign loop) cannot happen and nothing is patched.

The server runs in its own process group, so it is stopped with the whole group whenever the worker
ends: stdin closed, SIGTERM, or the end of its lease (:mod:`chat_lease`: the launcher stopped renewing
the file, e.g. the Chat tab was closed; checked while the server loads too). The ready event names the
server's pid (``server_pid``) for the launcher's record.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import _protocol
import chat_lease

#: The api_server process, once started (stopped by :func:`stop_server` from any thread).
SERVER: list[subprocess.Popen] = []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def chosen_engine(model: str, asked: str) -> str:
    """The engine the server runs: ``pytorch`` when asked for; for ``turbomind``, LMDeploy's own choice,
    ``lmdeploy.archs.autoget_backend`` (TurboMind when it is installed and supports the model, else
    ``pytorch``), the call ``lmdeploy serve api_server`` itself makes for any backend but pytorch."""
    if asked == "pytorch":
        return "pytorch"
    from lmdeploy.archs import autoget_backend

    if "trust_remote_code" in inspect.signature(autoget_backend).parameters:  # InternVL2 folders carry remote code
        return autoget_backend(model, trust_remote_code=True)
    return autoget_backend(model)


def server_command(args: argparse.Namespace, port: int, engine: str) -> list[str]:
    """The ``lmdeploy serve api_server`` argv for these settings and the chosen ``engine``."""
    from lmdeploy.cli.utils import ArgumentHelper

    cmd = [sys.executable, "-m", "lmdeploy", "serve", "api_server", args.model,
           "--server-name", "127.0.0.1", "--server-port", str(port), "--backend", engine,
           "--tp", str(args.tp), "--model-name", args.model_name, "--log-level", "WARNING"]
    if args.max_batch_size:
        cmd += ["--max-batch-size", str(args.max_batch_size)]
    if args.cache_max_entry_count:
        cmd += ["--cache-max-entry-count", str(args.cache_max_entry_count)]
    if args.session_len:
        cmd += ["--session-len", str(args.session_len)]
    if args.eager_mode and engine == "pytorch":
        cmd.append("--eager-mode")
    if hasattr(ArgumentHelper, "trust_remote_code"):  # InternVL2 folders carry remote code
        cmd.append("--trust-remote-code")
    return cmd


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def log_tail(log: Path) -> str:
    lines = [line for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


def stop_server(grace: float = 30) -> None:
    """Stop the api_server's process group: SIGTERM, then SIGKILL after ``grace`` seconds."""
    for server in SERVER:
        if server.poll() is not None:
            continue
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        except ProcessLookupError:
            pass


def on_sigterm(signum: int, frame: object) -> None:
    stop_server(10)
    os._exit(128 + signum)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--engine", default="turbomind", choices=["turbomind", "pytorch"])
    parser.add_argument("--tp", type=int, default=1)
    parser.add_argument("--session-len", type=int, default=None)
    parser.add_argument("--max-batch-size", type=int, default=None)
    parser.add_argument("--cache-max-entry-count", type=float, default=None)
    parser.add_argument("--eager-mode", action="store_true")
    parser.add_argument("--timeout", type=float, default=1800)
    chat_lease.add_arguments(parser)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, on_sigterm)
    chat_lease.watch(args.lease, args.lease_ttl, on_expire=stop_server)
    try:
        import lmdeploy
        import torch
    except ImportError as exc:
        _protocol.fail(f"the serve environment cannot import {exc.name}", "run `vlhub env create serve`")
    if not torch.cuda.is_available():
        _protocol.fail("LMDeploy needs an NVIDIA GPU and none is visible",
                       "use --backend transformers (CPU) or run on a GPU machine")
    if torch.cuda.device_count() < args.tp:
        _protocol.fail(f"--tp {args.tp} needs {args.tp} GPUs, {torch.cuda.device_count()} visible",
                       f"use --tp {torch.cuda.device_count()} or fewer")
    try:
        engine = chosen_engine(args.model, args.engine)
    except Exception as exc:  # noqa: BLE001 - LMDeploy's check reads the folder's config and remote code
        _protocol.fail(f"LMDeploy could not tell whether TurboMind runs {args.model} ({type(exc).__name__}: {exc})",
                       "pass --engine pytorch", code=1)
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="vlhub-lmdeploy-server-", suffix=".log")[1])
    with open(log, "w", encoding="utf-8") as sink:
        server = subprocess.Popen(server_command(args, port, engine), stdout=sink, stderr=subprocess.STDOUT,
                                  env=os.environ.copy(), start_new_session=True)
    SERVER.append(server)
    started = time.monotonic()
    while not healthy(port):
        if server.poll() is not None:
            _protocol.fail(f"lmdeploy api_server exited ({server.returncode}): {log_tail(log)}",
                           f"read {log}", code=1)
        if time.monotonic() - started > args.timeout:
            os.killpg(server.pid, signal.SIGKILL)
            _protocol.fail(f"lmdeploy api_server was not ready after {args.timeout:.0f} s", f"read {log}", code=1)
        _protocol.progress("lmdeploy api_server", time.monotonic() - started, None, "s", "loading")
        time.sleep(1)
    print(json.dumps({"event": "ready", "base_url": f"http://127.0.0.1:{port}/v1", "model": args.model_name,
                      "lmdeploy": lmdeploy.__version__, "log": str(log), "server_pid": server.pid, "engine": engine,
                      "engine_asked": args.engine, "eager_mode": bool(args.eager_mode and engine == "pytorch")}),
          flush=True)
    sys.stdin.read()
    stop_server(60)
    if server.returncode != -signal.SIGKILL:  # a clean stop: its log holds nothing worth keeping
        log.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
