"""Publish: a model folder to several targets at once; a serve check first, preflight table, per-target progress,
links, model card.

The Check step shows the folder's last serve check (``vlhub check``, recorded in its provenance) and runs it
again as a job; while the last check failed a publish is refused unless "publish anyway" is ticked
(``--skip-serve-check``).

Every field stays across page switches and reloads; Preflight and Publish are disabled while their job runs
(a second click attaches to it); the command preview shows the `vlhub publish` line. A target that fails its
preflight is named in a red box with the whole reason. The model card preview is what will be sent
(:func:`vlhub.core.publish.card_preview`), rendered without its hidden marker comment; the loss plot the
publish adds is shown as its curve; local paths in the card are pointed out before anything is sent.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import streamlit as st

from vlhub.core import messages, provenance, publish, serve_check, settings_store, train
from vlhub.core.chat import runnable_backend
from vlhub.core.errors import VlhubError
from vlhub.core.fsutil import atomic_write_text
from vlhub.core.jobs import job_error
from vlhub.streamlit_app import commands, jobs, pipeline
from vlhub.streamlit_app.state import keep, restore, token_report
from vlhub.streamlit_app.text import known, lang, t
from vlhub.streamlit_app.widgets import (action_button, checkbox, command_preview, human, job_panel, multiselect,
                                         option_fields, option_labels, path_field, progress_line, quoted, selectbox,
                                         show_error, start_job, text_input)

ACTION = "publish"
CHECK = "check"
COMMENT = re.compile(r"<!--.*?-->", re.S)
IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
#: An absolute local path in a card (not part of a URL): ``/tmp/x/y``, ``/home/me/models``.
LOCAL_PATH = re.compile(r"(?<![\w:/.~-])(/[\w.\-]+(?:/[\w.\-{}]+)+)")


def labels(options: list[dict[str, Any]]) -> dict[str, str]:
    """The page's field labels for the flags the publishers' errors name."""
    return {**quoted({"--to": t("publish.targets")}), **option_labels(options)}


def targets_form(publishers: dict[str, Any]) -> tuple[list[str], dict[str, Any], list[dict[str, Any]]]:
    """The ``NAME:TARGET`` specs, the options (shared by the chosen publishers) and their declarations."""
    chosen = multiselect(t("publish.targets"), sorted(publishers), "publish.publishers")
    specs = []
    for name in chosen:
        hint = f"publish.placeholder.{name}"
        rest = text_input(t("publish.target", name=name), f"publish.target.{name}",
                          placeholder=t(hint) if known(hint) else "").strip()
        if rest:
            specs.append(f"{name}:{rest}")
    declared = {o.name: o.public() for name in chosen for o in publishers[name].options}
    with st.expander(t("publish.options")):
        options = option_fields(list(declared.values()), "publish.opt", columns=2)
    return specs, options, list(declared.values())


def check_reason(found: dict[str, Any]) -> str:
    """The reason of a recorded serve check in the page's language (its catalog key; the recorded English
    line when the record has none), the flags it names shown as this page's field labels."""
    key, params = found.get("reason_key") or "", found.get("params") or {}
    if key in messages.CATALOG and isinstance(params, dict):
        try:
            return VlhubError(key, **params).localized(lang(), quoted({
                "--max-new-tokens": t("publish.check_limit"), "--template": t("convert.template")}))
        except (KeyError, TypeError, ValueError, IndexError):  # a hand-edited record
            pass
    return str(found.get("reason") or "")


def serve_check_step(folder: str) -> bool:
    """The Check step before publishing: the folder's last serve check (:func:`vlhub.core.serve_check.state`),
    a button that runs it again as a job (``vlhub check``), and, when the last check failed, the choice to
    publish anyway (``--skip-serve-check``). Returns that choice."""
    st.subheader(t("publish.check"))
    st.caption(t("publish.check_about"))
    found = serve_check.state(Path(folder).expanduser())
    when = {"date": found.get("date") or "?", "backend": found.get("backend") or "?", "reason": check_reason(found)}
    if found["status"] == "ok":
        st.success(t("publish.check_ok", **when), icon=":material/check_circle:")
    elif found["status"] == "failed":
        st.error(t("publish.check_failed", **when), icon=":material/error:")
    else:
        st.info(t("publish.check_none"), icon=":material/info:")
    if found.get("answer"):
        st.caption(t("publish.check_answer", answer=" ".join(str(found["answer"]).split())[:300]))
    cols = st.columns(2)
    with cols[0]:
        backend = selectbox(t("publish.check_backend"), list(serve_check.BACKENDS), "publish.check.backend",
                            default=runnable_backend(list(serve_check.BACKENDS)) or serve_check.BACKENDS[0])
    with cols[1]:
        restore("publish.check.limit", serve_check.DEFAULT_MAX_NEW_TOKENS, lambda v: isinstance(v, int) and v >= 1)
        limit = int(st.number_input(t("publish.check_limit"), min_value=1, step=32, key="publish.check.limit"))
        keep("publish.check.limit", serve_check.DEFAULT_MAX_NEW_TOKENS)
    args = {"folder": folder, "backend": backend, "max_new_tokens": limit}
    command_preview(commands.check(args))
    if action_button(t("publish.check_run"), CHECK, args, key="publish.check.run") and \
            start_job(CHECK, args, t("publish.check_running", folder=Path(folder).name)):
        st.rerun()
    job_panel(CHECK, history=False, folder=folder)
    return checkbox(t("publish.check_skip"), "publish.check.skip") if found["status"] == "failed" else False


