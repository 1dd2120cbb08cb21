"""Pieces the pages share: fields that stay, path fields with a picker and a check, plugin option fields,
stage-environment notices, the command preview, errors in the page's language, and jobs (start once,
follow live, list the recent ones)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import streamlit as st

from vlhub.core import settings_store
from vlhub.core.boundary import user_error
from vlhub.core.errors import VlhubError
from vlhub.core.options import flag
from vlhub.core.types import Progress
from vlhub.streamlit_app import jobs
from vlhub.streamlit_app.state import env_report, keep, restore, set_field
from vlhub.streamlit_app.text import choice_label, lang, option_help, option_label, t

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


def split_name(split: str) -> str:
    """A split of a prepared folder (``train``, ``val``) as the page names it (other names as they are)."""
    key = f"split.{split}"
    return t(key) if t(key) != key else split


def splits(records: Mapping[str, int]) -> str:
    """``train 15, val 2`` (split -> records) in the page's language."""
    return t("split.sep").join(f"{split_name(k)} {v}" for k, v in records.items())


def duration(seconds: float | None) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 03 min`` (``42 秒``, ``3 分 05 秒``, ... on a Chinese page)."""
    if seconds is None:
        return "—"
    s = int(seconds)
    sec, mins, hours = t("unit.s"), t("unit.min"), t("unit.h")
    if s < 60:
        return f"{s} {sec}"
    if s < 3600:
        return f"{s // 60} {mins} {s % 60:02d} {sec}"
    return f"{s // 3600} {hours} {s % 3600 // 60:02d} {mins}"


def env_ready(name: str) -> bool:
    """True when stage environment ``name`` is ready; otherwise say what is missing and how to install it."""
    env = next(e for e in env_report() if e["name"] == name)
    if env["ready"]:
        return True
    st.warning(t("env.stage_missing", name=name, missing=", ".join(env["missing"])))
    st.code(env["fix"], language="bash")
    st.caption(t("env.create_here"))
    return False


# ------------------------------------------------------------------ fields that stay
# The wrappers also pass the restored value as the widget's own default: the browser then never holds an empty
# field (and never sends one back with an early rerun) while the page is still being drawn.
def text_input(label: str, key: str, default: str = "", **kwargs: Any) -> str:
    """``st.text_input`` whose value survives page switches and reloads (:func:`state.restore`/``keep``)."""
    restore(key, default, lambda v: isinstance(v, str))
    value = st.text_input(label, st.session_state.get(key, default), key=key, **kwargs)
    keep(key, default)
    return value


def text_area(label: str, key: str, default: str = "", **kwargs: Any) -> str:
    """``st.text_area`` that stays (see :func:`text_input`)."""
    restore(key, default, lambda v: isinstance(v, str))
    value = st.text_area(label, st.session_state.get(key, default), key=key, **kwargs)
    keep(key, default)
    return value


def checkbox(label: str, key: str, default: bool = False, **kwargs: Any) -> bool:
    """``st.checkbox`` that stays (see :func:`text_input`)."""
    restore(key, bool(default), lambda v: isinstance(v, bool))
    value = st.checkbox(label, st.session_state.get(key, bool(default)), key=key, **kwargs)
    keep(key, bool(default))
    return value


def selectbox(label: str, options: Sequence[Any], key: str, default: Any = None, **kwargs: Any) -> Any:
    """``st.selectbox`` that stays (see :func:`text_input`); a remembered choice that is no longer offered
    falls back to ``default`` (the first option when ``None``). With nothing to choose it says so in the page's
    language (Streamlit's own placeholder is English)."""
    options = list(options)
    default = default if default in options else (options[0] if options else None)
    restore(key, default, lambda v: v in options)
    kwargs.setdefault("placeholder", t("form.choose") if options else t("form.no_choice"))
    value = st.selectbox(label, options, _index(options, st.session_state.get(key, default)), key=key, **kwargs)
    keep(key, default)
    return value


def radio(label: str, options: Sequence[Any], key: str, default: Any = None, **kwargs: Any) -> Any:
    """``st.radio`` that stays (see :func:`selectbox`)."""
    options = list(options)
    default = default if default in options else options[0]
    restore(key, default, lambda v: v in options)
    value = st.radio(label, options, _index(options, st.session_state.get(key, default)), key=key, **kwargs)
    keep(key, default)
    return value


def multiselect(label: str, options: Sequence[Any], key: str, default: Sequence[Any] = (), **kwargs: Any) -> list[Any]:
    """``st.multiselect`` that stays (see :func:`selectbox`); choices no longer offered are dropped."""
    options = list(options)
    default = [v for v in default if v in options]
    if key in st.session_state and isinstance(st.session_state[key], list) and \
            any(v not in options for v in st.session_state[key]):
        st.session_state[key] = [v for v in st.session_state[key] if v in options]
    restore(key, default, lambda v: isinstance(v, list) and all(x in options for x in v))
    kwargs.setdefault("placeholder", t("form.choose_many") if options else t("form.no_choice"))
    value = st.multiselect(label, options, st.session_state.get(key, default), key=key, **kwargs)
    keep(key, default)
    return value


def _index(options: list[Any], value: Any) -> int | None:
    return options.index(value) if value in options else None


# ------------------------------------------------------------------ paths: typed, picked, checked
#: What a path field expects -> (typed path kind -> (level, catalogue key)); kinds: settings_store.path_kind.
CHECKS: dict[str, dict[str, tuple[str, str]]] = {
    "source": {"missing": ("error", "check.missing"), "empty": ("warning", "check.empty")},
    "dataset": {"missing": ("error", "check.missing"), "dataset": ("ok", "check.dataset"),
                "file": ("ok", "check.json_file"), "empty": ("error", "check.not_dataset"),
                "folder": ("error", "check.not_dataset"), "model": ("error", "check.not_dataset"),
                "base_model": ("error", "check.not_dataset")},
    "base_model": {"missing": ("error", "check.missing"), "base_model": ("ok", "check.base_model"),
                   "model": ("ok", "check.converted_model"), "file": ("error", "check.not_folder"),
                   "empty": ("error", "check.not_model"), "folder": ("error", "check.not_model"),
                   "dataset": ("error", "check.not_model")},
    "model": {"missing": ("error", "check.missing"), "model": ("ok", "check.converted_model"),
              "base_model": ("warning", "check.not_converted"), "file": ("error", "check.not_folder"),
              "empty": ("error", "check.not_model"), "folder": ("warning", "check.not_model"),
              "dataset": ("error", "check.not_model")},
    "out": {"missing": ("ok", "check.will_create"), "empty": ("ok", "check.will_fill"),
            "dataset": ("warning", "check.exists_replace"), "model": ("warning", "check.exists_replace"),
            "base_model": ("error", "check.exists_foreign"), "folder": ("error", "check.exists_foreign"),
            "file": ("error", "check.is_file")},
    "checkpoint": {"missing": ("error", "check.missing"), "empty": ("error", "check.empty")},
    "file": {"missing": ("error", "check.missing"), "empty": ("error", "check.not_file"),
             "folder": ("error", "check.not_file"), "dataset": ("error", "check.not_file"),
             "model": ("error", "check.not_file"), "base_model": ("error", "check.not_file")},
}
_COLOURS = {"ok": "green", "warning": "orange", "error": "red"}
_ICONS = {"ok": ":material/check_circle:", "warning": ":material/warning:", "error": ":material/error:"}


def check_path(path: str, expect: str) -> tuple[str, str] | None:
    """``(level, text)`` saying whether ``path`` is what a field expects (``ok``, ``warning``, ``error``),
    or ``None`` when there is nothing to say (an empty field, or nothing known about the kind)."""
    if not path.strip():
        return None
    kind = settings_store.path_kind(path)
    found = CHECKS.get(expect, {}).get(kind)
    return (found[0], t(found[1], path=f"`{path}`")) if found else None


def show_check(path: str, expect: str) -> str:
    """Show :func:`check_path` under a field as a coloured caption; returns the level (``""``: nothing)."""
    found = check_path(path, expect)
    if found is None:
        return ""
    level, text = found
    st.caption(f":{_COLOURS[level]}[{_ICONS[level]} {text}]")
    return level


def short(path: str, keep_parts: int = 3) -> str:
    """A long path as ``…/last/three/parts`` (for pickers)."""
    parts = Path(path).parts
    return path if len(parts) <= keep_parts + 1 else "…/" + "/".join(parts[-keep_parts:])


def _pick(key: str, picker: str) -> None:
    chosen = st.session_state.get(picker)
    if chosen:
        set_field(key, chosen)
    st.session_state[picker] = None


def path_field(label: str, key: str, *, expect: str, choices: Iterable[str] = (), default: str = "",
               placeholder: str | None = None, help: str | None = None) -> str:
    """A path typed (free text, it stays) or picked from ``choices`` (found folders), checked as typed.

    Returns:
        The path as typed, stripped.
    """
    choices = [c for c in dict.fromkeys(choices) if c]
    cols = st.columns([3, 2]) if choices else [st.container()]
    with cols[0]:
        value = text_input(label, key, default, placeholder=placeholder, help=help).strip()
    if choices:
        picker = f"{key}.pick"
        if st.session_state.get(picker) not in (None, *choices):
            st.session_state[picker] = None
        cols[1].selectbox(t("pick.label"), choices, index=None, key=picker, on_change=_pick, args=(key, picker),
                          format_func=short, placeholder=t("pick.none", n=len(choices)), help=t("pick.help"))
    show_check(value, expect)
    return value


# ------------------------------------------------------------------ plugin options
def _unchanged(value: Any, default: Any) -> bool:
    if value in ("", None, []):
        return True
    if isinstance(value, str) and not isinstance(default, str):
        return value == ("" if default is None else str(default))
    return value == (list(default) if isinstance(default, (list, tuple)) else default)


def field_default(opt: dict[str, Any]) -> Any:
    """The value an option's field shows for the option's default."""
    kind, default = opt["type"], opt["default"]
    if kind == "bool" and default is not None:
        return bool(default)
    if opt["choices"] or kind == "bool":
        return str(default).lower() if kind == "bool" and default is not None else (default if default is not None else "")
    if kind == "list":
        return "\n".join(default or ())
    return "" if default is None else str(default)


def field_value(opt: dict[str, Any], value: Any) -> Any:
    """A given option value (as a form, a preset or a run records it) as the option's field holds it."""
    if value is None:
        return field_default(opt)
    kind = opt["type"]
    if kind == "bool" and opt["default"] is not None:
        return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes", "on")
    if opt["choices"] or kind == "bool":
        return (("true" if value else "false") if isinstance(value, bool) else str(value).lower()) \
            if kind == "bool" else str(value)
    if kind == "list":
        return "\n".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return str(value)


def set_options(options: list[dict[str, Any]], prefix: str, values: Mapping[str, Any]) -> None:
    """Set every option field under ``prefix`` to ``values`` (the others to their defaults); call it from a
    callback (before the fields are drawn): presets, "new run from this run's settings"."""
    for opt in options:
        set_field(f"{prefix}.{opt['name']}", field_value(opt, values.get(opt["name"])))


def option_field(opt: dict[str, Any], prefix: str) -> tuple[Any, bool]:
    """One option's field; returns ``(value, changed from the default)``."""
    name, kind, default, choices = opt["name"], opt["type"], opt["default"], list(opt["choices"])
    key, label, help_ = f"{prefix}.{name}", option_label(opt), option_help(opt)
    if kind == "bool" and default is not None:
        value: Any = checkbox(label, key, bool(default), help=help_)
    elif choices or kind == "bool":
        items = choices or ["true", "false"]
        items = ([""] if default is None else []) + items
        shown = {"": t("form.default"), **({"true": t("form.yes"), "false": t("form.no")} if kind == "bool" else
                                          {c: choice_label(opt, c) for c in choices})}
        value = selectbox(label, items, key, field_default(opt), help=help_, format_func=shown.get)
    elif kind == "list":
        text = text_area(label, key, field_default(opt), help=help_, height=80)
        value = [line.strip() for line in text.splitlines() if line.strip()]
    else:
        value = text_input(label, key, field_default(opt), help=help_).strip()
    return value, not _unchanged(value, default)


def option_fields(options: list[dict[str, Any]], prefix: str, columns: int = 1) -> dict[str, Any]:
    """A field per plugin option (``Option.public()`` dicts), ``columns`` to a row; returns the values that
    differ from the defaults.

    A field's title is the option's label in the page's language (``Option.labels``, e.g. ``{"zh": ...}``),
    else its ``label`` (or its name with spaces) marked as English; help and choices likewise
    (``Option.helps``, ``Option.choice_labels``). Numbers are returned
    as text: the plugin converts and checks them, as for CLI flags. Every field stays (page switches, reloads).
    """
    values: dict[str, Any] = {}
    for start in range(0, len(options), max(1, columns)):
        row = options[start:start + columns]
        slots = st.columns(columns) if columns > 1 else [st.container()]
        for slot, opt in zip(slots, row):
            with slot:
                value, changed = option_field(opt, prefix)
            if changed:
                values[opt["name"]] = value
    return values


def option_labels(options: Iterable[dict[str, Any]]) -> dict[str, str]:
    """``{"--NAME": "“label”"}`` for plugin options (what :func:`error_text` puts in place of flags)."""
    return {flag(o["name"]): f"“{option_label(o)}”" for o in options}


def quoted(labels: Mapping[str, str]) -> dict[str, str]:
    """``{flag: "“label”"}`` from ``{flag: label}``."""
    return {k: f"“{v}”" for k, v in labels.items()}


def plugins_table(plugins: list[dict[str, Any]], builtin: bool = False) -> None:
    """The loaded plugins (``vlhub plugins --json``'s ``plugins``): name, version, (built-in,) what each
    registered, by family, with the page's headers and family names."""
    rows = []
    for p in plugins:
        row = {t("plugins.col.plugin"): p["name"], t("plugins.col.version"): p["version"]}
        if builtin:
            row[t("plugins.col.builtin")] = p["builtin"]
        row[t("plugins.col.registered")] = "; ".join(f"{t('family.' + k)}: {', '.join(v)}"
                                                     for k, v in p["registered"].items())
        rows.append(row)
    st.dataframe(rows, hide_index=True)


# ------------------------------------------------------------------ messages
def error_text(exc: BaseException, labels: Mapping[str, str] | None = None) -> str:
    """Any exception as the one line a user reads, in the page's language, flags replaced by field labels."""
    return user_error(exc).localized(lang(), labels)


def show_error(exc: BaseException, labels: Mapping[str, str] | None = None) -> None:
    """:func:`error_text` in a red box."""
    st.error(error_text(exc, labels), icon=":material/error:")


def command_preview(command: str, note: str = "") -> None:
    """The equivalent command line, copyable (what the action below runs)."""
    with st.expander(t("cmd.preview"), icon=":material/terminal:"):
        st.code(command, language="bash", wrap_lines=True)
        st.caption(note or t("cmd.note"))


# ------------------------------------------------------------------ jobs
def progress_line(event: Progress) -> tuple[float | None, str]:
    """A progress event as ``(fraction or None when the total is unknown, text)``."""
    fraction = min(1.0, event.done / event.total) if event.total else None
    amount = f"{human(event.done, event.unit)} / {human(event.total, event.unit)}" if event.total else \
        human(event.done, event.unit) if event.done else ""
    return fraction, " · ".join(p for p in (event.task, amount, event.message) if p)


def show_progress(job: jobs.Job) -> None:
    """One bar per task of a job (a line for tasks of unknown size); before the first event, what the job
    is doing in its first seconds."""
    events = job.progress()
    if not events:
        key = f"job.phase.{job.kind}"
        st.caption(t(key) if t(key) != key else t("job.starting"))
    for event in events.values():
        fraction, text = progress_line(event)
        if fraction is None:
            st.caption(text)
        else:
            st.progress(fraction, text=text)


STATE_ICONS = {"running": "⏳", "done": "✅", "failed": "❌"}


def job_state(job: jobs.Job) -> str:
    """``⏳ running`` / ``✅ done`` / ``❌ failed`` in the page's language."""
    return f"{STATE_ICONS[job.status]} {t('job.state.' + job.status)}"


@st.fragment(run_every=1.0)
def _live(job_id: str, render: Callable[[jobs.Job], None]) -> None:
    job = jobs.load(job_id)
    if not job.active:
        st.rerun()
    with st.status(t("job.running_for", label=job.label, elapsed=duration(job.elapsed())), expanded=True,
                   state="running"):
        render(job)


def follow(job: jobs.Job | None, render: Callable[[jobs.Job], None] = show_progress,
           labels: Mapping[str, str] | None = None) -> jobs.Job | None:
    """Show a job: live progress while it runs (polling its folder), its error once it failed (in the page's
    language, flags replaced by ``labels``), with the process output when there is one."""
    if job is None:
        return None
    if job.active:
        _live(job.id, render)
    elif job.status == "failed":
        st.error(job.error_in(lang(), labels), icon=":material/error:")
        if job.log_tail():
            with st.expander(t("job.log")):
                st.code(job.log_tail())
    return job


def _flash_key(action: str) -> str:
    return f"_vlhub.flash.{action}"


def _current_key(action: str) -> str:
    return f"_vlhub.job.{action}"


def action_button(label: str, action: str, args: dict[str, Any] | None, *, key: str, where: Any = None,
                  disabled: bool = False, **kwargs: Any) -> bool:
    """A button that starts job ``action`` with ``args``: disabled while that very work runs (a second click,
    or a click in another tab, then never starts a second job), saying so under it. ``args=None``: the work
    is not known yet (missing fields), the button stays enabled so that a click can say what is missing."""
    where = where if where is not None else st
    running = jobs.running(action, args) if args is not None else None
    clicked = where.button(label, key=key, disabled=disabled or running is not None, **kwargs)
    if running is not None:
        where.caption(t("job.busy", label=running.label))
    return clicked


def start_job(action: str, args: dict[str, Any], label: str, labels: Mapping[str, str] | None = None) -> jobs.Job | None:
    """Start the job of a button (once: a second click while it runs attaches to it, and the page says so);
    the page follows it from now on. A refusal is shown in a red box here (``None`` is returned)."""
    try:
        job = jobs.start(action, args, label)
    except Exception as exc:  # the runs folder cannot be written, the process cannot start: one line
        show_error(exc, labels)
        return None
    st.session_state[_current_key(action)] = job.id
    if job.attached:
        st.session_state[_flash_key(action)] = t("job.attached", label=job.label)
    return job


def current_job(action: str, **match: Any) -> jobs.Job | None:
    """The job of ``action`` a page follows: the one it started in this session (when it matches), else the
    newest one whose arguments include ``match``."""
    wanted = st.session_state.get(_current_key(action))
    if wanted:
        try:
            job = jobs.load(wanted)
        except VlhubError:
            job = None
        if job is not None and all((job.args or {}).get(k) == v for k, v in match.items()):
            return job
    found = jobs.latest(action, **match)
    return found


def recent_jobs(action: str, **match: Any) -> None:
    """The recent jobs of ``action`` (checks left out unless asked for), each with its state, in an expander."""
    everything = jobs.recent(action, 12, **match)
    if not everything:
        return
    has_dry = any(j.dry for j in everything)
    running = sum(1 for j in everything if j.active)
    title = t("job.recent_running", n=len(everything), running=running) if running else \
        t("job.recent", n=len(everything))
    with st.expander(title, icon=":material/history:"):
        show_dry = st.checkbox(t("job.show_dry"), key=f"jobs.{action}.dry") if has_dry else False
        shown = [j for j in everything if show_dry or not j.dry]
        st.dataframe([{t("job.col.state"): job_state(j), t("job.col.what"): j.label,
                       t("job.col.started"): time.strftime("%m-%d %H:%M:%S", time.localtime(j.created or 0)),
                       t("job.col.took"): duration(j.elapsed()), t("job.col.id"): j.id} for j in shown],
                     hide_index=True)


def job_panel(action: str, *, labels: Mapping[str, str] | None = None,
              render: Callable[[jobs.Job], None] = show_progress, history: bool = True,
              **match: Any) -> jobs.Job | None:
    """What a page shows about its jobs: "already running — following it" after a second click, the job it
    follows (live, or its error), and the recent jobs. Returns the followed job."""
    flash = st.session_state.pop(_flash_key(action), None)
    if flash:
        st.info(flash, icon=":material/sync:")
    job = follow(current_job(action, **match), render, labels)
    if history:
        recent_jobs(action, **match)
    return job
