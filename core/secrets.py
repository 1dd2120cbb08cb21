"""Finding tokens (the :class:`Secret` s plugins declare: environment first, then a login store) and
redacting them.

Tokens are handed to SDKs or to git through the environment, never placed in URLs,
argv, logs or files. Every value found here is remembered so that :func:`redact`
can scrub it from any text vlhub shows or writes.
"""
from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


@dataclass(frozen=True)
class Secret:
    """A secret a plugin object needs, declared on the object: ``secrets = (Secret(...),)``.

    Any registered object (publisher, chat backend, dataset, ...) may declare the secrets it reads.
    vlhub finds them through the plugin registry: :func:`find_token` looks one up by ``name``,
    :func:`redact` scrubs the values of every declared variable, and ``vlhub doctor``, ``vlhub
    plugins --json`` and the launcher's Environment page list them (where found, never the value).

    Args:
        name: what the secret is called (``find_token(name)``; e.g. ``"hf"``); unique across plugins.
        env: the environment variables that may hold it, in order of preference (a string for one).
        description: one line: what it is for and where to get one.
        login: optional reader of a login store (e.g. the file a hub's ``login`` command writes):
            returns the token or None; an exception counts as "not there".
        login_label: how that store is named in reports, e.g. ``"hf auth login store"``.
    """

    name: str
    env: tuple[str, ...] = ()
    description: str = ""
    login: Callable[[], str | None] | None = None
    login_label: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.env, str):
            object.__setattr__(self, "env", (self.env,))
        else:
            object.__setattr__(self, "env", tuple(self.env))
        if self.login is not None and not self.login_label:
            object.__setattr__(self, "login_label", f"{self.name} login store")

    def public(self) -> dict[str, Any]:
        """The declaration as JSON-ready data: ``{"name", "env": [...], "login": label or None, "description"}``."""
        return {"name": self.name, "env": list(self.env), "login": self.login_label or None,
                "description": self.description}


def declared() -> dict[str, Secret]:
    """Every secret the registered plugin objects declare, by name (collected by the plugin host)."""
    from . import plugins  # the host imports plugins' modules: only when asked

    return plugins.host().secrets()


class _DeclaredEnv(Mapping[str, tuple[str, ...]]):
    """Secret name -> its environment variables, read from the declarations each time."""

    def __getitem__(self, name: str) -> tuple[str, ...]:
        return declared()[name].env

    def __iter__(self) -> Iterator[str]:
        return iter(declared())

    def __len__(self) -> int:
        return len(declared())


#: Environment variables that hold secrets, per secret name, in order of preference: what the plugins
#: declare (:class:`Secret`), e.g. ``TOKEN_ENV["hf"] == ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")``.
TOKEN_ENV: Mapping[str, tuple[str, ...]] = _DeclaredEnv()

_MIN_SECRET = 6
#: The declared variables last read (what :func:`_env_secrets` uses while the declarations are being collected).
_declared_names: tuple[str, ...] = ()
_collect_lock = threading.RLock()
_collecting = threading.local()


def _declared_variables() -> tuple[str, ...]:
    """The environment variables of every declared secret; never raises, never recurses into the host
    (a redaction while the declarations are being collected uses the variables read before)."""
    global _declared_names
    if getattr(_collecting, "active", False):
        return _declared_names
    with _collect_lock:
        _collecting.active = True
        try:
            _declared_names = tuple(dict.fromkeys(name for secret in declared().values() for name in secret.env))
        except Exception:  # a broken registry must not stop redaction: keep the variables known so far
            pass
        finally:
            _collecting.active = False
    return _declared_names


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
    """The values of every declared secret variable (:class:`Secret`) set in the environment."""
    names = _declared_variables()
    return {os.environ[n].strip() for n in names if len(os.environ.get(n, "").strip()) >= _MIN_SECRET}


#: ``scheme://USERINFO@``: the user-info part of a URL (RFC 3986 section 3.2.1), user name and password.
_URL_USERINFO = re.compile(r"(\b[a-zA-Z][\w+.-]*://)([^/\s@?#]+)@")
#: User names that are conventions, not secrets (``ssh://git@host/...``).
_PLAIN_USERS = frozenset({"git", "oauth2", "x-access-token", "anonymous"})
#: Prefixes of well-known token formats (GitHub, GitLab, Hugging Face, OpenAI, ModelScope).
_TOKEN_PREFIXES = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "hf_", "sk-", "ms-")
_PLAIN_USER = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,38}$")


