"""Pieces the pages share: plugin option fields, stage-environment notices, job progress."""
from __future__ import annotations

from typing import Any, Callable

import streamlit as st

from vlhub.core.types import Progress
from vlhub.streamlit_app import jobs
from vlhub.streamlit_app.state import env_report
from vlhub.streamlit_app.text import lang, t


def human(n: float | None, unit: str = "B") -> str:
    """``1.5 MB`` for bytes; other units as plain numbers."""
    if n is None:
        return "?"
    if unit != "B":
        return f"{n:g} {unit}".strip()
    size = float(n)
    for name in ("B", "KB", "MB", "GB"):
        if size < 1024 or name == "GB":
            return f"{size:.0f} {name}" if name == "B" else f"{size:.1f} {name}"
        size /= 1024
    return str(n)


def env_ready(name: str) -> bool:
    """True when stage environment ``name`` is ready; otherwise say what is missing and how to install it."""
    env = next(e for e in env_report() if e["name"] == name)
    if env["ready"]:
        return True
    st.warning(t("env.stage_missing", name=name, missing=", ".join(env["missing"])))
    st.code(env["fix"], language="bash")
    st.caption(t("env.create_here"))
    return False


def _unchanged(value: Any, default: Any) -> bool:
    if value in ("", None, []):
        return True
    if isinstance(value, str) and not isinstance(default, str):
        return value == ("" if default is None else str(default))
    return value == (list(default) if isinstance(default, (list, tuple)) else default)


def option_label(opt: dict[str, Any]) -> str:
    """An option's field title in the page's language: ``labels[lang]``, ``label``, or the name with spaces."""
    return (opt.get("labels") or {}).get(lang()) or opt.get("label") or opt["name"].replace("_", " ")


def option_fields(options: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    """A field per plugin option (``Option.public()`` dicts); returns the values that differ from the defaults.

    A field's title is the option's label in the page's language (``Option.labels``, e.g. ``{"zh": ...}``),
    else its ``label``, else its name with spaces. Numbers are returned as text: the plugin converts and
    checks them, as for CLI flags.
    """
    values: dict[str, Any] = {}
    for opt in options:
        name, kind, default, choices = opt["name"], opt["type"], opt["default"], list(opt["choices"])
        key, label, help_ = f"{prefix}.{name}", option_label(opt), opt["help"]
        if kind == "bool" and default is not None:
            value: Any = st.checkbox(label, value=bool(default), help=help_, key=key)
        elif choices or kind == "bool":
            items = choices or ["true", "false"]
            items = ([""] if default is None else []) + items
            index = items.index(str(default).lower() if kind == "bool" else default) if default is not None else 0
            value = st.selectbox(label, items, index=index, help=help_, key=key,
                                 format_func=lambda v: v or t("form.default"))
        elif kind == "list":
            text = st.text_area(label, value="\n".join(default or ()), help=help_, key=key, height=80)
            value = [line.strip() for line in text.splitlines() if line.strip()]
        else:
            value = st.text_input(label, value="" if default is None else str(default), help=help_, key=key).strip()
        if not _unchanged(value, default):
            values[name] = value
    return values


def progress_line(event: Progress) -> tuple[float | None, str]:
    """A progress event as ``(fraction or None when the total is unknown, text)``."""
    fraction = min(1.0, event.done / event.total) if event.total else None
    amount = f"{human(event.done, event.unit)} / {human(event.total, event.unit)}" if event.total else \
        human(event.done, event.unit) if event.done else ""
    return fraction, " · ".join(p for p in (event.task, amount, event.message) if p)


def show_progress(job: jobs.Job) -> None:
    """One bar per task of a job (a spinner-like line for tasks of unknown size)."""
    events = job.progress()
    if not events:
        st.caption(t("job.starting"))
    for event in events.values():
        fraction, text = progress_line(event)
        if fraction is None:
            st.caption(text)
        else:
            st.progress(fraction, text=text)


@st.fragment(run_every=1.0)
def _live(job_id: str, render: Callable[[jobs.Job], None]) -> None:
    job = jobs.load(job_id)
    if not job.active:
        st.rerun()
    with st.status(t("job.running", label=job.label), expanded=True):
        render(job)


def follow(job: jobs.Job | None, render: Callable[[jobs.Job], None] = show_progress) -> jobs.Job | None:
    """Show a job: live progress while it runs (polling its folder), its error once it failed."""
    if job is None:
        return None
    if job.active:
        _live(job.id, render)
    elif job.status == "failed":
        st.error(job.error)
        if job.log_tail():
            with st.expander(t("job.log")):
                st.code(job.log_tail())
    return job
