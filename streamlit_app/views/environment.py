"""Plugins & environment: plugin list and failures, stage environments, hub logins."""
from __future__ import annotations

import streamlit as st

from vlhub.streamlit_app.state import env_report, plugin_report, token_report
from vlhub.streamlit_app.text import t

st.title(t("nav.plugins"))
st.subheader(t("home.envs"))
for env in env_report():
    with st.container(border=True):
        st.markdown(f"**{env['name']}** — {t('env.ready') if env['ready'] else t('env.missing', missing=', '.join(env['missing']))}")
        if env["versions"]:
            st.table({k: [v or "—"] for k, v in env["versions"].items()})
        if env["fix"]:
            st.info(t("env.fix", fix=env["fix"]))

st.subheader(t("tokens.heading"))
for hub, info in token_report().items():
    st.markdown(f"- **{hub}**: {t('tokens.found', source=info['source']) if info['found'] else t('tokens.not_found')}")

st.subheader(t("home.plugins"))
report = plugin_report()
st.json(report["plugins"], expanded=False)
for failure in report["failures"]:
    st.error(f"{failure['plugin']} ({failure['stage']}): {failure['error']}")
st.caption(t("docs.plugins"))
