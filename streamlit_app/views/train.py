"""Train: the form for every trainer setting, the dataset report, start/stop/resume and a live view.

The live view reads the run folder only (:func:`vlhub.core.train.view`), so a reload, a closed tab or a
restarted launcher shows the same progress; the selected run is kept in the URL (``?run=ID``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from vlhub.core import data as dataapi
from vlhub.core import runs, stage, train
from vlhub.core.errors import VlhubError
from vlhub.core.lifecycle import ACTIVE, refresh
from vlhub.streamlit_app import jobs
from vlhub.streamlit_app.state import env_report
from vlhub.streamlit_app.text import t
from vlhub.streamlit_app.widgets import env_ready, follow, option_fields

#: Shown first; every other option of the trainer is in "All settings".
BASIC = ("method", "max_length", "batch_size", "grad_accum", "epochs", "max_iters", "lr", "save_steps",
         "eval_image", "eval_prompt")


def data_summary(folder: str) -> None:
    """The prepared folder's counts, before anything is planned."""
    try:
        report = dataapi.stats(Path(folder))
    except VlhubError as exc:
        st.caption(exc.one_line())
        return
    st.caption(t("train.data_summary", dataset=report["dataset"], total=report.get("records_total", 0),
                 splits=", ".join(f"{k} {v}" for k, v in report.get("records", {}).items()),
                 images=report.get("images", 0)))


def new_run_form(env_ok: bool) -> None:
    """The trainer, model and data, every setting the trainer declares, and Check / Start."""
    name = st.selectbox(t("train.trainer"), list(train.trainers()), key="train.trainer")
    options = [o.public() for o in train.options(name)]
    prepared = jobs.latest("data.prepare")
    model = st.text_input(t("train.model"), key="train.model", placeholder="/models/InternVL2-2B").strip()
    folder = st.text_input(t("train.data"), key="train.data", value=prepared.result["out"]
                           if prepared is not None and prepared.status == "done" else "").strip()
    if folder:
        data_summary(folder)
    st.caption(t("train.defaults"))
    with st.form("train.form"):
        values = option_fields([o for o in options if o["name"] in BASIC], f"train.opt.{name}")
        with st.expander(t("train.all_settings")):
            values |= option_fields([o for o in options if o["name"] not in BASIC], f"train.opt.{name}")
        cols = st.columns(2)
        check = cols[0].form_submit_button(t("train.check"))
        start = cols[1].form_submit_button(t("train.start"), type="primary", disabled=not env_ok)
    if check or start:
        if not model or not folder:
            st.error(t("train.need_inputs"))
            return
        jobs.start("train.plan", {"model": model, "data": folder, "options": values, "trainer": name,
                                  "launch": start}, label=t("train.planning"))
        st.rerun()


def plan_report(result: dict[str, Any]) -> None:
    """What the last check or start planned: the dataset as xtuner sees it, warnings, the command."""
    plan = result["plan"]
    ds = plan["dataset"]
    tokens = ds.get("tokens", {})
    st.success(t("train.planned" if result["status"] == "planned" else "train.started", run=result["run_id"]))
    cols = st.columns(4)
    cols[0].metric(t("train.samples"), ds.get("samples", 0))
    cols[1].metric(t("train.tokens"), f"{tokens.get('median', '?')} / {tokens.get('max', '?')}")
    cols[2].metric(t("train.over_length"), ds.get("over_max_length", 0))
    cols[3].metric(t("train.iterations"), ds.get("iterations", 0))
    for note in plan.get("warnings", []):
        st.warning(note)
    with st.expander(t("train.command")):
        st.code(" ".join(plan["command"]), language="bash")
        st.caption(plan["config"])


