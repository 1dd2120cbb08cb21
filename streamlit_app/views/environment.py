"""Plugins & environment: stage environments (create or adopt, with progress), hub logins, plugins, docs."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from vlhub.core import stage
from vlhub.core.errors import VlhubError
from vlhub.core.messages import Keyed, from_detail
from vlhub.streamlit_app.state import env_report, forget_envs, plugin_report, token_report
from vlhub.streamlit_app.text import lang, t
from vlhub.streamlit_app.widgets import action_button, job_panel, plugins_table, quoted, show_error, start_job

DOCS = Path(__file__).resolve().parents[2] / "docs"


def env_box(env: dict) -> None:
    name = env["name"]
    with st.container(border=True):
        state = t("env.ready") if env["ready"] else t("env.missing", missing=", ".join(env["missing"]))
        st.markdown(f"**{name}** — {state}")
        st.caption(t("env.python", python=env["python"] or "—", gpu=env["gpu"] or t("env.no_gpu")))
        if env["versions"]:
            st.table({k: [v or "—"] for k, v in env["versions"].items()})
        if env["fix"]:
            st.info(t("env.fix", fix=env["fix"]))
        for warning, detail in zip(env.get("warnings", []), env.get("warning_details", [])):
            text = from_detail(warning, detail)
            st.warning(text.localized(lang()) if isinstance(text, Keyed) else text)
        if action_button(t("env.create", name=name) if not env["ready"] else t("env.repair", name=name),
                         "env.create", {"name": name}, key=f"env.create.{name}"):
            if start_job("env.create", {"name": name}, t("env.creating", name=name)):
                st.rerun()
        job_panel("env.create", history=False, name=name)
        with st.expander(t("env.adopt", name=name)):
            python = st.text_input(t("env.adopt_python"), key=f"env.adopt.{name}",
                                   placeholder="~/miniconda3/envs/xtuner-env/bin/python").strip()
            if st.button(t("env.adopt_button"), key=f"env.adopt_button.{name}") and python:
                try:
                    stage.adopt(name, python)
                except VlhubError as exc:
                    show_error(exc, quoted({"--python": t("env.adopt_python")}))
                else:
                    forget_envs()
                    st.rerun()


st.title(t("nav.plugins"))
st.subheader(t("home.envs"))
st.caption(t("env.explain"))
for env in env_report():
    env_box(env)

st.subheader(t("tokens.heading"))
for hub, info in token_report().items():
    st.markdown(f"- **{hub}**: {t('tokens.found', source=info['source']) if info['found'] else t('tokens.not_found')}")

st.subheader(t("home.plugins"))
report = plugin_report()
plugins_table(report["plugins"], builtin=True)
for failure in report["failures"]:
    st.error(f"{failure['plugin']} ({failure['stage']}): {failure['error']}")
st.subheader(t("docs.heading"))
st.markdown(t("docs.plugins"))
for page in sorted(DOCS.glob("*.md")):
    st.markdown(f"- `{page}`")
