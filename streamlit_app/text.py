"""The one string catalogue (``i18n/en.json``, ``i18n/zh.json``) and the language switch.

The language is the session's ``lang`` (the sidebar's switch). A new session starts with ``?lang=zh`` /
``?lang=en`` from the URL when given, else the language remembered under ``$VLHUB_HOME/ui/forms.json``
(:mod:`vlhub.core.settings_store`), else English.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import streamlit as st

from vlhub.core import messages, settings_store

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


def translation(english: str, translations: Mapping[str, str] | None) -> str:
    """A plugin's text in the page's language: its translation for it, else ``english``, marked as English
    (``text.untranslated``) on a page in another language, so a third-party plugin without Chinese texts
    still reads as what it is.

    Args:
        english: the plugin's own text (an option's ``label``/``help``, a dataset's ``description``).
        translations: language code -> text (the plugin's ``labels``, ``helps``, ``descriptions``).
    """
    here = lang()
    own = (translations or {}).get(here)
    if own or here == "en" or not english:
        return own or english
    return f"{english} {t('text.untranslated')}"


def localized(text: str, labels: Mapping[str, str] | None = None) -> str:
    """A one-line text from the core or a plugin in the page's language: a keyed message
    (:class:`vlhub.core.messages.Keyed`) in this language, any other text as it is, marked as English on a
    page in another language (:func:`translation`); CLI flags it names replaced by the page's field ``labels``
    (:func:`vlhub.core.messages.relabel`)."""
    shown = text.localized(lang()) if isinstance(text, messages.Keyed) else translation(text, None)
    return messages.relabel(shown, labels)


def option_label(opt: dict[str, Any]) -> str:
    """An option's field title (``Option.public()`` dict) in the page's language: the plugin's ``labels``,
    else its ``label`` (or the name with spaces), marked as English (:func:`translation`)."""
    return translation(opt.get("label") or opt["name"].replace("_", " "), opt.get("labels"))


def option_help(opt: dict[str, Any]) -> str:
    """An option's help in the page's language: the plugin's ``helps``, else its ``help``, marked as English."""
    return translation(opt.get("help") or "", opt.get("helps"))


def choice_label(opt: dict[str, Any], value: Any) -> str:
    """How a choice of an option is shown: the plugin's ``choice_labels`` in the page's language, else the
    value itself (what the command line takes)."""
    return ((opt.get("choice_labels") or {}).get(lang()) or {}).get(value) or str(value)