def live(run_id: str) -> None:
    """Progress, charts, samples, checkpoints and the log tail of one run (read from its folder)."""
    view = train.view(run_id)
    run, metrics = view["run"], view["metrics"]
    status = run.get("status", "created")
    last = metrics[-1] if metrics else {}
    total = last.get("total") or (run.get("progress") or {}).get("total") \
        or (run.get("plan") or {}).get("dataset", {}).get("iterations")
    done = last.get("iter", 0)
    st.markdown(f"**{t('train.status')}:** {t('run.' + status)}")
    st.progress(min(1.0, done / total) if total else 0.0,
                text=t("train.progress", it=done, total=total or "?", eta=last.get("eta") or "—"))
    if run.get("error"):
        st.error(run["error"])
    if metrics:
        iters = [m["iter"] for m in metrics]
        cols = st.columns(2)
        with cols[0]:
            st.markdown(f"**{t('train.loss')}**")
            st.line_chart({"iter": iters, "loss": [m.get("loss") for m in metrics]}, x="iter", y="loss")
        with cols[1]:
            st.markdown(f"**{t('train.lr')}**")
            st.line_chart({"iter": iters, "lr": [m.get("lr") for m in metrics]}, x="iter", y="lr")
        if any("memory" in m for m in metrics):
            st.markdown(f"**{t('train.memory')}** — {t('train.memory_now', mb=last.get('memory', '?'))}")
            st.line_chart({"iter": iters, "MB": [m.get("memory") for m in metrics]}, x="iter", y="MB", height=180)
    if view["samples"]:
        st.markdown(f"**{t('train.samples_out')}**")
        for sample in view["samples"][-3:]:
            st.caption(t("train.sample_at", it=sample.get("iter", "?")))
            st.code(sample.get("text", ""), language=None)
    if view["checkpoints"]:
        st.markdown(f"**{t('train.checkpoints')}**")
        st.dataframe([{t("train.step"): c["step"], t("train.path"): c["path"], t("train.complete"): c["complete"]}
                      for c in view["checkpoints"]], hide_index=True)
    with st.expander(t("train.log"), expanded=status in ACTIVE or status == "failed"):
        st.code("\n".join(view["log_tail"]) or t("train.log_empty"), language=None)


def run_section(env_ok: bool) -> None:
    """Pick a training run: stop / resume buttons and its live view."""
    train_runs = runs.list_runs("train")
    if not train_runs:
        st.info(t("train.no_runs"))
        return
    ids = [r.id for r in train_runs]
    wanted = st.query_params.get("run")
    run_id = st.selectbox(t("train.run"), ids, index=ids.index(wanted) if wanted in ids else 0,
                          format_func=lambda i: f"{i} ({next(r.status for r in train_runs if r.id == i)})")
    st.query_params["run"] = run_id
    run = refresh(runs.load_run(run_id))
    active = run.status in ACTIVE
    cols = st.columns(2)
    if active and cols[0].button(t("train.stop"), key="train.stop"):
        jobs.start("train.stop", {"run_id": run_id}, label=t("train.stopping", run=run_id))
        st.rerun()
    if run.status in ("stopped", "failed") and cols[1].button(t("train.resume"), key="train.resume",
                                                              disabled=not env_ok):
        jobs.start("train.resume", {"run_id": run_id}, label=t("train.resuming", run=run_id))
        st.rerun()
    for kind in ("train.stop", "train.resume"):
        follow(jobs.latest(kind, run_id=run_id))
    st.fragment(run_every=2.0 if active else None)(live)(run_id)


st.title(t("train.title"))
trainer_env = stage.env_of(train.trainers()[st.session_state.get("train.trainer", train.DEFAULT_TRAINER)])
env_ok = env_ready(trainer_env) if trainer_env else True
gpu = next((e["gpu"] for e in env_report() if e["name"] == trainer_env), None) or stage.gpu_summary()
st.caption(t("train.gpu", gpu=gpu) if gpu else t("train.no_gpu"))
with st.expander(t("train.new"), expanded=not runs.list_runs("train")):
    new_run_form(env_ok)
planned = follow(jobs.latest("train.plan"))
if planned is not None and planned.status == "done":
    plan_report(planned.result)
    if not st.session_state.get(f"train.seen.{planned.id}"):  # show a run just started
        st.session_state[f"train.seen.{planned.id}"] = True
        st.query_params["run"] = planned.result["run_id"]
st.subheader(t("train.runs"))
run_section(env_ok)
