"""Chat: one model, or two side by side (base vs fine-tuned); several images per turn; examples; export; eval."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import streamlit as st

from vlhub.core import chat as chatapi
from vlhub.core import eval as evalapi
from vlhub.core.errors import VlhubError
from vlhub.core.types import GenerationSettings
from vlhub.streamlit_app.text import t

IMAGE_TYPES = ["png", "jpg", "jpeg", "webp", "bmp"]
state = st.session_state
state.setdefault("chat.upload_round", 0)


def label(convo: chatapi.Conversation) -> str:
    return f"{convo.backend} · {Path(convo.model).name or convo.model}"


def backend_status() -> dict[str, str | None]:
    """Backend name -> why it cannot run here (None: it can)."""
    return {name: backend.missing() for name, backend in chatapi.backends().items()}


def side_form(i: int, names: list[str]) -> dict[str, Any]:
    """Backend, model and endpoint fields for one side."""
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


def start(sides: list[dict[str, Any]]) -> None:
    """(Re)open the conversations; on failure show one line and keep none."""
    if state.get("chat.comparison"):
        state["chat.comparison"].close()
    state["chat.comparison"] = None
    opened: list[chatapi.Conversation] = []
    try:
        with st.spinner(t("chat.loading")):
            for side in sides:
                opened.append(chatapi.Conversation(side["model"], side["backend"], side["options"]))
    except VlhubError as exc:
        for convo in opened:
            convo.close()
        st.error(exc.one_line())
        return
    state["chat.comparison"] = chatapi.Comparison(opened)


def saved_uploads(files: list[Any]) -> list[str]:
    """Uploaded images written to this session's temporary folder."""
    folder = Path(state.setdefault("chat.tmp", tempfile.mkdtemp(prefix="vlhub-chat-")))
    paths = []
    for n, file in enumerate(files):
        path = folder / f"{state['chat.upload_round']}-{n}-{Path(file.name).name}"
        path.write_bytes(file.getvalue())
        paths.append(str(path))
    return paths


def show_history(convo: chatapi.Conversation) -> None:
    for turn in convo.history:
        with st.chat_message(turn.role):
            if turn.images:
                st.image([str(p) for p in turn.images], width=160)
            st.markdown(turn.text)


def ask(comparison: chatapi.Comparison, columns: list[Any], text: str, images: list[str]) -> None:
    """Send one turn to every side, streaming each answer into its column."""
    settings = GenerationSettings(state["chat.temperature"], state["chat.top_p"], state["chat.max_new_tokens"])
    for column, convo in zip(columns, comparison.sides):
        convo.settings = settings
        with column:
            with st.chat_message("user"):
                if images:
                    st.image(images, width=160)
                st.markdown(text)
            with st.chat_message("assistant"):
                try:
                    st.write_stream(convo.ask(text, images))
                except VlhubError as exc:
                    st.error(exc.one_line())


def eval_section(comparison: chatapi.Comparison) -> None:
    """Multiple-choice accuracy of each side on a prepared validation split (recorded as an ``eval`` run):
    a table and a chart."""
    with st.expander(t("chat.eval")):
        data = st.text_input(t("chat.eval_data"), key="chat.eval_data")
        limit = st.number_input(t("chat.eval_limit"), min_value=1, value=50, key="chat.eval_limit")
        if not st.button(t("chat.eval_run"), disabled=not data):
            return
        bar = st.progress(0.0)
        try:
            results = evalapi.evaluate_models(comparison.sides, data, int(limit),
                                              lambda p: bar.progress(p.done / (p.total or 1), p.task))["results"]
        except VlhubError as exc:
            st.error(exc.one_line())
            return
        rows = [{t("chat.eval_model"): label(c), t("chat.eval_correct"): r["correct"],
                 t("chat.eval_total"): r["total"], t("chat.eval_accuracy"): round(r["accuracy"], 4)}
                for c, r in zip(comparison.sides, results)]
        st.dataframe(rows, hide_index=True)
        st.bar_chart({row[t("chat.eval_model")]: row[t("chat.eval_accuracy")] for row in rows})


st.title(t("chat.title"))
status = backend_status()
for name, reason in status.items():
    if reason:
        st.info(t("chat.backend_missing", name=name, reason=reason))
names = list(status)

with st.sidebar:
    st.subheader(t("chat.settings"))
    st.slider(t("chat.temperature"), 0.0, 1.5, 0.7, 0.05, key="chat.temperature")
    st.slider(t("chat.top_p"), 0.05, 1.0, 0.8, 0.05, key="chat.top_p")
    st.number_input(t("chat.max_new_tokens"), 1, 8192, 512, key="chat.max_new_tokens")

compare = st.toggle(t("chat.compare"), key="chat.compare")
with st.expander(t("chat.models"), expanded=state.get("chat.comparison") is None):
    titles = [t("chat.side_base"), t("chat.side_tuned")] if compare else [t("chat.side_one")]
    sides = []
    for i, (column, title) in enumerate(zip(st.columns(len(titles)), titles)):
        with column:
            st.markdown(f"**{title}**")
            sides.append(side_form(i, names))
    buttons = st.columns(2)
    if buttons[0].button(t("chat.start"), type="primary"):
        start(sides)
    if buttons[1].button(t("chat.clear")) and state.get("chat.comparison"):
        state["chat.comparison"].clear()

comparison: chatapi.Comparison | None = state.get("chat.comparison")
example: dict[str, Any] | None = None
with st.expander(t("chat.examples")):
    folder = st.text_input(t("chat.examples_data"), key="chat.examples_data")
    if folder:
        try:
            shown = chatapi.examples(folder, limit=6)
        except VlhubError as exc:
            st.error(exc.one_line())
            shown = []
        for n, item in enumerate(shown):
            cols = st.columns([1, 4])
            if item["images"]:
                cols[0].image(item["images"], width=96)
            if cols[1].button(item["prompt"][:120] or t("chat.example_n", n=n + 1), key=f"chat.example.{n}"):
                example = item

if comparison is None:
    st.info(t("chat.start_first"))
    st.stop()

columns = st.columns(len(comparison.sides))
for column, convo in zip(columns, comparison.sides):
    with column:
        st.caption(label(convo))
        show_history(convo)

uploads = st.file_uploader(t("chat.images"), type=IMAGE_TYPES, accept_multiple_files=True,
                           key=f"chat.upload.{state['chat.upload_round']}")
prompt = st.chat_input(t("chat.input"))
if prompt or example:
    images = saved_uploads(uploads or []) + (example["images"] if example and not prompt else [])
    ask(comparison, columns, prompt or example["prompt"], images)
    state["chat.upload_round"] += 1

if any(convo.history for convo in comparison.sides):
    target = comparison if len(comparison.sides) > 1 else comparison.sides[0]
    exports = st.columns(2)
    exports[0].download_button(t("chat.export_json"), chatapi.export(target, "json"), "conversation.json",
                               "application/json")
    exports[1].download_button(t("chat.export_md"), chatapi.export(target, "md"), "conversation.md",
                               "text/markdown")
eval_section(comparison)
