"""Publish: a model folder to several targets at once; preflight table, per-target progress, links, model card."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from vlhub.core import publish
from vlhub.core.errors import VlhubError
from vlhub.core.fsutil import atomic_write_text
from vlhub.streamlit_app import jobs, pipeline
from vlhub.streamlit_app.state import token_report
from vlhub.streamlit_app.text import known, t
from vlhub.streamlit_app.widgets import follow, human, option_fields, progress_line


def targets_form(publishers: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """The ``NAME:TARGET`` specs and the options (shared by the chosen publishers) from the form."""
    chosen = st.multiselect(t("publish.targets"), sorted(publishers), key="publish.publishers")
    specs = []
    for name in chosen:
        hint = f"publish.placeholder.{name}"
        rest = st.text_input(t("publish.target", name=name), key=f"publish.target.{name}",
                             placeholder=t(hint) if known(hint) else "").strip()
        if rest:
            specs.append(f"{name}:{rest}")
    declared = {o.name: o.public() for name in chosen for o in publishers[name].options}
    with st.expander(t("publish.options")):
        options = option_fields(list(declared.values()), "publish.opt")
    return specs, options


def show_tokens() -> None:
    rows = [{t("publish.hub"): hub, t("publish.login"): t("tokens.found", source=info["source"]) if info["found"]
             else t("tokens.not_found")} for hub, info in token_report().items()]
    st.dataframe(rows, hide_index=True)


def show_preflight(targets: list[dict[str, Any]]) -> None:
    summary = [{t("publish.target_col"): r["target"], t("publish.ok"): t("publish.yes") if r["ok"] else t("publish.no"),
                t("publish.files"): len(r.get("preflight", {}).get("files", [])),
                t("publish.to_send"): human(r.get("preflight", {}).get("bytes_to_send", 0)),
                t("publish.problem"): r["error"]} for r in targets]
    st.dataframe(summary, hide_index=True)
    for r in targets:
        files = r.get("preflight", {}).get("files", [])
        if files:
            with st.expander(t("publish.files_of", target=r["target"])):
                st.dataframe([{t("publish.file"): f["path"], t("publish.size"): human(f["size"]),
                               "LFS": "LFS" if f["lfs"] else "",
                               t("publish.remote"): t("publish.same") if f["on_remote"] else t("publish.send")}
                              for f in files], hide_index=True)


def progress_by_target(job: jobs.Job) -> None:
    """One box per target with its hash/upload/push bars (tasks are named ``TARGET: step``)."""
    by_target: dict[str, list[Any]] = {}
    for event in job.progress().values():
        by_target.setdefault(event.task.rsplit(": ", 1)[0], []).append(event)
    for target, events in by_target.items():
        with st.container(border=True):
            st.markdown(f"**{target}**")
            for event in events:
                fraction, text = progress_line(event)
                st.progress(fraction or 0.0, text=text)


def show_results(report: dict[str, Any]) -> None:
    for r in report["targets"]:
        pub = r.get("result")
        if pub:
            state = t("publish.commit", commit=pub["commit"][:12]) if pub["changed"] else t("publish.unchanged")
            st.success(t("publish.done", target=r["target"], url=pub["url"], state=state,
                         bytes=human(pub["bytes_sent"]), files=pub["files_sent"]))
        elif r["error"]:
            st.error(r["error"])


def card_editor(folder: Path, specs: list[str]) -> None:
    """Preview the model card that will be sent (the core asks the first target's publisher); saving writes
    it as the folder's README.md."""
    readme = folder / "README.md"
    try:
        text, generated = publish.card_preview(folder, specs[0] if specs else None)
    except VlhubError as exc:  # e.g. a damaged vlhub_provenance.json: named, with the fix
        st.error(exc.one_line())
        return
    st.caption(t("publish.card_generated") if generated else t("publish.card_user"))
    tabs = st.tabs([t("publish.card_preview"), t("publish.card_edit")])
    with tabs[0]:
        st.markdown(text.split("---", 2)[-1] if text.startswith("---") else text)
    with tabs[1]:
        edited = st.text_area(t("publish.card_edit"), text, height=300, key=f"publish.card.{folder}",
                              label_visibility="collapsed")
        if st.button(t("publish.card_save")):
            atomic_write_text(readme, edited)
            st.success(t("publish.card_saved", path=readme))


st.title(t("publish.title"))
folder = st.text_input(t("publish.folder"), value=pipeline.latest_model(), key="publish.folder").strip()
specs, options = targets_form(publish.publishers())
with st.expander(t("publish.logins")):
    show_tokens()
cols = st.columns(2)
clicked = "preflight" if cols[0].button(t("publish.preflight")) else \
    "publish" if cols[1].button(t("publish.publish"), type="primary") else ""
if clicked:
    if not folder or not specs:
        st.error(t("publish.need_inputs"))
    elif not Path(folder).expanduser().is_dir():
        st.error(t("publish.no_folder", folder=folder))
    else:
        jobs.start("publish", {"folder": folder, "targets": specs, "options": options,
                               "dry_run": clicked == "preflight"},
                   label=t("publish.running", targets=", ".join(specs)))
        st.rerun()

job = follow(jobs.latest("publish"), progress_by_target)
if job is not None and job.status == "done":
    st.subheader(t("publish.preflight_table"))
    show_preflight(job.result["targets"])
    if not job.result["dry_run"]:
        st.subheader(t("publish.results"))
        show_results(job.result)
if folder and Path(folder).expanduser().is_dir():
    with st.expander(t("publish.card"), expanded=False):
        card_editor(Path(folder).expanduser().resolve(), specs)
