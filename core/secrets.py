"""Finding tokens (environment first, then each hub's own login store) and redacting them.

Tokens are handed to SDKs or to git through the environment, never placed in URLs,
argv, logs or files. Every value found here is remembered so that :func:`redact`
can scrub it from any text vlhub shows or writes.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

#: Environment variables that hold secrets, per hub, in order of preference.
TOKEN_ENV: dict[str, tuple[str, ...]] = {
    "hf": ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"),
    "modelscope": ("MODELSCOPE_API_TOKEN",),
    "openxlab": ("OPENXLAB_TOKEN",),
    "git": ("VLHUB_GIT_TOKEN",),
    "openai": ("OPENAI_API_KEY",),
}

_MIN_SECRET = 6
_known: set[str] = set()


@dataclass(frozen=True)
class TokenInfo:
    """Where a hub's token was found; ``value`` must never be shown."""

    hub: str
    source: str
    value: str = ""

    @property
    def found(self) -> bool:
        return bool(self.value)

    def public(self) -> dict[str, object]:
        """What may be shown: the hub, whether a token was found and where, never the token."""
        return {"hub": self.hub, "found": self.found, "source": self.source}


def remember(value: str | None) -> None:
    """Add a secret to the set that :func:`redact` scrubs."""
    if value and len(value.strip()) >= _MIN_SECRET:
        _known.add(value.strip())


def _env_secrets() -> set[str]:
    names = {name for group in TOKEN_ENV.values() for name in group}
    return {os.environ[n].strip() for n in names if len(os.environ.get(n, "").strip()) >= _MIN_SECRET}


#: ``scheme://user:password@``: the password part of a URL.
_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^/\s:@]*:)[^/\s@]+@")


def redact(text: str) -> str:
    """Replace every known secret, and any password in a URL, in ``text`` with ``***``."""
    if not text:
        return text
    for secret in sorted(_known | _env_secrets(), key=len, reverse=True):
        text = text.replace(secret, "***")
    return _URL_PASSWORD.sub(r"\1***@", text)


def _hf_store() -> str | None:
    from huggingface_hub import get_token  # light import, only when asked

    return get_token()


def _modelscope_store() -> str | None:
    path = Path(os.environ.get("MODELSCOPE_CREDENTIALS_PATH", "~/.modelscope/credentials")).expanduser()
    token_file = path / "git_token"
    return token_file.read_text(encoding="utf-8").strip() if token_file.is_file() else None


_STORES: dict[str, tuple[str, Callable[[], str | None]]] = {
    "hf": ("hf auth login store", _hf_store),
    "modelscope": ("modelscope login store", _modelscope_store),
}


def find_token(hub: str) -> TokenInfo:
    """The token for ``hub`` from the environment or the hub's login store (empty if none)."""
    for name in TOKEN_ENV.get(hub, ()):
        value = os.environ.get(name, "").strip()
        if value:
            remember(value)
            return TokenInfo(hub, f"${name}", value)
    if hub in _STORES:
        label, reader = _STORES[hub]
        try:
            value = (reader() or "").strip()
        except Exception:  # a broken store is the same as no store
            value = ""
        if value:
            remember(value)
            return TokenInfo(hub, label, value)
    return TokenInfo(hub, "not found")


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs secrets from every record's message."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = ()
        return True


def setup_logging(level: int = logging.WARNING) -> None:
    """The one logging setup: stderr, redacted."""
    root = logging.getLogger()
    if any(isinstance(f, RedactingFilter) for h in root.handlers for f in h.filters):
        return
    handler = logging.StreamHandler()
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