def show_tokens() -> None:
    rows = [{t("publish.hub"): hub, t("publish.login"): t("tokens.found", source=info["source"]) if info["found"]
             else t("tokens.not_found")} for hub, info in token_report().items()]
    st.dataframe(rows, hide_index=True)


def target_error(r: dict[str, Any], names: dict[str, str]) -> str:
    """A target's one-line error as the CLI says it, in the page's language with the page's field labels for
    the flags it names: its keyed error (``error_detail``), else the recorded line."""
    failure = job_error(r.get("error_detail"))
    if failure is None:
        return VlhubError(r["error"]).localized(lang(), names)
    return f"{r['target']}: {failure.localized(lang(), names)}"


def card_notes(checks: dict[str, Any], names: dict[str, str]) -> list[str]:
    """The preflight's notes about the model card in the page's language (their catalog keys, the flags they
    name shown as field labels); the English lines of a preflight that recorded no keys."""
    found = []
    for item in checks.get("card_note_keys") or []:
        try:
            if item["key"] not in messages.CATALOG:
                raise KeyError(item["key"])
            found.append(VlhubError(item["key"], **item["params"]).localized(lang(), names))
        except (KeyError, TypeError, ValueError, IndexError):  # a key this vlhub does not know
            return list(checks.get("card_notes") or [])
    return found or list(checks.get("card_notes") or [])


def visibility(r: dict[str, Any]) -> str:
    """The target's visibility (new or existing, public or private) as the preflight found it."""
    key = f"publish.visibility.{r.get('preflight', {}).get('checks', {}).get('visibility')}"
    return "" if t(key) == key else t(key)


def show_preflight(targets: list[dict[str, Any]], names: dict[str, str]) -> None:
    """The table of every target (with its repository's visibility), a red box with the whole reason for each
    that cannot be sent (``names``: the field labels of the flags it may name), the files."""
    summary = [{t("publish.target_col"): r["target"], t("publish.ok"): t("publish.yes") if r["ok"] else t("publish.no"),
                t("publish.visibility"): visibility(r),
                t("publish.files"): len(r.get("preflight", {}).get("files", [])),
                t("publish.to_send"): human(r.get("preflight", {}).get("bytes_to_send", 0))} for r in targets]
    st.dataframe(summary, hide_index=True)
    for r in targets:
        if r["error"]:
            st.error(target_error(r, names), icon=":material/error:")
        checks = r.get("preflight", {}).get("checks", {})
        for note in [*(checks.get("warnings") or []), *card_notes(checks, names)]:
            st.warning(note, icon=":material/warning:")
    for r in targets:
        files = r.get("preflight", {}).get("files", [])
        if files:
            with st.expander(t("publish.files_of", target=f"`{r['target']}`")):
                st.dataframe([{t("publish.file"): f["path"], t("publish.size"): human(f["size"]),
                               "LFS": "LFS" if f["lfs"] else "",
                               t("publish.remote"): t("publish.same") if f["on_remote"] else t("publish.send")}
                              for f in files], hide_index=True)


def progress_by_target(job: jobs.Job) -> None:
    """One box per target with its hash/upload/push bars (tasks are named ``TARGET: step``)."""
    by_target: dict[str, list[Any]] = {}
    for event in job.progress().values():
        by_target.setdefault(event.task.rsplit(": ", 1)[0], []).append(event)
    if not by_target:
        st.caption(t("job.phase.publish"))
    for target, events in by_target.items():
        with st.container(border=True):
            st.markdown(f"**`{target}`**")
            for event in events:
                fraction, text = progress_line(event)
                st.progress(fraction or 0.0, text=text)


def show_results(report: dict[str, Any], names: dict[str, str]) -> None:
    for r in report["targets"]:
        pub = r.get("result")
        if pub:
            state = t("publish.commit", commit=pub["commit"][:12]) if pub["changed"] else t("publish.unchanged")
            st.success(t("publish.done", target=f"`{r['target']}`", url=f"[{pub['url']}]({pub['url']})", state=state,
                         bytes=human(pub["bytes_sent"]), files=pub["files_sent"]))
        elif r["error"]:
            st.error(target_error(r, names), icon=":material/error:")


