"""Convert: pick a run and checkpoint (or a checkpoint path), convert in the background, show the verification.

Every field stays across page switches and reloads; Convert is disabled while the same conversion runs
(a second click attaches to it), or while the stage environment of the converter that takes the chosen checkpoint
is missing (another converter's is not needed); the command preview shows the `vlhub convert` line.
"""
from __future__ import annotations

from typing import Any

import streamlit as st

from vlhub.core import convert, runs, settings_store, stage, train
from vlhub.core.errors import VlhubError
from vlhub.streamlit_app import commands, pipeline
from vlhub.streamlit_app.text import t
from vlhub.streamlit_app.widgets import (action_button, checkbox, command_preview, env_ready, job_panel, path_field, quoted, radio,
                                         selectbox, show_error, start_job)

ACTION = "convert"


def labels() -> dict[str, str]:
    """The page's field labels for the flags the converter's errors name."""
    return quoted({"--out": t("convert.out"), "--config": t("convert.config"), "--template": t("convert.template"),
                   "--force": t("convert.force"), "--no-verify": t("convert.verify"), "--image": t("convert.verify")})


def pick_source() -> tuple[str, str | None, str]:
    """The checkpoint (path or run id), its config (or None: found by the converter) and a default folder name."""
    from_run = radio(t("convert.from"), ["run", "path"], "convert.from", horizontal=True,
                     format_func={v: t(f"convert.from_{v}") for v in ("run", "path")}.get) == "run"
    if not from_run:
        path = path_field(t("convert.checkpoint_path"), "convert.path", expect="checkpoint")
        config = path_field(t("convert.config"), "convert.config", expect="file")
        return path, config or None, "model"
    train_runs = [r for r in runs.list_runs("train") if r.data.get("plan") and r.status != "planned"]
    if not train_runs:
        st.info(t("convert.no_runs"))
        return "", None, ""
    ids = [r.id for r in train_runs]
    shown = {r.id: f"{r.id} ({t('run.' + r.status)})" for r in train_runs}
    run = train_runs[ids.index(selectbox(t("convert.run"), ids, "convert.run", format_func=shown.get))]
    try:
        complete = [c for c in train.checkpoints(run.id) if c.complete]
    except VlhubError as exc:
        show_error(exc)
        return "", None, ""
    if not complete:
        st.info(t("convert.no_checkpoints", run=run.id))
        return "", None, ""
    steps = {c.step: c for c in complete}
    step = selectbox(t("convert.checkpoint"), sorted(steps, reverse=True), f"convert.step.{run.id}",
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


def needed_envs(source: str) -> list[str]:
    """The stage environments converting ``source`` needs: its converter's; every converter's while no source is
    chosen; none when no converter takes it (the conversion then says why)."""
    if not source:
        return [e for e in dict.fromkeys(stage.env_of(c) for c in convert.converters().values()) if e]
    try:
        env = stage.env_of(convert.pick_converter(source))
    except VlhubError:
        return []
    return [env] if env else []


st.title(t("convert.title"))
source, config, name = pick_source()
env_ok = all([env_ready(env) for env in needed_envs(source)])  # a missing one is said, with its install line
out = path_field(t("convert.out"), f"convert.out.{name}", expect="out",
                 default=str(pipeline.models_dir() / name) if name else "") if name else ""
templates = [""] + list(convert.templates())
template = selectbox(t("convert.template"), templates, "convert.template",
                     format_func=lambda v, auto=t("convert.template_auto"): v or auto)
cols = st.columns(2)
with cols[0]:
    verify = checkbox(t("convert.verify"), "convert.verify", True)
with cols[1]:
    force = checkbox(t("convert.force"), "convert.force")
args = {"source": source, "out": out, "config": config, "template": template or None, "force": force,
        "verify": verify}
command_preview(commands.convert(args))
if action_button(t("convert.start"), ACTION, args if source and out else None, key="convert.start", type="primary",
                 disabled=not env_ok):
    if not source or not out:
        st.error(t("convert.need_inputs"))
    elif start_job(ACTION, args, t("convert.running", source=source), labels()):
        settings_store.remember_place("models", out)
        st.rerun()
job = job_panel(ACTION, labels=labels())
if job is not None and job.status == "done":
    show_result(job.result)
