"""The JSON-lines protocol workers use to talk to vlhub (standard library only)."""
from __future__ import annotations

import json
import sys
from typing import Any, NoReturn


def _emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def progress(task: str, done: float, total: float | None = None, unit: str = "", message: str = "") -> None:
    """Report progress."""
    _emit("progress", task=task, done=done, total=total, unit=unit, message=message)


def result(**fields: Any) -> None:
    """Report the result (once)."""
    _emit("result", **fields)


def fail(message: str, hint: str = "", code: int = 2) -> NoReturn:
    """Report an error the user can fix and exit."""
    _emit("error", message=message, hint=hint, code=code)
    sys.exit(code)
