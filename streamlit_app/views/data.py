"""Data: choose a dataset plugin and a source folder, prepare (in the background), then the report.

Every field stays across page switches and reloads; the Prepare button is disabled while the same
preparation runs (a second click attaches to it); the command preview shows the `vlhub data prepare` line.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from vlhub.core import data, settings_store
from vlhub.core.errors import VlhubError
from vlhub.core.home import vlhub_home
from vlhub.streamlit_app import commands
from vlhub.streamlit_app.text import t, translation
from vlhub.streamlit_app.widgets import (action_button, checkbox, command_preview, human, job_panel, option_fields, option_labels,
                                         path_field, quoted, selectbox, show_error, split_name, splits,
                                         start_job)

GRID = 4
ACTION = "data.prepare"


def labels(options: list[dict[str, Any]]) -> dict[str, str]:
    """The page's field labels for the flags its errors name."""
    return {**quoted({"--source": t("data.source"), "--out": t("data.out"), "--strict": t("data.strict"),
                      "--force": t("data.force")}), **option_labels(options)}


def prepare_form() -> None:
    specs = {d["name"]: d for d in data.datasets()}
    name = selectbox(t("data.plugin"), list(specs), "data.name")
    spec = specs[name]
    st.caption(translation(spec["description"], spec.get("descriptions")))
    source = path_field(t("data.source"), "data.source", expect="source", placeholder=t("data.source_hint"))
    out = path_field(t("data.out"), f"data.out.{name}", expect="out", default=str(vlhub_home() / "data" / name))
    with st.expander(t("data.options")):
        options = option_fields(spec["options"], f"data.opt.{name}", columns=2)
    cols = st.columns(2)
    with cols[0]:
        strict = checkbox(t("data.strict"), "data.strict")
    with cols[1]:
        force = checkbox(t("data.force"), "data.force")
    if spec["download"]:
        st.caption(t("data.download_hint", name=name))
    args = {"name": name, "source": source, "out": out, "options": options, "strict": strict, "force": force}
    command_preview(commands.prepare(args))
    if action_button(t("data.prepare"), ACTION, args if source and out else None, key="data.prepare", type="primary"):
        if not source or not out:
            st.error(t("data.need_folders"))
            return
        if start_job(ACTION, args, t("data.preparing", name=name), labels(spec["options"])):
            settings_store.remember_place("datasets", out)
            st.rerun()


def show_result(result: dict[str, Any]) -> None:
    records = result["records"]
    st.success(t("data.prepared", total=sum(records.values()), splits=splits(records),
                 dropped=result["dropped"], out=result["out"]))
    if result["problems"]:
        st.warning(t("data.problems", n=len(result["problems"])))
        st.dataframe(result["problems"], hide_index=True)


def show_report(folder: str) -> None:
    """Stats charts and an image grid of a prepared folder."""
    try:
        report = data.stats(Path(folder))
        rows = data.preview(Path(folder), "train", 2 * GRID)
    except VlhubError as exc:
        show_error(exc)
        return
    cols = st.columns(4)
    cols[0].metric(t("data.records"), report.get("records_total", 0))
    cols[1].metric(t("data.images"), report.get("images", 0))
    cols[2].metric(t("data.dropped"), report.get("dropped", 0))
    cols[3].metric(t("data.image_bytes"), human(report.get("image_bytes", 0)))
    st.bar_chart({split_name(k): v for k, v in report.get("records", {}).items()}, horizontal=True,
                 x_label=t("data.records"))
    lengths = report.get("answer_length", {})
    if lengths.get("histogram"):
        st.markdown(f"**{t('data.answer_length')}** — {t('data.length_summary', **lengths)}")
        bins = lengths["histogram"]  # in length order: shown as it is, never sorted as text
        st.bar_chart({t("data.length_bin"): list(bins), t("data.records"): list(bins.values())},
                     x=t("data.length_bin"), y=t("data.records"), sort=False)
    for key, counts in report.get("categories", {}).items():
        if len(counts) > 1:
            st.markdown(f"**{key}**")
            st.bar_chart(counts)
    dup = report.get("duplicate_images", {})
    if dup.get("groups"):
        st.info(t("data.duplicates", groups=dup["groups"], images=dup["images"]))
    st.subheader(t("data.preview"))
    for start in range(0, len(rows), GRID):
        for col, row in zip(st.columns(GRID), rows[start:start + GRID]):
            with col.container(border=True):
                if row["images"]:
                    st.image(row["images"][0], width="stretch")
                for turn in row.get("conversations", []):
                    who = t("data.question") if turn.get("from") == "human" else t("data.answer")
                    st.caption(f"{who}: {turn.get('value', '').replace('<image>', '').strip()}")


st.title(t("data.title"))
prepare_form()
job = job_panel(ACTION, labels=labels([o for d in data.datasets() for o in d["options"]]))
last = job.result["out"] if job is not None and job.status == "done" else ""
if job is not None and job.status == "done":
    show_result(job.result)
st.divider()
st.subheader(t("data.report"))
folder = path_field(t("data.folder"), f"data.folder.{last}", expect="dataset", default=last,
                    choices=settings_store.find("datasets", [last] if last else []))
if folder and settings_store.path_kind(folder) == "dataset":
    show_report(folder)
