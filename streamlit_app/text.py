"""The one string catalogue (``i18n/en.json``, ``i18n/zh.json``) and the language switch.

The language is the session's ``lang`` (the sidebar's switch). A new session starts with ``?lang=zh`` /
``?lang=en`` from the URL when given, else the language remembered under ``$VLHUB_HOME/ui/forms.json``
(:mod:`vlhub.core.settings_store`), else English.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import streamlit as st

from vlhub.core import settings_store

LANGUAGES = {"en": "English", "zh": "中文"}
_DIR = Path(__file__).parent / "i18n"


@lru_cache(maxsize=None)
def catalogue(lang: str) -> dict[str, str]:
    """All strings of one language."""
    return json.loads((_DIR / f"{lang}.json").read_text(encoding="utf-8"))


def lang() -> str:
    """The language chosen in this session (English by default)."""
    return st.session_state.get("lang", "en")


def initial_language() -> str:
    """The language a new session starts in: ``?lang=`` in the URL, else the remembered one, else English."""
    wanted = st.query_params.get("lang")
    if wanted in LANGUAGES:
        return wanted
    try:
        return settings_store.language() or "en"
    except OSError:
        return "en"


def remember_language() -> None:
    """Remember the session's language for the next session (a read-only home just forgets it)."""
    try:
        if settings_store.language() != lang():
            settings_store.remember_language(lang())
    except (OSError, ValueError):
        pass


def known(key: str) -> bool:
    """Whether the catalogue has ``key`` (for strings that exist only for some plugins)."""
    return key in catalogue("en")


def t(key: str, **fields: object) -> str:
    """The string for ``key`` in the current language (English, then the key, as fallbacks)."""
    text = catalogue(lang()).get(key) or catalogue("en").get(key) or key
    return text.format(**fields) if fields else text


def option_label(opt: dict[str, Any]) -> str:
    """An option's field title in the page's language: the plugin's ``labels[lang]``, else (not in English)
    the catalogue's ``opt.NAME``, else the plugin's ``label``, else the name with spaces."""
    here = lang()
    own = (opt.get("labels") or {}).get(here)
    if own:
        return own
    if here != "en" and catalogue(here).get(f"opt.{opt['name']}"):
        return catalogue(here)[f"opt.{opt['name']}"]
    return opt.get("label") or opt["name"].replace("_", " ")


def option_help(opt: dict[str, Any]) -> str:
    """An option's help in the page's language: the catalogue's ``opt.help.NAME`` (not in English), else
    the plugin's own help."""
    here = lang()
    if here != "en" and catalogue(here).get(f"opt.help.{opt['name']}"):
        return catalogue(here)[f"opt.help.{opt['name']}"]
    return opt.get("help") or ""
