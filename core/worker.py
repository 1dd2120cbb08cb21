"""The worker protocol: scripts that run inside a stage environment and talk to vlhub in JSON lines.

vlhub never imports torch, xtuner or lmdeploy; a plugin that needs them ships a *worker script* and
runs it with a stage environment's Python (:mod:`vlhub.core.stage`), built-in or third-party alike:

- :func:`run_worker`: one request, one answer (inspect a config, convert a checkpoint);
- :class:`WorkerProcess`: a process that stays up between requests (a chat model loaded once).

The script writes one JSON object per line on stdout, each with an ``event``:

``{"event": "progress", "task": ..., "done": ..., "total": ..., "unit": ..., "message": ...}``
    progress, passed on as :class:`vlhub.core.types.Progress`;
``{"event": "result", ...}``
    the answer of a one-shot worker (once);
``{"event": "error", "message": ..., "hint": ..., "code": 2}``
    a failure the user can fix (code 2: their input; 1: the work), raised as :class:`BadInput` or
    :class:`VlhubError`; errors cross the boundary as these lines, never as tracebacks;
any other event (``ready``, ``chunk``, ``done``, ...)
    defined by the plugin and its script (:meth:`WorkerProcess.events` yields them).

Lines that are not JSON objects (a library printing to stdout) are skipped; stderr is kept for the
debug log (one-shot) or a log file named in every error (long-lived). A long-lived worker reads one
JSON request per line on stdin and ends when stdin is closed.
"""
from __future__ import annotations

import json
import logging
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from . import stage
from .errors import BadInput, VlhubError
from .secrets import redact
from .types import Progress, ProgressCallback

PROGRESS_FIELDS = ("task", "done", "total", "unit", "message")


def parse_line(line: str) -> dict[str, Any] | None:
    """One stdout line of a worker as an event, or ``None`` when it is not a JSON object with an ``event``."""
    try:
        message = json.loads(line)
    except json.JSONDecodeError:
        return None
    return message if isinstance(message, dict) and "event" in message else None


def events(lines: Iterable[str], log: Path | None = None) -> Iterator[dict[str, Any]]:
    """The events among a worker's stdout lines, in order; an ``error`` event is raised.

    Args:
        lines: the worker's stdout.
        log: the worker's log file, named in the error's hint.
    Raises:
        BadInput, VlhubError: the worker reported an error (see :func:`error_of`).
    """
    for line in lines:
        message = parse_line(line)
        if message is None:
            continue
        if message["event"] == "error":
            raise error_of(message, log)
        yield message


def error_of(message: Mapping[str, Any], log: Path | None = None) -> VlhubError:
    """The exception for an ``error`` event (redacted; ``log`` named in the hint when given)."""
    cls = BadInput if message.get("code") == 2 else VlhubError
    hint = str(message.get("hint") or "")
    if log is not None:
        hint = f"{hint} (worker log: {log})" if hint else f"see the worker log {log}"
    return cls(redact(str(message.get("message") or "the worker failed")), redact(hint))


def progress_of(message: Mapping[str, Any]) -> Progress:
    """A ``progress`` event as :class:`Progress`."""
    return Progress(**{k: message[k] for k in PROGRESS_FIELDS if k in message})


def run_worker(env: str, script: Path, args: list[str], *, progress: ProgressCallback | None = None,
               timeout: float | None = None, extra_env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run ``script ARGS`` once with stage environment ``env``'s Python and return its result.

    Args:
        env: the stage environment's name (``train``, ``serve`` or one a plugin declares).
        script: the worker script's path (a plugin ships it; it is run as a file).
        args: its arguments.
        progress: receives its ``progress`` events.
        timeout: seconds after which it is killed (checked as its lines arrive); ``None``: no limit.
        extra_env: variables set on top of the stage environment's (e.g. ``PYTHONPATH``).
    Returns:
        The fields of its ``result`` event.
    Raises:
        MissingDependency: the stage environment is not installed.
        BadInput, VlhubError: the worker reported an error, timed out, or ended without a result (the
            last line of its stderr is named; the whole of it goes to the debug log).
    """
    python = stage.require(env)
    name = Path(script).stem
    proc = subprocess.Popen([str(python), str(script), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=stage.clean_env(extra_env, python))
    assert proc.stdout is not None and proc.stderr is not None
    result: dict[str, Any] | None = None
    deadline = time.monotonic() + timeout if timeout else None
    try:
        for message in events(proc.stdout):
            if message["event"] == "progress" and progress:
                progress(progress_of(message))
            elif message["event"] == "result":
                result = {k: v for k, v in message.items() if k != "event"}
            if deadline and time.monotonic() > deadline:
                raise VlhubError(f"{name} in the {env} environment timed out", "try again, or run with --debug")
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    stderr = proc.stderr.read()
    code = proc.wait()
    if code != 0 or result is None:
        logging.getLogger(__name__).debug("%s stderr:\n%s", name, redact(stderr))
        tail = redact(stderr.strip().splitlines()[-1] if stderr.strip() else f"exit {code}")
        raise VlhubError(f"{name} failed in the {env} environment: {tail}",
                         "`vlhub env check` shows the environment; rerun with `vlhub --debug` for the full log")
    return result


class WorkerProcess:
    """A long-lived worker: ``script ARGS`` with a stage environment's Python, requests on stdin.

    Its stderr goes to a log file whose path is named in every error; a clean exit removes it.
    """

    def __init__(self, python: Path, script: Path, args: list[str]) -> None:
        """Start the worker.

        Args:
            python: the stage environment's Python (:func:`vlhub.core.stage.require`).
            script: the worker script's path.
            args: its arguments.
        Raises:
            OSError: the interpreter cannot be started.
        """
        self.script = Path(script).stem
        with tempfile.NamedTemporaryFile(prefix=f"vlhub-{self.script}-", suffix=".log", delete=False) as handle:
            self.log = Path(handle.name)
        with open(self.log, "w", encoding="utf-8") as sink:
            self.proc = subprocess.Popen(
                [str(python), str(script), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=sink,
                text=True, bufsize=1, env=stage.clean_env(None, python))

    def _tail(self) -> str:
        lines = [line for line in self.log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
        return redact(lines[-1][:300]) if lines else f"exit {self.proc.poll()}"

    def events(self) -> Iterator[dict[str, Any]]:
        """The worker's events until it stops.

        Raises:
            BadInput, VlhubError: an ``error`` event (the log named in the hint), or the worker ended.
        """
        assert self.proc.stdout is not None
        yield from events(self.proc.stdout, self.log)
        self.proc.wait()
        raise VlhubError(f"the {self.script} worker stopped: {self._tail()}", f"see the worker log {self.log}")

    def wait_for(self, event: str) -> dict[str, Any]:
        """Read events until ``event`` arrives (others, e.g. progress, are skipped) and return it.

        Raises:
            BadInput, VlhubError: as :meth:`events`.
        """
        return next(m for m in self.events() if m.get("event") == event)

    def send(self, request: dict[str, Any]) -> None:
        """Write one request line to the worker.

        Raises:
            VlhubError: the worker is gone (its log's last line is named).
        """
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(request, ensure_ascii=False) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise VlhubError(f"the {self.script} worker is gone: {self._tail()}",
                             "restart the chat; the worker log says why") from exc

    def close(self, timeout: float = 30) -> None:
        """Close stdin (the worker exits) and wait ``timeout`` s, then kill it; a clean exit drops the log."""
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(timeout)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        if self.proc.returncode == 0:
            self.log.unlink(missing_ok=True)