#: Query parameters that carry a secret in signed or token URLs (S3 presigned uploads, CDN signatures,
#: ``?token=``): their values are replaced, in any text (an SDK's retry warning prints the whole URL).
_QUERY_SECRET = re.compile(r"([?&;]|&amp;|\\u0026|%26|%3F)(X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token"
                           r"|Signature|sig|token|access_token|api_key|key)(=|%3D)([^\s&#'\"<>)\]},;\\]+)",
                           re.IGNORECASE)


def _redact_userinfo(match: re.Match[str]) -> str:
    userinfo = match.group(2)
    return match.group(0) if userinfo in _PLAIN_USERS else f"{match.group(1)}***@"


def redact(text: str) -> str:
    """Replace every known secret, and the user-info of any URL, in ``text`` with ``***``.

    Args:
        text: anything about to be shown, logged or stored.

    Returns:
        ``text`` with known tokens (remembered ones and those in the token variables of
        :data:`TOKEN_ENV`), ``user[:password]@`` of every ``scheme://`` URL (conventional user
        names such as ``git@`` are kept) and the values of secret query parameters
        (``X-Amz-Signature``, ``X-Amz-Credential``, ``X-Amz-Security-Token``, ``Signature``,
        ``sig``, ``token``, ``access_token``, ``api_key``, ``key``; after ``?``, ``&`` or ``;``,
        also HTML-, JSON- or percent-encoded) replaced by ``***``.
    """
    if not text:
        return text
    for secret in sorted(_known | _env_secrets(), key=len, reverse=True):
        text = text.replace(secret, "***")
    text = _QUERY_SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3)}***", text)
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


def hf_login_store() -> str | None:
    """The token ``hf auth login`` stored (huggingface_hub's ``get_token``), or None: a :class:`Secret` ``login``."""
    from huggingface_hub import get_token  # light import, only when asked

    return get_token()


def modelscope_login_store() -> str | None:
    """The token ModelScope's login stored (``$MODELSCOPE_CREDENTIALS_PATH/git_token``, default
    ``~/.modelscope/credentials``), or None: a :class:`Secret` ``login``."""
    path = Path(os.environ.get("MODELSCOPE_CREDENTIALS_PATH", "~/.modelscope/credentials")).expanduser()
    token_file = path / "git_token"
    return token_file.read_text(encoding="utf-8").strip() if token_file.is_file() else None


def find_token(secret: str | Secret) -> TokenInfo:
    """A declared secret's value: its environment variables in order, then its login store (empty if none).

    Args:
        secret: the :class:`Secret` itself, or its name (looked up among the declared ones,
            :func:`declared`).
    Returns:
        :class:`TokenInfo`: the name, where the value was found (``$VARIABLE``, the store's label,
        ``not found``, or ``not declared`` for a name no plugin declares) and the value, which is
        remembered so that :func:`redact` scrubs it.
    """
    if isinstance(secret, str):
        found = declared().get(secret)
        if found is None:
            return TokenInfo(secret, "not declared")
        secret = found
    for name in secret.env:
        value = os.environ.get(name, "").strip()
        if value:
            remember(value)
            return TokenInfo(secret.name, f"${name}", value)
    if secret.login is not None:
        try:
            value = (secret.login() or "").strip()
        except Exception:  # a broken store is the same as no store
            value = ""
        if value:
            remember(value)
            return TokenInfo(secret.name, secret.login_label, value)
    return TokenInfo(secret.name, "not found")


def require_token(secret: str | Secret) -> str:
    """:func:`find_token`'s value, or a one-line error naming the variable to set.

    Raises:
        vlhub.core.errors.BadInput: the secret is not set (exit code 2), e.g. ``no example-bucket token:
            EXAMPLE_BUCKET_TOKEN is not set. Fix: export EXAMPLE_BUCKET_TOKEN=... (the bucket's access token)``.
    """
    from .errors import BadInput  # errors imports this module

    info = find_token(secret)
    if info.found:
        return info.value
    declaration = secret if isinstance(secret, Secret) else declared().get(secret)
    if declaration is None:
        raise BadInput(f"no plugin declares a secret named {info.hub!r}", "check the name, or run `vlhub plugins`")
    variables = " or ".join(declaration.env) or "its variable"
    login = f", or log in ({declaration.login_label})" if declaration.login is not None else ""
    what = f" ({declaration.description})" if declaration.description else ""
    first = declaration.env[0] if declaration.env else "VARIABLE"
    raise BadInput(f"no {declaration.name} token: {variables} is not set",
                   f"export {first}=...{what}{login}")


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
