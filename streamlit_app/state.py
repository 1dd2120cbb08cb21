"""Cached reads of vlhub state shared by the pages, and the form fields that stay (page switches, reloads)."""
from __future__ import annotations

from typing import Any, Callable

import streamlit as st

from vlhub.core import plugins, settings_store, stage
from vlhub.core.errors import VlhubError
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


# ------------------------------------------------------------------ form fields that stay
#: The session's copy of the remembered field values (a non-widget key: Streamlit keeps it across pages).
KEPT = "_vlhub.kept"
_UNSET = object()


def kept() -> dict[str, Any]:
    """Field key -> value the user gave (different from the field's default): this session's copy, loaded
    once from ``$VLHUB_HOME/ui/forms.json`` (:mod:`vlhub.core.settings_store`)."""
    if KEPT not in st.session_state:
        try:
            st.session_state[KEPT] = settings_store.form_values()
        except OSError:
            st.session_state[KEPT] = {}
    return st.session_state[KEPT]


def restore(key: str, default: Any, valid: Callable[[Any], bool] | None = None) -> None:
    """Before drawing the field ``key``: give it the value the user left it at (kept in this session or
    remembered under VLHUB_HOME), else ``default``. Streamlit drops a field's value when its page is not
    shown; this brings it back. A value ``valid`` refuses (e.g. an option that is gone) becomes ``default``."""
    state = st.session_state
    if key in state:
        if valid is not None and not valid(state[key]):
            state[key] = default
        return
    value = kept().get(key, default)
    if valid is not None and not valid(value):
        value = default
    if value is not None:
        state[key] = value


def keep(key: str, default: Any) -> None:
    """After drawing the field ``key``: keep its value for this session and remember it under VLHUB_HOME
    (a value equal to ``default`` is forgotten, so that a later default, e.g. the newest dataset, applies)."""
    value = st.session_state.get(key, _UNSET)
    if value is _UNSET:
        return
    store = kept()
    wanted = None if value == default else value
    if store.get(key) == wanted:
        return
    if wanted is None:
        store.pop(key, None)
    else:
        store[key] = wanted
    try:
        settings_store.remember_values({key: wanted})
    except (OSError, VlhubError):  # a read-only home only costs the memory, never the page
        pass


def set_field(key: str, value: Any) -> None:
    """Set field ``key`` (from a callback, before the field is drawn) and remember it."""
    st.session_state[key] = value
    kept()[key] = value
    try:
        settings_store.remember_values({key: value})
    except (OSError, VlhubError):
        pass
