"""Convert: pick a run and checkpoint (or a checkpoint path), convert in the background, show the verification."""
from __future__ import annotations

from typing import Any

import streamlit as st

from vlhub.core import convert, runs, stage, train
from vlhub.streamlit_app import jobs, pipeline
from vlhub.streamlit_app.text import t
from vlhub.streamlit_app.widgets import env_ready, follow


def pick_source() -> tuple[str, str | None, str]:
    """The checkpoint (path or run id), its config (or None: found by the converter) and a default folder name."""
    from_run = st.radio(t("convert.from"), ["run", "path"], horizontal=True, key="convert.from",
                        format_func=lambda v: t(f"convert.from_{v}")) == "run"
    if not from_run:
        path = st.text_input(t("convert.checkpoint_path"), key="convert.path").strip()
        config = st.text_input(t("convert.config"), key="convert.config").strip()
        return path, config or None, "model"
    train_runs = [r for r in runs.list_runs("train") if r.data.get("plan")]
    if not train_runs:
        st.info(t("convert.no_runs"))
        return "", None, ""
    ids = [r.id for r in train_runs]
    run = train_runs[ids.index(st.selectbox(t("convert.run"), ids, key="convert.run"))]
    complete = [c for c in train.checkpoints(run.id) if c.complete]
    if not complete:
        st.info(t("convert.no_checkpoints", run=run.id))
        return "", None, ""
    steps = {c.step: c for c in complete}
    step = st.selectbox(t("convert.checkpoint"), sorted(steps, reverse=True), key=f"convert.step.{run.id}",
                        format_func=lambda s: f"iter_{s} ({steps[s].kind})")
    return str(steps[step].path), run.data.get("config"), f"{run.id}-iter_{step}"


def show_result(result: dict[str, Any]) -> None:
    """The converted folder, whether it was verified, its provenance file and the verification report."""
    verified = result.get("verified") or {}
    if verified.get("ok"):
        st.success(t("convert.verified", out=result["out"]))
    else:
        st.warning(t("convert.not_verified", out=result["out"]))
    st.caption(t("convert.provenance", path=result["provenance"]))
    if verified:
        with st.expander(t("convert.verification")):
            st.json(verified)


st.title(t("convert.title"))
needed = dict.fromkeys(stage.env_of(c) for c in convert.converters().values())  # the converters' environments
env_ok = all([env_ready(name) for name in needed if name])
source, config, name = pick_source()
out = st.text_input(t("convert.out"), value=str(pipeline.models_dir() / name) if name else "",
                    key=f"convert.out.{name}").strip()
templates = [""] + list(convert.templates())
template = st.selectbox(t("convert.template"), templates, key="convert.template",
                        format_func=lambda v: v or t("convert.template_auto"))
cols = st.columns(2)
verify = cols[0].checkbox(t("convert.verify"), value=True, key="convert.verify")
force = cols[1].checkbox(t("convert.force"), key="convert.force")
if st.button(t("convert.start"), type="primary", disabled=not env_ok):
    if not source or not out:
        st.error(t("convert.need_inputs"))
    else:
        jobs.start("convert", {"source": source, "out": out, "config": config, "template": template or None,
                               "force": force, "verify": verify}, label=t("convert.running", source=source))
        st.rerun()
job = follow(jobs.latest("convert"))
if job is not None and job.status == "done":
    show_result(job.result)
