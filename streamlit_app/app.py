"""Entry script for ``streamlit run``: navigation and the language switch.

The language survives a reload and a new session: it starts from ``?lang=`` in the URL, else the one
remembered under ``$VLHUB_HOME/ui/forms.json``, and every change is remembered there.
"""
from __future__ import annotations

import streamlit as st

from vlhub.streamlit_app.text import LANGUAGES, initial_language, remember_language, t

st.set_page_config(page_title="vlhub", layout="wide")
if st.session_state.get("lang") not in LANGUAGES:
    st.session_state["lang"] = initial_language()
with st.sidebar:
    st.selectbox(t("lang.label"), list(LANGUAGES), format_func=LANGUAGES.get, key="lang")
remember_language()

PAGES = [
    st.Page("views/home.py", title=t("nav.home"), default=True),
    st.Page("views/data.py", title=t("stage.data")),
    st.Page("views/train.py", title=t("stage.train")),
    st.Page("views/convert.py", title=t("stage.convert")),
    st.Page("views/chat.py", title=t("chat.nav")),
    st.Page("views/publish.py", title=t("stage.publish")),
    st.Page("views/environment.py", title=t("nav.plugins")),
]
st.navigation(PAGES).run()
