"""A long-lived stage worker: one process per chat session, JSON lines over stdin/stdout.

Unlike :func:`vlhub.core.stage.run_worker` (one-shot), the process stays up between
turns so that the model is loaded once. Its stderr goes to a log file whose path
is named in every error; closing stdin ends it.
"""
from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator

from vlhub.core import stage
from vlhub.core.errors import BadInput, VlhubError
from vlhub.core.secrets import redact


class WorkerProcess:
    """``workers/SCRIPT.py ARGS`` started with a stage environment's Python."""

    def __init__(self, python: Path, script: str, args: list[str]) -> None:
        with tempfile.NamedTemporaryFile(prefix=f"vlhub-{script}-", suffix=".log", delete=False) as handle:
            self.log = Path(handle.name)
        self.script = script
        with open(self.log, "w", encoding="utf-8") as sink:
            self.proc = subprocess.Popen(
                [str(python), str(stage.workers_dir() / f"{script}.py"), *args], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=sink, text=True, bufsize=1, env=stage.clean_env(None, python))

    def _fail(self, message: dict[str, Any]) -> VlhubError:
        cls = BadInput if message.get("code") == 2 else VlhubError
        hint = message.get("hint", "")
        return cls(redact(message.get("message", f"{self.script} failed")),
                   redact(f"{hint} (worker log: {self.log})" if hint else f"see the worker log {self.log}"))

    def _tail(self) -> str:
        lines = [line for line in self.log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
        return redact(lines[-1][:300]) if lines else f"exit {self.proc.poll()}"

    def events(self) -> Iterator[dict[str, Any]]:
        """The worker's JSON events until it stops; an ``error`` event or an early exit raises."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if not line.startswith("{"):
                continue
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue
            if message.get("event") == "error":
                raise self._fail(message)
            yield message
        self.proc.wait()
        raise VlhubError(f"the {self.script} worker stopped: {self._tail()}", f"see the worker log {self.log}")

    def wait_for(self, event: str) -> dict[str, Any]:
        """Read events until ``event`` arrives (progress events are skipped)."""
        return next(m for m in self.events() if m.get("event") == event)

    def send(self, request: dict[str, Any]) -> None:
        """One request line to the worker."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(request, ensure_ascii=False) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise VlhubError(f"the {self.script} worker is gone: {self._tail()}",
                             "restart the chat; the worker log says why") from exc

    def close(self, timeout: float = 30) -> None:
        """Close stdin (the worker exits) and wait, killing it if it does not; a clean exit drops the log."""
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
