"""Home: the pipeline stepper for the selected run (refreshing itself while a run or a job is active), what to do
next, the jobs that run, environments and plugins."""
from __future__ import annotations

import streamlit as st

from vlhub.core import runs
from vlhub.core.lifecycle import ACTIVE, refresh
from vlhub.streamlit_app import jobs, pipeline
from vlhub.streamlit_app.state import env_report, plugin_report
from vlhub.streamlit_app.text import t
from vlhub.streamlit_app.widgets import checkbox, duration, job_state, plugins_table, selectbox

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


def pipeline_view() -> None:
    """The stepper for the chosen run (dry runs only when asked for), what to do next, and the jobs that run."""
    everything = runs.list_runs("train")
    show_dry = checkbox(t("home.show_dry"), "home.show_dry") if any(r.status == "planned" for r in everything) \
        else False
    train_runs = {r.id: refresh(r) for r in everything if show_dry or r.status != "planned"}
    run = None
    if train_runs:
        chosen = selectbox(t("home.run"), list(train_runs), "home.run",
                           format_func={i: f"{i} ({t('run.' + r.status)})" for i, r in train_runs.items()}.get)
        run = train_runs[chosen]
    else:
        st.caption(t("home.no_runs"))
    live = (run is not None and run.status in ACTIVE) or bool(jobs.active(1))

    def board() -> None:
        fresh = refresh(runs.load_run(run.id)) if run is not None else None
        plan = pipeline.steps(fresh)
        stepper(plan)
        st.info(t("home.next", action=t(pipeline.next_action(plan))))
        running = jobs.active()
        if running:
            st.markdown(f"**{t('home.jobs')}**")
            for job in running:
                st.markdown(f"- {job_state(job)} · {job.label} · {duration(job.elapsed())}")
        still = (fresh is not None and fresh.status in ACTIVE) or bool(running)
        if live and not still:
            st.rerun()  # it ended: draw the page once more, without polling

    st.fragment(run_every=2.0 if live else None)(board)()


st.title(t("home.heading"))
st.subheader(t("home.pipeline"))
pipeline_view()

st.subheader(t("home.envs"))
for env in env_report():
    state = t("env.ready") if env["ready"] else t("env.missing", missing=", ".join(env["missing"]))
    st.markdown(f"- **{env['name']}**: {state}")
    if not env["ready"]:
        st.caption(t("env.fix", fix=env["fix"]))

report = plugin_report()
st.subheader(t("home.plugins"))
plugins_table(report["plugins"])
if report["failures"]:
    st.subheader(t("home.failures"))
    for failure in report["failures"]:
        st.error(f"{failure['plugin']} ({failure['stage']}): {failure['error']}")

with st.expander(t("home.remote.title"), icon=":material/dns:"):
    st.markdown(t("home.remote.body", port=st.get_option("server.port")))
