"""One error type for everything a user can fix or should know about.

A :class:`VlhubError` carries a one-line ``message`` (what is wrong, and where) and a ``hint``
(the fix). It is made either from a catalog key and its arguments,
``BadInput("out.exists", flag="--out", path=p)`` (the text is in :mod:`vlhub.core.messages`, in
English and 中文), or, for messages not yet in the catalog, from the English text itself,
``VlhubError("what happened", "the fix")``. The CLI prints :meth:`VlhubError.one_line` and exits
with ``exit_code``; the launcher's pages show :meth:`VlhubError.localized` in the page's language
with CLI flags replaced by the page's field labels. Both pass through
:func:`vlhub.core.secrets.redact`, so no page or command can show a token or a URL's user-info.
"""
from __future__ import annotations

from typing import Any, Mapping

from . import messages
from .secrets import redact


class VlhubError(Exception):
    """The work failed for a reason the user should read (exit code 1).

    Args:
        message: a catalog key (:data:`vlhub.core.messages.CATALOG`), or the English message.
        hint: the English fix (only with a plain message).
        where: a prefix naming the file or target the message is about.
        **params: the key's arguments (``path``, ``flag``, ...).
    """

    exit_code = 1

    def __init__(self, message: str, hint: str = "", *, where: str = "", **params: Any) -> None:
        self.key = message if not hint and message in messages.CATALOG else ""
        self.params = params
        if self.key:
            message, hint = messages.render(self.key, "en", params)
        self.message = message
        self.hint = hint
        self.where = where
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """``where: message. Fix: hint`` on a single line (English), secrets redacted."""
        return _join(self.where, self.message, self.hint, "Fix")

    def localized(self, lang: str, labels: Mapping[str, str] | None = None) -> str:
        """The one line in ``lang`` (``"en"`` or ``"zh"``), CLI flags replaced by field labels.

        Args:
            lang: the page's language; a key without that translation, or a plain message, stays English.
            labels: flag -> the page's label for it (e.g. ``{"--out": "输出文件夹"}``).
        """
        labels = labels or {}
        if self.key:
            params = {k: labels.get(v, v) if isinstance(v, str) else v for k, v in self.params.items()}
            message, hint = messages.render(self.key, lang, params)
        else:
            message, hint = self.message, self.hint
        message, hint = messages.relabel(message, labels), messages.relabel(hint, labels)  # flags named in the text
        return _join(self.where, message, hint, "解决办法" if lang == "zh" else "Fix")


def _join(where: str, message: str, hint: str, fix_word: str) -> str:
    text = f"{where}: {message}" if where else message
    if hint:
        text = f"{text.rstrip('.。')}. {fix_word}: {hint}" if fix_word == "Fix" else f"{text.rstrip('.。')}。{fix_word}：{hint}"
    return redact(" ".join(text.split()))


class BadInput(VlhubError):
    """A file, field or flag the user gave is wrong (exit code 2)."""

    exit_code = 2


class MissingDependency(VlhubError):
    """Something must be installed first; the hint says how (exit code 2)."""

    exit_code = 2
