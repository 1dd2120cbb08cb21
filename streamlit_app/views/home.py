"""Home: the pipeline, loaded plugins and stage environment status."""
from __future__ import annotations

import streamlit as st

from vlhub.streamlit_app.state import env_report, plugin_report
from vlhub.streamlit_app.text import t

st.title(t("home.heading"))
st.subheader(t("home.pipeline"))
cols = st.columns(5)
for col, stage_key in zip(cols, ["data", "train", "convert", "chat", "publish"]):
    col.markdown(f"**{t('stage.' + stage_key)}**")

st.subheader(t("home.envs"))
for env in env_report():
    state = t("env.ready") if env["ready"] else t("env.missing", missing=", ".join(env["missing"]))
    st.markdown(f"- **{env['name']}**: {state}")

report = plugin_report()
st.subheader(t("home.plugins"))
st.dataframe([{"plugin": p["name"], "version": p["version"],
               "registered": "; ".join(f"{k}: {', '.join(v)}" for k, v in p["registered"].items())}
              for p in report["plugins"]], hide_index=True)
if report["failures"]:
    st.subheader(t("home.failures"))
    for failure in report["failures"]:
        st.error(f"{failure['plugin']} ({failure['stage']}): {failure['error']}")
