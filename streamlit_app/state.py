"""Cached reads of vlhub state shared by the pages."""
from __future__ import annotations

from typing import Any

import streamlit as st

from vlhub.core import plugins, stage
from vlhub.core.home import envs_dir
from vlhub.core.secrets import declared, find_token


@st.cache_data(ttl=30, show_spinner=False)
def plugin_report() -> dict[str, Any]:
    """``vlhub plugins --json`` as data."""
    return plugins.host().describe()


@st.cache_data(ttl=10, show_spinner=False)
def _env_report(envs: str) -> list[dict[str, Any]]:
    return [stage.check(name).public() for name in stage.names()]


def env_report() -> list[dict[str, Any]]:
    """``vlhub env check --json`` as data (cached a few seconds per environments folder)."""
    return _env_report(str(envs_dir()))


def token_report() -> dict[str, dict[str, Any]]:
    """Every secret the plugins declare: whether it is found and where (``{"hub", "found", "source"}``),
    and the variables that may hold it (``env``), never the value."""
    return {name: {**find_token(secret).public(), "env": list(secret.env), "login": secret.login_label or None}
            for name, secret in declared().items()}


def forget_envs() -> None:
    """Drop the cached environment report (after an environment changed)."""
    _env_report.clear()
