"""Entry script for ``streamlit run``: navigation and the language switch."""
from __future__ import annotations

import streamlit as st

from vlhub.streamlit_app.text import LANGUAGES, t

st.set_page_config(page_title="vlhub", layout="wide")
with st.sidebar:
    st.selectbox(t("lang.label"), list(LANGUAGES), format_func=LANGUAGES.get, key="lang")

PAGES = [
    st.Page("views/home.py", title=t("nav.home"), default=True),
    st.Page("views/environment.py", title=t("nav.plugins")),
]
st.navigation(PAGES).run()
