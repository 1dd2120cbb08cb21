"""The one string catalogue (``i18n/en.json``, ``i18n/zh.json``) and the language switch."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import streamlit as st

LANGUAGES = {"en": "English", "zh": "中文"}
_DIR = Path(__file__).parent / "i18n"


@lru_cache(maxsize=None)
def catalogue(lang: str) -> dict[str, str]:
    """All strings of one language."""
    return json.loads((_DIR / f"{lang}.json").read_text(encoding="utf-8"))


def lang() -> str:
    """The language chosen in this session (English by default)."""
    return st.session_state.get("lang", "en")


def known(key: str) -> bool:
    """Whether the catalogue has ``key`` (for strings that exist only for some plugins)."""
    return key in catalogue("en")


def t(key: str, **fields: object) -> str:
    """The string for ``key`` in the current language (English, then the key, as fallbacks)."""
    text = catalogue(lang()).get(key) or catalogue("en").get(key) or key
    return text.format(**fields) if fields else text
