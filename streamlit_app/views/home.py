"""Home: the pipeline stepper for the selected run, what to do next, environments and plugins."""
from __future__ import annotations

import streamlit as st

from vlhub.core import runs
from vlhub.streamlit_app import pipeline
from vlhub.streamlit_app.state import env_report, plugin_report
from vlhub.streamlit_app.text import t

ICONS = {"done": ":green[:material/check_circle:]", "running": ":blue[:material/progress_activity:]",
         "failed": ":red[:material/error:]", "stopped": ":orange[:material/pause_circle:]",
         "ready": ":green[:material/play_circle:]", "todo": ":gray[:material/radio_button_unchecked:]"}


def stepper(plan: list[pipeline.Step]) -> None:
    for n, (col, step) in enumerate(zip(st.columns(len(plan)), plan), start=1):
        with col.container(border=True):
            st.markdown(f"**{n}. {t('stage.' + step.stage)}**")
            st.markdown(f"{ICONS[step.status]} {t('step.' + step.status)}")
            if step.detail:
                st.caption(step.detail)


st.title(t("home.heading"))
st.subheader(t("home.pipeline"))
train_runs = {r.id: r for r in runs.list_runs("train")}
run = None
if train_runs:
    chosen = st.selectbox(t("home.run"), list(train_runs), key="home.run",
                          format_func=lambda i: f"{i} ({train_runs[i].status})")
    run = train_runs[chosen]
else:
    st.caption(t("home.no_runs"))
plan = pipeline.steps(run)
stepper(plan)
st.info(t("home.next", action=t(pipeline.next_action(plan))))

st.subheader(t("home.envs"))
for env in env_report():
    state = t("env.ready") if env["ready"] else t("env.missing", missing=", ".join(env["missing"]))
    st.markdown(f"- **{env['name']}**: {state}")
    if not env["ready"]:
        st.caption(t("env.fix", fix=env["fix"]))

report = plugin_report()
st.subheader(t("home.plugins"))
st.dataframe([{"plugin": p["name"], "version": p["version"],
               "registered": "; ".join(f"{k}: {', '.join(v)}" for k, v in p["registered"].items())}
              for p in report["plugins"]], hide_index=True)
if report["failures"]:
    st.subheader(t("home.failures"))
    for failure in report["failures"]:
        st.error(f"{failure['plugin']} ({failure['stage']}): {failure['error']}")

with st.expander(t("home.remote.title"), icon=":material/dns:"):
    st.markdown(t("home.remote.body", port=st.get_option("server.port")))
