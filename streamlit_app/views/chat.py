"""Chat: one model, or two side by side (base vs fine-tuned); several images per turn; examples; export; eval.

Models load in the background (the page shows their state and stays usable) and are *leased*
(:mod:`vlhub.core.chat`): a fragment renews the leases (every ``renew_every()`` seconds) while the page is open,
so a closed or reloaded tab leaves no worker behind for longer than the lease; *Unload* stops them at
once, and Start reuses a model this launcher already has loaded with the same settings.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import streamlit as st

from vlhub.core import chat as chatapi
from vlhub.core import eval as evalapi
from vlhub.core import jobs
from vlhub.core.errors import VlhubError
from vlhub.core.provenance import PROVENANCE
from vlhub.core.types import GenerationSettings
from vlhub.streamlit_app import pipeline
from vlhub.streamlit_app.text import lang, localized, t

IMAGE_TYPES = ["png", "jpg", "jpeg", "webp", "bmp"]
#: Seconds Start waits for the models before showing their loading state (an endpoint answers at once).
START_WAIT_S = 2.0
#: Fixed / broken examples shown per list.
SHOWN_EXAMPLES = 8
state = st.session_state
state.setdefault("chat.upload_round", 0)


def error_line(exc: VlhubError) -> str:
    """The error in the page's language, CLI flags named by this page's fields."""
    return exc.localized(lang(), {"--base-url": t("chat.base_url"), "--model": t("chat.model_dir"),
                                  "--backend": t("chat.backend"), "--data": t("chat.eval_data"),
                                  "--limit": t("chat.eval_limit")})


def label(convo: chatapi.Conversation) -> str:
    return f"{convo.backend} · {Path(convo.model).name or convo.model}"


def result_labels(report: dict[str, Any]) -> list[str]:
    """``backend · model name`` of each evaluated model (numbered when two are the same)."""
    found = [f"{r.get('backend', '')} · {Path(str(r.get('model', ''))).name or r.get('model', '')}"
             for r in report.get("results", [])]
    return [f"{name} ({n + 1})" if found.count(name) > 1 else name for n, name in enumerate(found)]


def backend_status() -> dict[str, str | None]:
    """Backend name -> why it cannot run here (None: it can)."""
    return {name: backend.missing() for name, backend in chatapi.backends().items()}


# ------------------------------------------------------------------ defaults
def prefill() -> dict[str, str]:
    """The newest converted model (a folder with ``vlhub_provenance.json``) and its base model (``base``:
    a local folder, ``base_id``: what the provenance names), once per session."""
    if "chat.prefill" not in state:
        tuned = pipeline.latest_model()
        if not tuned or not (Path(tuned) / PROVENANCE).is_file():
            tuned = ""
        base_id = chatapi.base_model_of(tuned) if tuned else ""
        base = base_id if base_id and Path(base_id).expanduser().is_dir() else ""
        state["chat.prefill"] = {"tuned": tuned, "base": base, "base_id": base_id}
    return state["chat.prefill"]


def latest_prepared() -> str:
    """The newest folder the Data page prepared (``""`` when none)."""
    job = jobs.latest("data.prepare")
    if job is None or job.status != "done":
        return ""
    return str((job.data.get("result") or {}).get("out") or "")


def side_default(i: int, compare: bool) -> str:
    """The model prefilled on side ``i``: the base model on the left in compare mode, else the newest one."""
    found = prefill()
    return found["base"] if compare and i == 0 else found["tuned"]


def on_compare() -> None:
    """Switching compare mode moves a still-prefilled left side between the newest model and its base."""
    found, left = prefill(), state.get("chat.model.0", "")
    if left in ("", found["tuned"], found["base"]):
        state["chat.model.0"] = side_default(0, bool(state.get("chat.compare")))


def side_form(i: int, names: list[str], default_backend: str, compare: bool) -> dict[str, Any]:
    """Backend, model and endpoint fields for one side (prefilled the first time they are shown)."""
    if f"chat.backend.{i}" not in state:
        state[f"chat.backend.{i}"] = default_backend
    if f"chat.model.{i}" not in state:
        state[f"chat.model.{i}"] = side_default(i, compare) if default_backend != "openai" else ""
    backend = st.selectbox(t("chat.backend"), names, key=f"chat.backend.{i}")
    model = st.text_input(t("chat.model_openai") if backend == "openai" else t("chat.model_dir"),
                          key=f"chat.model.{i}")
    options: dict[str, Any] = {}
    if backend == "openai":
        options["base_url"] = st.text_input(t("chat.base_url"), key=f"chat.base_url.{i}")
    elif backend == "lmdeploy":
        cols = st.columns(3)
        options["engine"] = cols[0].selectbox(t("chat.engine"), ["turbomind", "pytorch"], key=f"chat.engine.{i}")
        options["tp"] = cols[1].number_input(t("chat.tp"), 1, 8, 1, key=f"chat.tp.{i}")
        options["session_len"] = cols[2].number_input(t("chat.session_len"), 0, 131072, 0, 1024,
                                                      key=f"chat.session_len.{i}")
    return {"backend": backend, "model": model.strip(), "options": options}


# ------------------------------------------------------------------ loading, leases, unloading
def held() -> list[chatapi.Loaded]:
    """The models this session uses, one per side."""
    return state.get("chat.entries") or []


def forget() -> None:
    state["chat.entries"] = []
    state["chat.comparison"] = None


def start(sides: list[dict[str, Any]]) -> None:
    """Load (or reuse) one model per side in the background; models this session held and no longer
    uses are unloaded."""
    old, new = held(), []
    try:
        for side in sides:
            new.append(chatapi.load(side["model"], side["backend"], side["options"]))
    except VlhubError as exc:
        for entry in new:
            if not any(entry is o for o in old):
                entry.unload()
        st.error(error_line(exc))
        return
    for entry in old:
        if not any(entry is n for n in new):
            entry.unload()
    state["chat.entries"], state["chat.comparison"] = new, None
    deadline = time.monotonic() + START_WAIT_S
    for entry in new:
        entry.wait(max(0.0, deadline - time.monotonic()))


def unload(entries: list[chatapi.Loaded]) -> None:
    for entry in entries:
        entry.unload()
    if any(any(e is h for h in held()) for e in entries):
        forget()


@st.fragment(run_every=chatapi.renew_every())
def keep_alive() -> None:
    """Renew this session's leases while the page is open (a closed tab stops renewing); a model found
    gone (unloaded in another tab, or its worker ended) reruns the page, which says so."""
    if not all([entry.renew() for entry in held()]):
        st.rerun()


@st.fragment(run_every=1.0)
def loading_view() -> None:
    """The loading models, with the seconds spent; the whole page reruns once they are loaded."""
    entries = held()
    if entries and all(e.status != chatapi.LOADING for e in entries):
        st.rerun()
    for entry in entries:
        if entry.status == chatapi.LOADING:
            st.info(t("chat.loading_model", model=entry.label(), seconds=int(time.time() - entry.started)))


def settle() -> chatapi.Comparison | None:
    """The comparison over this session's models once they are loaded; failures and models that were
    unloaded meanwhile (elsewhere, or when their lease expired) are said and dropped."""
    entries = held()
    comparison = state.get("chat.comparison")
    gone = [e for e in entries if e.status not in (chatapi.LOADING, chatapi.READY) or
            (e.status == chatapi.READY and not e.alive())]
    if gone:
        for entry in gone:
            if entry.error is not None:
                st.error(error_line(entry.error))
            else:
                st.warning(t("chat.unloaded", model=entry.label(), reason=entry.reason or entry.status))
        forget()  # the others stay loaded until their lease ends: Start again reuses them
        return None
    if comparison is None and entries and all(e.status == chatapi.READY for e in entries):
        try:
            comparison = chatapi.Comparison([e.conversation() for e in entries])
        except VlhubError as exc:  # a worker ended just now
            st.error(error_line(exc))
            forget()
            return None
        state["chat.comparison"] = comparison
    return comparison


def loaded_list() -> None:
    """Every model this launcher keeps loaded (other tabs' too), each with Unload."""
    entries = chatapi.loaded()
    if not entries:
        return
    st.caption(t("chat.loaded", minutes=max(1, round(chatapi.lease_seconds() / 60))))
    for entry in entries:
        cols = st.columns([5, 1])
        mine = any(entry is h for h in held())
        status = t("chat.status_loading") if entry.status == chatapi.LOADING else t("chat.status_ready")
        cols[0].markdown(f"`{entry.label()}` · {status}{' · ' + t('chat.in_use') if mine else ''}")
        if cols[1].button(t("chat.unload"), key=f"chat.unload.{entry.id}"):
            unload([entry])
            st.rerun()


# ------------------------------------------------------------------ conversation
def saved_uploads(files: list[Any]) -> list[str]:
    """Uploaded images written to this session's temporary folder."""
    folder = Path(state.setdefault("chat.tmp", tempfile.mkdtemp(prefix="vlhub-chat-")))
    paths = []
    for n, file in enumerate(files):
        path = folder / f"{state['chat.upload_round']}-{n}-{Path(file.name).name}"
        path.write_bytes(file.getvalue())
        paths.append(str(path))
    return paths


def show_history(turns: list[Any]) -> None:
    for turn in turns:
        with st.chat_message(turn.role):
            if turn.images:
                st.image([str(p) for p in turn.images], width=160)
            st.markdown(turn.text)


def prepare(comparison: chatapi.Comparison) -> None:
    """This run's settings and system prompt on every side; their leases renewed."""
    settings = GenerationSettings(state["chat.temperature"], state["chat.top_p"], state["chat.max_new_tokens"])
    for convo in comparison.sides:
        convo.settings = settings
        convo.system = state.get("chat.system") or ""
    chatapi.renew(held())


def stream(column: Any, text: str, images: list[Any], answer: Any) -> None:
    """One user turn and its streamed answer in a column."""
    with column:
        with st.chat_message("user"):
            if images:
                st.image([str(p) for p in images], width=160)
            st.markdown(text)
        with st.chat_message("assistant"):
            try:
                st.write_stream(answer)
            except VlhubError as exc:
                st.error(error_line(exc))
    chatapi.renew(held())


def ask(comparison: chatapi.Comparison, columns: list[Any], text: str, images: list[str]) -> None:
    """Send one turn to every side, streaming each answer into its column."""
    prepare(comparison)
    for column, convo in zip(columns, comparison.sides):
        stream(column, text, images, convo.ask(text, images))


def regenerate(comparison: chatapi.Comparison, columns: list[Any]) -> None:
    """Ask every side its last question again, streaming the new answers."""
    prepare(comparison)
    for column, convo in zip(columns, comparison.sides):
        question = convo.history[convo.last_question() or 0]
        stream(column, question.text, question.images, convo.regenerate())


def ask_regenerate() -> None:
    state["chat.regen"] = True


# ------------------------------------------------------------------ evaluation
def percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def interval(ci: Any) -> str:
    return f"{100 * ci[0]:.1f}–{100 * ci[1]:.1f}%" if isinstance(ci, list) and len(ci) == 2 else ""


def run_eval(comparison: chatapi.Comparison, data: str, limit: int) -> None:
    """:func:`vlhub.core.eval.evaluate_models` on every side (what ``vlhub eval`` runs: recorded as an
    ``eval`` run, no system prompt), its ``eval.json`` kept in this session."""
    bar = st.progress(0.0)

    def progress(p: Any) -> None:
        chatapi.renew(held())
        bar.progress(min(1.0, p.done / (p.total or 1)), p.task)

    for convo in comparison.sides:
        convo.system = ""
    try:
        report = evalapi.evaluate_models(comparison.sides, data, limit, progress)
        state["chat.eval"] = evalapi.load_eval(report["run_id"])
    except VlhubError as exc:
        st.error(error_line(exc))
    finally:
        bar.empty()


def overall_table(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for result, name in zip(report.get("results", []), result_labels(report)):
        row = {t("chat.eval_model"): name, t("chat.eval_total"): result.get("n", result.get("total")),
               t("chat.eval_correct"): result.get("correct"), t("chat.eval_accuracy"): round(result["accuracy"], 4),
               t("chat.eval_ci"): interval(result.get("ci95"))}
        if report.get("task") == evalapi.OPEN:
            row[t("chat.eval_chrf")] = round(float(result.get("chrf") or 0.0), 2)
        else:
            row[t("chat.eval_unanswered")] = result.get("unanswered", 0)
        rows.append(row)
    return rows


def category_table(report: dict[str, Any], field: str) -> list[dict[str, Any]]:
    """One row per value of ``field``: its count, then each model's accuracy and interval."""
    results = report.get("results", [])
    values: list[str] = list(dict.fromkeys(v for r in results for v in (r.get("categories") or {}).get(field, {})))
    rows = []
    for value in values:
        row: dict[str, Any] = {field: value}
        for result, name in zip(results, result_labels(report)):
            score = (result.get("categories") or {}).get(field, {}).get(value)
            row.setdefault(t("chat.eval_total"), score["n"] if score else 0)
            row[name] = (f"{percent(score['accuracy'])} ({interval(score['ci95'])})"
                                         if score else "")
        rows.append(row)
    return rows


def item_images(report: dict[str, Any]) -> dict[int, list[str]]:
    """Item index -> its image paths (read again from the evaluated file; none when it is gone)."""
    try:
        found = evalapi.load_set(report.get("file") or report.get("data") or "")
    except VlhubError:
        return {}
    return {int(item["index"]): [p for p in item.get("images", []) if Path(p).is_file()] for item in found["items"]}


def answer_text(row: dict[str, Any]) -> str:
    if "choices" in row:
        return f"{'ABCDEFGHIJ'[row['answer']]}. {row['choices'][row['answer']]}"
    return str(row.get("reference", ""))


def examples_list(report: dict[str, Any], indices: list[int], title: str, images: dict[int, list[str]]) -> None:
    """The items of one list (fixed or broken): images, question, answer and both replies."""
    names = result_labels(report)
    rows = [{r["index"]: r for r in result["items"]} for result in report["results"][:2]]
    st.markdown(f"**{title}**")
    if not indices:
        st.caption(t("chat.eval_none"))
    for index in indices[:SHOWN_EXAMPLES]:
        before, after = rows[0].get(index), rows[1].get(index)
        if before is None or after is None:
            continue
        cols = st.columns([1, 3])
        if images.get(index):
            cols[0].image(images[index], width=120)
        with cols[1]:
            st.markdown(t("chat.eval_item", index=index, question=before["question"]))
            st.caption(t("chat.eval_answer", answer=answer_text(before)))
            st.caption(f"{names[0]}: {before['reply'] or '∅'}")
            st.caption(f"{names[1]}: {after['reply'] or '∅'}")
    if len(indices) > SHOWN_EXAMPLES:
        st.caption(t("chat.eval_more", shown=SHOWN_EXAMPLES, n=len(indices)))


def show_eval(report: dict[str, Any]) -> None:
    """An eval run's ``eval.json``: overall accuracy with its 95 % interval, per category, and with two
    models the items the second one fixed and broke (with thumbnails of their images)."""
    st.caption(t("chat.eval_recorded", run=report.get("run_id", ""), n=report.get("n", 0),
                 task=t(f"chat.task.{report.get('task', '')}"), data=report.get("data", "")))
    rows = overall_table(report)
    st.dataframe(rows, hide_index=True,
                 column_config={t("chat.eval_accuracy"): st.column_config.NumberColumn(format="percent")})
    st.bar_chart({row[t("chat.eval_model")]: row[t("chat.eval_accuracy")] for row in rows})
    for note in report.get("notes", []):
        st.caption(note)
    fields = [f for f in report.get("categories", []) if any((r.get("categories") or {}).get(f)
                                                              for r in report.get("results", []))]
    if fields:
        st.markdown(f"**{t('chat.eval_categories')}**")
        for field in fields:
            st.dataframe(category_table(report, field), hide_index=True)
    if len(report.get("results", [])) == 2 and "fixed" in report:
        images = item_images(report)
        tuned = result_labels(report)[1]
        cols = st.columns(2)
        with cols[0]:
            examples_list(report, report["fixed"], t("chat.eval_fixed", model=tuned, n=len(report["fixed"])), images)
        with cols[1]:
            examples_list(report, report["broken"], t("chat.eval_broken", model=tuned, n=len(report["broken"])),
                          images)


def eval_section(comparison: chatapi.Comparison | None) -> None:
    """Accuracy on a prepared validation split (an ``eval`` run, as ``vlhub eval``); the result stays shown."""
    report = state.get("chat.eval")
    with st.expander(t("chat.eval"), expanded=report is not None):
        if "chat.eval_data" not in state:
            state["chat.eval_data"] = latest_prepared()
        data = st.text_input(t("chat.eval_data"), key="chat.eval_data")
        limit = st.number_input(t("chat.eval_limit"), min_value=1, value=50, key="chat.eval_limit")
        if st.button(t("chat.eval_run"), disabled=not data or comparison is None):
            run_eval(comparison, data, int(limit))
            report = state.get("chat.eval")
        if report is not None:
            show_eval(report)


# ------------------------------------------------------------------ the page
st.title(t("chat.title"))
status = backend_status()
for name, reason in status.items():
    if reason:
        st.info(t("chat.backend_missing", name=name, reason=localized(reason)))
names = list(status)
default_backend = next((n for n, r in status.items() if r is None), names[0])

with st.sidebar:
    st.subheader(t("chat.settings"))
    st.slider(t("chat.temperature"), 0.0, 1.5, 0.7, 0.05, key="chat.temperature")
    st.slider(t("chat.top_p"), 0.05, 1.0, 0.8, 0.05, key="chat.top_p")
    st.number_input(t("chat.max_new_tokens"), 1, 8192, 512, key="chat.max_new_tokens")
    st.text_area(t("chat.system"), key="chat.system", height=100)

comparison = settle()
keep_alive()
compare = st.toggle(t("chat.compare"), key="chat.compare", on_change=on_compare)
with st.expander(t("chat.models"), expanded=comparison is None):
    titles = [t("chat.side_base"), t("chat.side_tuned")] if compare else [t("chat.side_one")]
    sides = []
    for i, (column, title) in enumerate(zip(st.columns(len(titles)), titles)):
        with column:
            st.markdown(f"**{title}**")
            sides.append(side_form(i, names, default_backend, compare))
    found = prefill()
    if found["tuned"]:
        st.caption(t("chat.prefilled", model=found["tuned"], base=found["base_id"] or "?"))
    buttons = st.columns(3)
    if buttons[0].button(t("chat.start"), type="primary"):
        start(sides)
        comparison = settle()
    if buttons[1].button(t("chat.unload"), disabled=not held()):
        unload(held())
        comparison = None
    if buttons[2].button(t("chat.clear")) and comparison is not None:
        comparison.clear()
    loaded_list()

if held() and comparison is None:
    loading_view()

example: dict[str, Any] | None = None
with st.expander(t("chat.examples")):
    if "chat.examples_data" not in state:
        state["chat.examples_data"] = latest_prepared()
    folder = st.text_input(t("chat.examples_data"), key="chat.examples_data")
    if folder:
        try:
            shown = chatapi.examples(folder, limit=6)
        except VlhubError as exc:
            st.error(error_line(exc))
            shown = []
        for n, item in enumerate(shown):
            cols = st.columns([1, 4])
            if item["images"]:
                cols[0].image(item["images"], width=96)
            if cols[1].button(item["prompt"][:120] or t("chat.example_n", n=n + 1), key=f"chat.example.{n}"):
                example = item

if comparison is None:
    if not held():
        st.info(t("chat.start_first"))
    eval_section(None)
    st.stop()

regen = bool(state.pop("chat.regen", False)) and all(c.last_question() is not None for c in comparison.sides)
columns = st.columns(len(comparison.sides))
for column, convo in zip(columns, comparison.sides):
    with column:
        st.caption(label(convo))
        show_history(convo.history[:convo.last_question()] if regen else convo.history)

upload_key = f"chat.upload.{state['chat.upload_round']}"
prompt = st.chat_input(t("chat.input"))
if regen:
    regenerate(comparison, columns)
elif prompt or example:
    # the uploader's files are read before it is drawn, and the next one gets a new key: it shows empty
    images = saved_uploads(state.get(upload_key) or []) + (example["images"] if example and not prompt else [])
    state["chat.upload_round"] += 1
    upload_key = f"chat.upload.{state['chat.upload_round']}"
    ask(comparison, columns, prompt or example["prompt"], images)
st.file_uploader(t("chat.images"), type=IMAGE_TYPES, accept_multiple_files=True, key=upload_key)

if any(convo.history for convo in comparison.sides):
    target = comparison if len(comparison.sides) > 1 else comparison.sides[0]
    actions = st.columns(3)
    actions[0].button(t("chat.regenerate"), on_click=ask_regenerate, key="chat.regenerate")
    actions[1].download_button(t("chat.export_json"), chatapi.export(target, "json"), "conversation.json",
                               "application/json")
    actions[2].download_button(t("chat.export_md"), chatapi.export(target, "md"), "conversation.md",
                               "text/markdown")
eval_section(comparison)
