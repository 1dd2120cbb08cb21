"""Network time limits for every connection vlhub or its SDKs open.

One setting for all of them: ``VLHUB_CONNECT_TIMEOUT`` (seconds to establish a connection,
default 10) and ``VLHUB_READ_TIMEOUT`` (seconds a connected server may stay silent, default 30).
They are handed to each client the way that client takes them:

- git over HTTP(S): ``http.lowSpeedLimit``/``http.lowSpeedTime`` (curl aborts a transfer slower
  than 1 byte/s for that long: a server that accepts and never answers), given through
  ``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_n``/``GIT_CONFIG_VALUE_n`` (git-config(1), "ENVIRONMENT");
- git-lfs: ``lfs.dialtimeout``, ``lfs.tlstimeout`` and ``lfs.activitytimeout`` (git-lfs-config(5));
- huggingface_hub: an ``httpx`` client with these limits, installed with
  ``huggingface_hub.set_client_factory`` (its default client has no timeout at all);
- the ModelScope SDK: its ``MODELSCOPE_API_*TIMEOUT`` and retry variables (read when it is imported)
  and ``HubApi(timeout=...)``;
- OpenAI-compatible endpoints and LMDeploy health checks: the clients' ``timeout`` argument.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import BadInput

CONNECT_DEFAULT_S = 10.0
READ_DEFAULT_S = 30.0


@dataclass(frozen=True)
class Timeouts:
    """Seconds to connect, and seconds a connected peer may stay silent."""

    connect: float
    read: float


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise BadInput("net.bad_seconds", name=name, value=repr(raw), default=int(default))
    return value


def timeouts() -> Timeouts:
    """The limits in force (``$VLHUB_CONNECT_TIMEOUT``, ``$VLHUB_READ_TIMEOUT``).

    Raises:
        BadInput: a variable is set to something that is not a positive number.
    """
    return Timeouts(_seconds("VLHUB_CONNECT_TIMEOUT", CONNECT_DEFAULT_S), _seconds("VLHUB_READ_TIMEOUT", READ_DEFAULT_S))


def git_config() -> dict[str, str]:
    """git and git-lfs settings (key -> value) that bound every connection of a git command."""
    limits = timeouts()
    read = str(max(1, math.ceil(limits.read)))
    connect = str(max(1, math.ceil(limits.connect)))
    return {"http.lowSpeedLimit": "1", "http.lowSpeedTime": read,
            "lfs.dialtimeout": connect, "lfs.tlstimeout": connect, "lfs.activitytimeout": read}


def with_git_config(env: Mapping[str, str], extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` plus ``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_n``/``GIT_CONFIG_VALUE_n`` entries for the
    time limits of :func:`git_config` and ``extra`` settings, appended after any entries ``env``
    already has (so nothing lands in argv or a config file).

    Args:
        env: the environment the git process will get.
        extra: more ``key -> value`` settings (e.g. an ``http.extraHeader``).

    Returns:
        A new environment mapping.
    """
    out = dict(env)
    count = int(out.get("GIT_CONFIG_COUNT", "0") or 0)
    for key, value in {**git_config(), **(extra or {})}.items():
        out[f"GIT_CONFIG_KEY_{count}"] = key
        out[f"GIT_CONFIG_VALUE_{count}"] = value
        count += 1
    out["GIT_CONFIG_COUNT"] = str(count)
    return out


def install_hf_timeouts() -> None:
    """Make huggingface_hub's shared HTTP client use :func:`timeouts` (idempotent per limits)."""
    import huggingface_hub
    from huggingface_hub.utils import _http

    limits = timeouts()
    if getattr(install_hf_timeouts, "_installed", None) == limits:
        return
    httpx_module: Any = _http.httpx2 if hasattr(_http, "httpx2") else _http.httpx

    def factory() -> Any:
        return httpx_module.Client(event_hooks={"request": [_http.hf_request_event_hook]}, follow_redirects=True,
                                   timeout=httpx_module.Timeout(limits.read, connect=limits.connect))

    huggingface_hub.set_client_factory(factory)
    install_hf_timeouts._installed = limits  # type: ignore[attr-defined]


#: ModelScope SDK variables (modelscope.hub.constants, modelscope_hub.constants) -> which limit they take.
_MODELSCOPE_VARS = {"MODELSCOPE_API_TIMEOUT": "read", "MODELSCOPE_API_HTTP_CLIENT_TIMEOUT": "read",
                    "MODELSCOPE_API_CONNECT_TIMEOUT": "connect", "MODELSCOPE_API_HTTP_CLIENT_CONNECT_TIMEOUT": "connect"}
#: Retries of a request that timed out multiply the wait: one retry keeps the bound at twice the limit.
MODELSCOPE_RETRIES = 1


def install_modelscope_timeouts() -> Timeouts:
    """Set the ModelScope SDK's time limits and retries from :func:`timeouts` (unless the user set them);
    call it before the SDK is imported, since it reads them at import time. Returns the limits."""
    limits = timeouts()
    for name, which in _MODELSCOPE_VARS.items():
        os.environ.setdefault(name, str(max(1, math.ceil(getattr(limits, which)))))
    for name in ("MODELSCOPE_API_MAX_RETRIES", "API_HTTP_CLIENT_MAX_RETRIES"):
        os.environ.setdefault(name, str(MODELSCOPE_RETRIES))
    return limits