def local_paths(text: str) -> list[str]:
    """Absolute paths of this machine named in ``text`` (what a card should not publish)."""
    found = []
    for path in LOCAL_PATH.findall(text):
        first = Path(path).parts[1] if len(Path(path).parts) > 1 else ""
        if first and Path("/", first).exists() and path not in found:
            found.append(path)
    return found


def loss_curve(folder: Path) -> bool:
    """The training loss of the run the folder was converted from (what the generated plot shows)."""
    try:
        ref = provenance.read(folder).run
        metrics = train.view(ref.id)["metrics"] if ref and ref.id else []
    except VlhubError:
        return False
    losses = [(m["iter"], m["loss"]) for m in metrics if isinstance(m.get("loss"), (int, float))]
    if not losses:
        return False
    st.line_chart({"iter": [i for i, _ in losses], "loss": [v for _, v in losses]}, x="iter", y="loss", height=220,
                  x_label=t("chart.iteration"), y_label=t("train.loss"))
    return True


def render_card(text: str, folder: Path) -> None:
    """The card as the hub shows it: metadata apart, no hidden comments, images from the folder (the loss
    plot that the publish adds: its curve)."""
    body = text
    if text.startswith("---"):
        _, meta, body = (text.split("---", 2) + ["", ""])[:3]
        with st.expander(t("publish.card_metadata")):
            st.code(meta.strip(), language="yaml")
    body = COMMENT.sub("", body)
    pos = 0
    for match in IMAGE.finditer(body):
        st.markdown(body[pos:match.start()])
        alt, src = match.groups()
        local = (folder / src) if not re.match(r"^[a-z]+://", src) else None
        if local is not None and local.is_file():
            st.image(str(local), caption=alt)
        elif local is not None and not loss_curve(folder):
            st.caption(t("publish.card_image_sent", src=src))
        elif local is not None:
            st.caption(t("publish.card_loss_sent", src=src))
        else:
            st.markdown(match.group(0))
        pos = match.end()
    st.markdown(body[pos:])


def card_editor(folder: Path, specs: list[str]) -> None:
    """Preview the model card that will be sent (the core asks the first target's publisher); saving writes
    it as the folder's README.md."""
    readme = folder / "README.md"
    try:
        text, generated = publish.card_preview(folder, specs[0] if specs else None)
    except VlhubError as exc:  # e.g. a damaged vlhub_provenance.json: named, with the fix
        show_error(exc)
        return
    st.caption(t("publish.card_generated") if generated else t("publish.card_user"))
    paths = local_paths(text)
    if paths:
        st.warning(t("publish.card_local_paths", paths=", ".join(f"`{p}`" for p in paths[:6])),
                   icon=":material/warning:")
    tabs = st.tabs([t("publish.card_preview"), t("publish.card_edit")])
    with tabs[0]:
        render_card(text, folder)
    with tabs[1]:
        edited = st.text_area(t("publish.card_edit"), text, height=300, key=f"publish.card.{folder}",
                              label_visibility="collapsed")
        if st.button(t("publish.card_save")):
            atomic_write_text(readme, edited)
            st.success(t("publish.card_saved", path=readme))


st.title(t("publish.title"))
newest = pipeline.latest_model()
folder = path_field(t("publish.folder"), "publish.folder", expect="model", default=newest,
                    choices=settings_store.find("models", [newest] if newest else []))
specs, options, declared = targets_form(publish.publishers())
with st.expander(t("publish.logins")):
    show_tokens()
if folder and Path(folder).expanduser().is_dir() and serve_check_step(folder):
    options = {**options, "skip_serve_check": True}
args = {"folder": folder, "targets": specs, "options": options}
command_preview(commands.publish({**args, "dry_run": False}), t("cmd.note_publish"))
known = folder and specs
cols = st.columns(2)
clicked = "preflight" if action_button(t("publish.preflight"), ACTION, {**args, "dry_run": True} if known else None,
                                       key="publish.preflight", where=cols[0]) else \
    "publish" if action_button(t("publish.publish"), ACTION, {**args, "dry_run": False} if known else None,
                               key="publish.publish", where=cols[1], type="primary") else ""
if clicked:
    if not folder or not specs:
        st.error(t("publish.need_inputs"))
    elif not Path(folder).expanduser().is_dir():
        st.error(t("publish.no_folder", folder=folder))
    elif start_job(ACTION, {**args, "dry_run": clicked == "preflight"},
                   t("publish.checking" if clicked == "preflight" else "publish.running", targets=", ".join(specs)),
                   labels(declared)):
        settings_store.remember_place("models", folder)
        st.rerun()

job = job_panel(ACTION, labels=labels(declared), render=progress_by_target)
if job is not None and job.status == "done":
    st.subheader(t("publish.preflight_table"))
    show_preflight(job.result["targets"], labels(declared))
    if not job.result["dry_run"]:
        st.subheader(t("publish.results"))
        show_results(job.result, labels(declared))
if folder and Path(folder).expanduser().is_dir():
    with st.expander(t("publish.card"), expanded=False):
        card_editor(Path(folder).expanduser().resolve(), specs)
