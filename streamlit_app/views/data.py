"""Data: choose a dataset plugin and a source folder, prepare (in the background), then the report."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from vlhub.core import data
from vlhub.core.errors import VlhubError
from vlhub.core.home import vlhub_home
from vlhub.streamlit_app import jobs
from vlhub.streamlit_app.text import t
from vlhub.streamlit_app.widgets import follow, human, option_fields

GRID = 4


def prepare_form() -> None:
    specs = {d["name"]: d for d in data.datasets()}
    name = st.selectbox(t("data.plugin"), list(specs), key="data.name")
    spec = specs[name]
    st.caption(spec["description"])
    source = st.text_input(t("data.source"), key="data.source", placeholder=t("data.source_hint")).strip()
    out = st.text_input(t("data.out"), value=str(vlhub_home() / "data" / name), key=f"data.out.{name}").strip()
    with st.expander(t("data.options")):
        options = option_fields(spec["options"], f"data.opt.{name}")
    cols = st.columns(2)
    strict = cols[0].checkbox(t("data.strict"), key="data.strict")
    force = cols[1].checkbox(t("data.force"), key="data.force")
    if spec["download"]:
        st.caption(t("data.download_hint", name=name))
    if st.button(t("data.prepare"), type="primary"):
        if not source or not out:
            st.error(t("data.need_folders"))
            return
        args = {"name": name, "source": source, "out": out, "options": options, "strict": strict, "force": force}
        jobs.start("data.prepare", args, label=t("data.preparing", name=name))
        st.rerun()


def show_result(result: dict[str, Any]) -> None:
    records = result["records"]
    st.success(t("data.prepared", total=sum(records.values()), splits=", ".join(f"{k} {v}" for k, v in records.items()),
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
        st.error(exc.one_line())
        return
    cols = st.columns(4)
    cols[0].metric(t("data.records"), report.get("records_total", 0))
    cols[1].metric(t("data.images"), report.get("images", 0))
    cols[2].metric(t("data.dropped"), report.get("dropped", 0))
    cols[3].metric(t("data.image_bytes"), human(report.get("image_bytes", 0)))
    st.bar_chart(report.get("records", {}), horizontal=True, x_label=t("data.records"))
    lengths = report.get("answer_length", {})
    if lengths.get("histogram"):
        st.markdown(f"**{t('data.answer_length')}** — {t('data.length_summary', **lengths)}")
        st.bar_chart(lengths["histogram"])
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
job = follow(jobs.latest("data.prepare"))
last = job.result["out"] if job is not None and job.status == "done" else ""
if job is not None and job.status == "done":
    show_result(job.result)
st.divider()
st.subheader(t("data.report"))
folder = st.text_input(t("data.folder"), value=last, key=f"data.folder.{last}").strip()
if folder:
    show_report(folder)
