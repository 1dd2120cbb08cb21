"""Train: the trainer's settings grouped as LlamaBoard groups them (model, data, method, hyper-parameters,
output, distributed), presets, the dataset report, check/start/stop/resume and a live view.

Every field stays across page switches and reloads; each button is disabled while its job runs (a second
click attaches to it); a refused start leaves no run and keeps the form open with the error under it. The
live view reads the run folder only (:func:`vlhub.core.train.view`), so a reload, a closed tab or a
restarted launcher shows the same progress; the selected run is kept in the URL (``?run=ID``).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import streamlit as st

from vlhub.core import data as dataapi
from vlhub.core import messages, runs, settings_store, stage, train
from vlhub.core.errors import VlhubError
from vlhub.core.lifecycle import ACTIVE, refresh
from vlhub.streamlit_app import commands, jobs
from vlhub.streamlit_app.state import env_report, kept, set_field
from vlhub.streamlit_app.text import lang, localized, t
from vlhub.streamlit_app.widgets import (action_button, checkbox, command_preview, current_job, duration, env_ready, field_default,
                                         job_panel, option_fields, option_labels, path_field, quoted, selectbox,
                                         set_options, show_error, splits, start_job)

#: Field groups, in LlamaBoard's order; any other option of the trainer is under "All settings".
GROUPS = (
    ("method", ("method", "template", "freeze_llm", "freeze_vit", "lora_r", "lora_alpha", "lora_dropout",
                "vit_lora_r", "vit_lora_alpha"), 3),
    ("hyper", ("max_length", "batch_size", "grad_accum", "epochs", "max_iters", "lr", "warmup_ratio",
               "weight_decay", "max_norm", "seed"), 4),
    ("output", ("save_steps", "save_limit", "log_interval", "eval_every", "eval_image", "eval_prompt", "val_every",
                "val_items", "best_metric", "report_to"), 3),
)
#: Shown in an expander of their own (rarely changed on one machine).
DISTRIBUTED = ("deepspeed", "gpus", "devices", "nnodes", "node_rank", "master_addr", "master_port")
PLAN, STOP, RESUME = "train.plan", "train.stop", "train.resume"
OPEN = "_vlhub.train.open"        # keep the New run form open (a loaded preset or run, a refused start)
FLASH = "_vlhub.train.flash"      # a message for the form (preset saved, settings loaded)
SELECTED = "_vlhub.train.run"     # the run shown below, across page switches


def chosen_trainer() -> str:
    """The trainer the form shows (kept or remembered), the default one when it is gone."""
    name = st.session_state.get("train.trainer") or kept().get("train.trainer") or train.DEFAULT_TRAINER
    return name if name in train.trainers() else train.DEFAULT_TRAINER


def trainers_for(model: str) -> list[str]:
    """The registered trainers that train the model folder ``model`` (their optional ``accepts_model(path)``;
    one without it accepts any); all of them while no folder is given, or when none accepts it (the chosen
    trainer's check then says why)."""
    registered = train.trainers()
    if not model or not Path(model).expanduser().is_dir():
        return list(registered)
    folder = Path(model).expanduser()
    accepting = [name for name, impl in registered.items()
                 if not callable(getattr(impl, "accepts_model", None)) or impl.accepts_model(folder)]
    return accepting or list(registered)


def trainer_options(name: str) -> list[dict[str, Any]]:
    return [o.public() for o in train.options(name)]


def labels(options: list[dict[str, Any]]) -> dict[str, str]:
    """The page's field labels for the flags the trainer's errors name."""
    return {**quoted({"--model": t("train.model"), "--data": t("train.data"), "--trainer": t("train.trainer")}),
            **option_labels(options)}


def given(options: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    """The settings in the form now that differ from the defaults (what a preset saves)."""
    values: dict[str, Any] = {}
    for opt in options:
        value = st.session_state.get(f"{prefix}.{opt['name']}", field_default(opt))
        if opt["type"] == "list" and isinstance(value, str):
            value = [line.strip() for line in value.splitlines() if line.strip()]
        elif isinstance(value, str):
            value = value.strip()
        if value != field_default(opt) and value not in ("", []):
            values[opt["name"]] = value
    return values


def load_settings(settings: dict[str, Any], message: str) -> None:
    """Put a preset's or a run's settings into the form (a callback: before the fields are drawn)."""
    name = settings.get("trainer") or train.DEFAULT_TRAINER
    if name not in train.trainers():
        st.session_state[FLASH] = ("error", t("preset.no_trainer", trainer=name))
        return
    set_field("train.trainer", name)
    for key in ("model", "data"):
        if settings.get(key):
            set_field(f"train.{key}", str(settings[key]))
    set_options(trainer_options(name), f"train.opt.{name}", settings.get("options") or {})
    st.session_state[OPEN] = True
    st.session_state[FLASH] = ("success", message)


def _load_preset() -> None:
    name = st.session_state.get("train.preset.pick")
    if not name:
        return
    try:
        load_settings(settings_store.load_preset(name), t("preset.loaded", name=name))
    except VlhubError as exc:
        st.session_state[FLASH] = ("error", exc.localized(lang()))


def _save_preset() -> None:
    name = str(st.session_state.get("train.preset.name") or "").strip()
    trainer = st.session_state.get("train.trainer") or train.DEFAULT_TRAINER
    try:
        settings_store.save_preset(name, trainer, given(trainer_options(trainer), f"train.opt.{trainer}"),
                                   str(st.session_state.get("train.model") or "").strip(),
                                   str(st.session_state.get("train.data") or "").strip())
    except VlhubError as exc:
        st.session_state[FLASH] = ("error", exc.localized(lang()))
        return
    st.session_state["train.preset.pick"] = " ".join(name.split())
    st.session_state[FLASH] = ("success", t("preset.saved", name=" ".join(name.split())))


def _delete_preset() -> None:
    name = st.session_state.get("train.preset.pick")
    if name:
        settings_store.delete_preset(name)
        st.session_state["train.preset.pick"] = None
        st.session_state[FLASH] = ("success", t("preset.deleted", name=name))


def presets_box() -> None:
    """Save the form's settings under a name; load or delete a saved set."""
    try:
        saved = list(settings_store.presets())
    except VlhubError as exc:
        show_error(exc)
        return
    with st.popover(t("preset.title"), icon=":material/bookmarks:"):
        if st.session_state.get("train.preset.pick") not in [None, *saved]:
            st.session_state["train.preset.pick"] = None
        st.selectbox(t("preset.pick"), saved, index=None, key="train.preset.pick",
                     placeholder=t("preset.none", n=len(saved)))
        cols = st.columns(2)
        cols[0].button(t("preset.load"), key="train.preset.load", on_click=_load_preset, disabled=not saved)
        cols[1].button(t("preset.delete"), key="train.preset.delete", on_click=_delete_preset, disabled=not saved)
        st.text_input(t("preset.name"), key="train.preset.name", placeholder=t("preset.name_hint"))
        st.button(t("preset.save"), key="train.preset.save", on_click=_save_preset, type="primary")


def data_summary(folder: str) -> None:
    """The prepared folder's counts, before anything is planned."""
    try:
        report = dataapi.stats(Path(folder))
    except VlhubError as exc:
        st.caption(exc.localized(lang()))
        return
    st.caption(t("train.data_summary", dataset=report["dataset"], total=report.get("records_total", 0),
                 splits=splits(report.get("records", {})),
                 images=report.get("images", 0)))


def group(title: str, options: list[dict[str, Any]], names: tuple[str, ...], prefix: str, columns: int) -> dict[str, Any]:
    chosen = [o for o in options if o["name"] in names]
    if not chosen:
        return {}
    with st.container(border=True):
        st.markdown(f"**{title}**")
        return option_fields(sorted(chosen, key=lambda o: names.index(o["name"])), prefix, columns)


def _pick_devices(prefix: str) -> None:
    picked = st.session_state.get("train.devices.pick") or []
    set_field(f"{prefix}.devices", ",".join(str(i) for i in picked))


def device_picker(options: list[dict[str, Any]], prefix: str) -> None:
    """The GPUs this machine shows, to pick for the trainer's ``devices`` setting (it fills that field; the
    order picked is the ranks' order). Nothing without a GPU or a trainer that has the setting."""
    found = dict(stage.gpus())
    if not found or not any(o["name"] == "devices" for o in options):
        return
    st.multiselect(t("train.devices_pick"), list(found), key="train.devices.pick",
                   format_func=lambda i: f"{i}: {found[i]}", on_change=_pick_devices, args=(prefix,),
                   placeholder=t("train.devices_all", n=len(found)), help=t("train.devices_help"))


def new_run_form(env_ok: bool) -> None:
    """Trainer and presets, model and data (picked or typed, checked), the trainer's settings in groups, the
    command preview, and Check / Start."""
    flash = st.session_state.pop(FLASH, None)
    if flash:
        getattr(st, flash[0])(flash[1])
    top = st.columns([3, 1], vertical_alignment="bottom")
    with top[0]:
        offered = trainers_for(st.session_state.get("train.model") or kept().get("train.model") or "")
        name = selectbox(t("train.trainer"), offered, "train.trainer", train.DEFAULT_TRAINER,
                         help=t("train.trainer_by_model"))
    with top[1]:
        presets_box()
    options = trainer_options(name)
    prefix = f"train.opt.{name}"
    prepared = jobs.latest("data.prepare")
    newest = prepared.result["out"] if prepared is not None and prepared.status == "done" else ""
    with st.container(border=True):
        st.markdown(f"**{t('train.group.model')}**")
        model = path_field(t("train.model"), "train.model", expect="base_model", placeholder="/models/InternVL2-2B",
                           choices=[p for p in [*settings_store.places("base_models"),
                                                *(r.data.get("model", "") for r in runs.list_runs("train")),
                                                *settings_store.find("base_models")] if p and Path(p).is_dir()])
        folder = path_field(t("train.data"), "train.data", expect="dataset", default=newest,
                            choices=settings_store.find("datasets", [newest] if newest else []))
        if folder:
            data_summary(folder)
    st.caption(t("train.defaults"))
    values: dict[str, Any] = {}
    for key, names, columns in GROUPS:
        values |= group(t(f"train.group.{key}"), options, names, prefix, columns)
    grouped = {n for _, names, _ in GROUPS for n in names}
    with st.expander(t("train.group.distributed")):
        device_picker(options, prefix)
        values |= option_fields([o for o in options if o["name"] in DISTRIBUTED], prefix, 3)
    with st.expander(t("train.all_settings")):
        values |= option_fields([o for o in options if o["name"] not in grouped | set(DISTRIBUTED)], prefix, 2)
    args = {"model": model, "data": folder, "options": values, "trainer": name}
    command_preview(commands.train({**args, "launch": True}, {o["name"]: o["type"] for o in options}),
                    t("cmd.note_train"))
    known = bool(model and folder)
    cols = st.columns(2)
    check = action_button(t("train.check"), PLAN, {**args, "launch": False} if known else None, key="train.check",
                          where=cols[0])
    start = action_button(t("train.start"), PLAN, {**args, "launch": True} if known else None, key="train.start",
                          where=cols[1], type="primary", disabled=not env_ok)
    if check or start:
        if not model or not folder:
            st.error(t("train.need_inputs"))
            return
        job = start_job(PLAN, {**args, "launch": bool(start)}, t("train.starting" if start else "train.planning"),
                        labels(options))
        if job is not None:
            settings_store.remember_place("base_models", model)
            settings_store.remember_place("datasets", folder)
            st.session_state[OPEN] = True
            st.rerun()
    job = job_panel(PLAN, labels=labels(options))
    if job is not None and job.status == "failed":
        st.session_state[OPEN] = True


def plan_report(result: dict[str, Any], names: dict[str, str]) -> None:
    """What the last check or start planned: the dataset as the trainer sees it, warnings (in the page's language,
    flags named by ``names``, the fields' labels), the command."""
    plan = result["plan"]
    ds = plan["dataset"]
    tokens = ds.get("tokens", {})
    st.success(t("train.planned" if result["status"] == "planned" else "train.started", run=result["run_id"]))
    cols = st.columns(4)
    cols[0].metric(t("train.samples"), ds.get("samples", 0))
    cols[1].metric(t("train.tokens"), f"{tokens.get('median', '?')} / {tokens.get('max', '?')}")
    cols[2].metric(t("train.over_length"), ds.get("over_max_length", 0))
    cols[3].metric(t("train.iterations"), ds.get("iterations", 0))
    details = result.get("warning_details") or [None] * len(plan.get("warnings", []))
    for note, detail in zip(plan.get("warnings", []), details):
        st.warning(localized(messages.from_detail(note, detail), names))
    with st.expander(t("train.command")):
        st.code(" ".join(plan["command"]), language="bash", wrap_lines=True)
        st.caption(plan["config"])


def smoothed(values: list[float | None], span: int) -> list[float | None]:
    """An exponential moving average of ``values`` over about ``span`` points (gaps stay gaps)."""
    alpha, out, level = 2 / (span + 1), [], None
    for v in values:
        if v is None:
            out.append(None)
            continue
        level = v if level is None else alpha * v + (1 - alpha) * level
        out.append(round(level, 6))
    return out


def loss_series(metrics: list[dict[str, Any]], smooth: list[float | None],
                validation: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The loss chart's data in long form (``iter``, the loss, the curve's name): the training loss, its smoothed
    curve and the validation loss (one point per validation), each curve drawn as its own line."""
    rows = [(m["iter"], m.get("loss"), t("train.loss_raw")) for m in metrics]
    rows += [(m["iter"], v, t("train.loss_smoothed")) for m, v in zip(metrics, smooth)]
    rows += [(v["iter"], v["val_loss"], t("train.val_loss")) for v in validation
             if isinstance(v.get("val_loss"), (int, float))]
    rows = [r for r in rows if r[1] is not None]
    return {"iter": [r[0] for r in rows], t("train.loss"): [r[1] for r in rows], t("train.curve"): [r[2] for r in rows]}


def speed(metrics: list[dict[str, Any]]) -> str:
    """Iterations per second from the trainer's seconds per iteration (``time``) of the last records."""
    times = [m["time"] for m in metrics[-5:] if isinstance(m.get("time"), (int, float)) and m["time"] > 0]
    if not times:
        return "—"
    rate = len(times) / sum(times)
    return f"{rate:.2f} it/s" if rate >= 1 or rate >= 0.1 else f"{1 / rate:.1f} s/it"


def live(run_id: str, polling: bool = False) -> None:
    """Progress, speed, charts, samples, checkpoints and the log tail of one run (read from its folder);
    ``polling``: it was active when the page was drawn, so its end redraws the whole page (buttons, list)."""
    view = train.view(run_id)
    run, metrics = view["run"], view["metrics"]
    status = run.get("status", "created")
    if polling and status not in ACTIVE:
        st.rerun()
    last = metrics[-1] if metrics else {}
    total = last.get("total") or (run.get("progress") or {}).get("total") \
        or (run.get("plan") or {}).get("dataset", {}).get("iterations")
    done = last.get("iter", 0)
    st.markdown(f"**{t('train.status')}:** {t('run.' + status)}")
    st.progress(min(1.0, done / total) if total else 0.0,
                text=t("train.progress", it=done, total=total or "?", eta=last.get("eta") or "—"))
    started = jobs.seconds(run.get("started"))
    ended = jobs.seconds(run.get("ended")) if status not in ACTIVE else None
    losses = [m.get("loss") for m in metrics]
    smooth = smoothed(losses, max(5, len(metrics) // 10))
    cols = st.columns(4)
    cols[0].metric(t("train.elapsed"), duration(((ended or time.time()) - started) if started else None))
    cols[1].metric(t("train.speed"), speed(metrics))
    cols[2].metric(t("train.loss_smoothed"), f"{smooth[-1]:.4f}" if smooth and smooth[-1] is not None else "—")
    cols[3].metric(t("train.resumes"), run.get("resumes", 0))
    if run.get("resumed_from"):
        st.caption(t("train.resumed_from", checkpoint=Path(str(run["resumed_from"])).name,
                     path=run["resumed_from"], n=run.get("resumes", 1)))
    if run.get("error"):
        st.error(run["error"], icon=":material/error:")
    validation = view.get("validation") or []
    if metrics:
        iters = [m["iter"] for m in metrics]
        cols = st.columns(2)
        with cols[0]:
            st.markdown(f"**{t('train.loss')}**")
            st.line_chart(loss_series(metrics, smooth, validation), x="iter", y=t("train.loss"), color=t("train.curve"),
                          x_label=t("chart.iteration"))
        with cols[1]:
            st.markdown(f"**{t('train.lr')}**")
            st.line_chart({"iter": iters, "lr": [m.get("lr") for m in metrics]}, x="iter", y="lr",
                          x_label=t("chart.iteration"), y_label=t("train.lr"))
        if any("memory" in m for m in metrics):
            st.markdown(f"**{t('train.memory')}** — {t('train.memory_now', mb=last.get('memory', '?'))}")
            st.line_chart({"iter": iters, "MB": [m.get("memory") for m in metrics]}, x="iter", y="MB", height=180,
                          x_label=t("chart.iteration"))
    accuracy = [v for v in validation if isinstance(v.get("val_acc"), (int, float))]
    if accuracy:
        st.markdown(f"**{t('train.val_acc')}**")
        st.line_chart({"iter": [v["iter"] for v in accuracy], t("train.val_acc"): [v["val_acc"] for v in accuracy]},
                      x="iter", y=t("train.val_acc"), height=180, x_label=t("chart.iteration"))
    if view.get("best"):
        best = view["best"]
        st.caption(t("train.best_at", checkpoint=Path(best["path"]).name, metric=best.get("metric", ""),
                     value=f"{best.get('value', 0):.4f}"))
    if view.get("tensorboard"):
        st.caption(t("train.tensorboard", path=view["tensorboard"]))
        st.code(f"tensorboard --logdir {view['tensorboard']}", language="bash")
    if view["samples"]:
        st.markdown(f"**{t('train.samples_out')}**")
        for sample in view["samples"][-3:]:
            st.caption(t("train.sample_at", it=sample.get("iter", "?")))
            st.code(sample.get("text", ""), language=None)
    if view["checkpoints"]:
        st.markdown(f"**{t('train.checkpoints')}**")
        st.dataframe([{t("train.step"): c["step"], t("train.path"): c["path"], t("train.complete"): c["complete"],
                       t("train.best"): bool(c.get("best"))} for c in view["checkpoints"]], hide_index=True)
    with st.expander(t("train.log"), expanded=status in ACTIVE or status == "failed"):
        st.code("\n".join(view["log_tail"]) or t("train.log_empty"), language=None)


def _from_run(run_id: str) -> None:
    try:
        run = runs.load_run(run_id)
    except VlhubError as exc:
        st.session_state[FLASH] = ("error", exc.localized(lang()))
        return
    load_settings({"trainer": run.data.get("trainer"), "model": run.data.get("model"), "data": run.data.get("data"),
                   "options": run.data.get("options") or {}}, t("train.loaded_run", run=run_id))


def run_section(env_ok: bool) -> None:
    """Pick a training run (dry runs only when asked for): stop / resume / new run from its settings, its live view."""
    everything = runs.list_runs("train")
    show_dry = checkbox(t("train.show_dry"), "train.show_dry") if any(r.status == "planned" for r in everything) \
        else False
    wanted = st.query_params.get("run") or st.session_state.get(SELECTED)
    train_runs = [r for r in everything if show_dry or r.status != "planned" or r.id == wanted]
    if not train_runs:
        st.info(t("train.no_runs"))
        return
    ids = [r.id for r in train_runs]
    shown = {r.id: f"{r.id} ({t('run.' + r.status) if r.status != 'planned' else t('train.dry')})" for r in train_runs}
    run_id = st.selectbox(t("train.run"), ids, index=ids.index(wanted) if wanted in ids else 0, format_func=shown.get)
    st.query_params["run"] = run_id
    st.session_state[SELECTED] = run_id
    run = refresh(runs.load_run(run_id))
    active = run.status in ACTIVE
    cols = st.columns(3)
    if active and action_button(t("train.stop"), STOP, {"run_id": run_id}, key="train.stop", where=cols[0]):
        if start_job(STOP, {"run_id": run_id}, t("train.stopping", run=run_id)):
            st.rerun()
    if run.status in ("stopped", "failed", "lost") and \
            action_button(t("train.resume"), RESUME, {"run_id": run_id}, key="train.resume", where=cols[1],
                          disabled=not env_ok):
        if start_job(RESUME, {"run_id": run_id}, t("train.resuming", run=run_id)):
            st.rerun()
    cols[2].button(t("train.from_run"), key="train.from_run", on_click=_from_run, args=(run_id,),
                   help=t("train.from_run_help"))
    for kind in (STOP, RESUME):
        job_panel(kind, history=False, run_id=run_id)
    st.fragment(run_every=2.0 if active else None)(live)(run_id, active)


st.title(t("train.title"))
trainer_env = stage.env_of(train.trainers()[chosen_trainer()])
env_ok = env_ready(trainer_env) if trainer_env else True
gpu = next((e["gpu"] for e in env_report() if e["name"] == trainer_env), None) or stage.gpu_summary()
st.caption(t("train.gpu", gpu=gpu) if gpu else t("train.no_gpu"))
planned = jobs.latest(PLAN)
keep_open = st.session_state.get(OPEN) or not [r for r in runs.list_runs("train") if r.status != "planned"] \
    or (planned is not None and planned.status in ("failed", "running"))
with st.expander(t("train.new"), expanded=bool(keep_open), icon=":material/add_circle:"):
    new_run_form(env_ok)
st.session_state.pop(OPEN, None)
current = current_job(PLAN)
if current is not None and current.status == "done":
    planned_by = current.args.get("trainer") if current.args.get("trainer") in train.trainers() else chosen_trainer()
    plan_report(current.result, labels(trainer_options(planned_by)))
    if current.result["status"] != "planned" and not st.session_state.get(f"train.seen.{current.id}"):
        st.session_state[f"train.seen.{current.id}"] = True  # show a run just started
        st.query_params["run"] = current.result["run_id"]
        st.session_state[SELECTED] = current.result["run_id"]
st.subheader(t("train.runs"))
run_section(env_ok)
