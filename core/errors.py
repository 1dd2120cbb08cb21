"""One error type for everything a user can fix or should know about.

A :class:`VlhubError` carries a one-line ``message`` (what is wrong, and where)
and a ``hint`` (the fix). The CLI prints both on one line and exits with
``exit_code``; the launcher shows them in an error box. :meth:`VlhubError.one_line`
passes through :func:`vlhub.core.secrets.redact`, so no page or command can show a token
or a URL's user-info from a message.
"""
from __future__ import annotations

from .secrets import redact


class VlhubError(Exception):
    """The work failed for a reason the user should read (exit code 1)."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "", *, where: str = "") -> None:
        self.message = message
        self.hint = hint
        self.where = where
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """``where: message. Fix: hint`` on a single line, secrets redacted."""
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text = f"{text.rstrip('.')}. Fix: {self.hint}"
        return redact(" ".join(text.split()))


class BadInput(VlhubError):
    """A file, field or flag the user gave is wrong (exit code 2)."""

    exit_code = 2


class MissingDependency(VlhubError):
    """Something must be installed first; the hint says how (exit code 2)."""

    exit_code = 2
