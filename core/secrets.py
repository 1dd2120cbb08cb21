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
from typing import Any, Callable

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


#: ``scheme://USERINFO@``: the user-info part of a URL (RFC 3986 section 3.2.1), user name and password.
_URL_USERINFO = re.compile(r"(\b[a-zA-Z][\w+.-]*://)([^/\s@?#]+)@")
#: User names that are conventions, not secrets (``ssh://git@host/...``).
_PLAIN_USERS = frozenset({"git", "oauth2", "x-access-token", "anonymous"})
#: Prefixes of well-known token formats (GitHub, GitLab, Hugging Face, OpenAI, ModelScope).
_TOKEN_PREFIXES = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "hf_", "sk-", "ms-")
_PLAIN_USER = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,38}$")


def _redact_userinfo(match: re.Match[str]) -> str:
    userinfo = match.group(2)
    return match.group(0) if userinfo in _PLAIN_USERS else f"{match.group(1)}***@"


def redact(text: str) -> str:
    """Replace every known secret, and the user-info of any URL, in ``text`` with ``***``.

    Args:
        text: anything about to be shown, logged or stored.

    Returns:
        ``text`` with known tokens (remembered ones and those in the token variables of
        :data:`TOKEN_ENV`) and ``user[:password]@`` of every ``scheme://`` URL replaced by
        ``***`` (conventional user names such as ``git@`` are kept).
    """
    if not text:
        return text
    for secret in sorted(_known | _env_secrets(), key=len, reverse=True):
        text = text.replace(secret, "***")
    return _URL_USERINFO.sub(_redact_userinfo, text)


def redact_data(value: Any) -> Any:
    """:func:`redact` applied to every string inside ``value`` (dicts, lists, tuples), e.g. before a
    state file such as ``run.json`` is written. Other values are returned unchanged."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_data(k): redact_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_data(v) for v in value]
    return value


def looks_like_token(value: str) -> bool:
    """Whether a URL's user name is a secret rather than a plain user name: a well-known token
    prefix, longer than GitHub's 39-character user names, or not of user-name characters, or
    with as many digits as a random string has (4 or more digits among 12 or more characters)."""
    if not value:
        return False
    if value.startswith(_TOKEN_PREFIXES) or not _PLAIN_USER.match(value):
        return True
    return len(value) >= 12 and sum(c.isdigit() for c in value) >= 4


def strip_userinfo(url: str) -> tuple[str, str, str]:
    """Split the credentials off a URL a user typed.

    Args:
        url: any URL (``https://user:pass@host/path``, ``http://TOKEN@host``, ``file:///x``, a path).

    Returns:
        ``(clean_url, user, password)``: the URL without ``user[:password]@`` (unchanged when it
        had none), and the two parts (``""`` when absent). The password, and a user name that
        :func:`looks_like_token`, are remembered, so :func:`redact` scrubs them from anything shown
        later; the caller decides what the parts may be.
    """
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(url)
    if not parts.scheme or "@" not in parts.netloc:
        return url, "", ""
    userinfo, host = parts.netloc.rsplit("@", 1)
    user, _, password = userinfo.partition(":")
    user, password = unquote(user), unquote(password)
    remember(password)
    if looks_like_token(user):
        remember(user)
    return urlunsplit(parts._replace(netloc=host)), user, password


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
