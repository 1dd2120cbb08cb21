"""``vlhub chat`` and ``vlhub eval``: thin wrappers over :mod:`vlhub.core.chat` and :mod:`vlhub.core.eval`.

Besides the fixed backend flags, every option a chat backend declares is a flag ``--NAME``
(:class:`~.plugins.PluginOptionsCommand`), and ``--opt KEY=VALUE`` reaches any of them; both are
checked against the chosen backend's options.
"""
from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from typing import Any, Iterable

import click

from .. import chat as chatapi
from .. import eval as evalapi
from ..errors import BadInput
from ..fsutil import atomic_write_text, check_output_file
from ..output import emit_json, say, table, tqdm_progress
from ..runs import load_run
from ..types import GenerationSettings
from .plugins import PluginOptionsCommand

HELP_LOOP = "Type a message and press Enter. /image PATH attaches an image to the next turn; /clear, /exit."


def _backend_options(base_url: str | None, engine: str | None, tp: int | None,
                     session_len: int | None, device: str | None) -> dict[str, Any]:
    given = {"base_url": base_url, "engine": engine, "tp": tp, "session_len": session_len, "device": device}
    return {k: v for k, v in given.items() if v is not None}


def _backend_name(model: str | None, backend: str | None, options: dict[str, Any]) -> str:
    return backend or chatapi.auto_backend(model, options.get("base_url"))


def _plugin_options(ctx: click.Context, model: str | None, backend: str | None, options: dict[str, Any],
                    values: dict[str, Any], pairs: tuple[str, ...]) -> dict[str, Any]:
    """The fixed flags' options plus the backend's own (its flags, ``--opt KEY=VALUE``), checked and typed."""
    given = [v for v in values.values() if v is not None and v != ()]
    if not given and not pairs:
        return options
    return {**options, **ctx.command.given(values, [_backend_name(model, backend, options)], pairs)}


def _open(model: str | None, model_name: str | None, backend: str | None, options: dict[str, Any],
          settings: GenerationSettings | None = None) -> chatapi.Conversation:
    name = _backend_name(model, backend, options)
    target = (model_name or model or "") if name == "openai" else model
    if not target and name != "openai":
        raise BadInput("no MODEL_DIR given", f"vlhub chat MODEL_DIR --backend {name}")
    return chatapi.Conversation(target or "", name, options, settings)


def _stream(chunks: Iterable[str]) -> None:
    for chunk in chunks:
        click.echo(chunk, nl=False)
        sys.stdout.flush()
    click.echo()


def _loop(convo: chatapi.Conversation, images: list[str]) -> None:
    """Turns from stdin until /exit or end of input."""
    if sys.stdin.isatty():
        say(HELP_LOOP)
    pending = [str(p) for p in convo.prepare(images)]  # encoded or tiled while the first line is typed
    for raw in sys.stdin:
        line = raw.strip()
        if not line:
            continue
        if line.startswith("/image "):
            pending += [str(p) for p in convo.prepare([line[len("/image "):].strip()])]
        elif line == "/clear":
            convo.clear()
            pending = []
        elif line in ("/exit", "/quit"):
            return
        else:
            _stream(convo.ask(line, pending))
            pending = []


_model_flags = [
    click.option("--backend", help="lmdeploy, transformers, openai or a plugin's backend (`vlhub plugins`; default: "
                                   "lmdeploy on a GPU, else transformers; openai without MODEL_DIR)."),
    click.option("--base-url", help="OpenAI-compatible endpoint (default $OPENAI_BASE_URL); key from $OPENAI_API_KEY."),
    click.option("--engine", type=click.Choice(["turbomind", "pytorch"]), help="LMDeploy engine."),
    click.option("--tp", type=int, help="LMDeploy tensor parallel (GPUs per model)."),
    click.option("--session-len", type=int, help="LMDeploy session length in tokens."),
    click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="transformers device."),
    click.option("--opt", "opts", multiple=True, metavar="KEY=VALUE",
                 help="An option of the chosen backend (repeatable); each is also a flag --NAME of its own."),
]


def model_flags(func: Any) -> Any:
    """The backend-selection flags shared by chat and eval."""
    for flag in reversed(_model_flags):
        func = flag(func)
    return func


@click.command(cls=PluginOptionsCommand, family="chat_backends")
@click.argument("model", required=False)
@click.option("--image", "images", multiple=True, help="Image for the first turn (repeatable).")
@click.option("--message", "-m", help="Ask one question, print the answer and exit.")
@model_flags
@click.option("--model", "model_name", help="Model name at the endpoint (openai; default: its first model).")
@click.option("--temperature", type=float, default=0.7, show_default=True, help="0 = greedy.")
@click.option("--top-p", type=float, default=0.8, show_default=True)
@click.option("--max-new-tokens", type=int, default=512, show_default=True)
@click.option("--export", "export_to", type=click.Path(path_type=Path),
              help="Write the conversation at the end (.json or .md).")
@click.option("--json", "as_json", is_flag=True, help="Print the conversation as JSON instead of the answer.")
@click.pass_context
def chat(ctx: click.Context, model: str | None, images: tuple[str, ...], message: str | None, backend: str | None,
         base_url: str | None, engine: str | None, tp: int | None, session_len: int | None,
         device: str | None, opts: tuple[str, ...], model_name: str | None, temperature: float, top_p: float,
         max_new_tokens: int, export_to: Path | None, as_json: bool, **plugin_options: Any) -> None:
    """Chat with MODEL (a model folder, the endpoint's model with --backend openai, or what a plugin
    backend takes).

    With --message: one question, one answer. Otherwise turns are read from stdin.
    """
    checked = [str(chatapi.check_image(p)) for p in images]
    if export_to:
        export_to = check_output_file(export_to, "--export")
    settings = GenerationSettings(temperature, top_p, max_new_tokens)
    options = _plugin_options(ctx, model, backend, _backend_options(base_url, engine, tp, session_len, device),
                              plugin_options, opts)
    with _open(model, model_name, backend, options, settings) as convo:
        if convo.engine:
            say(f"engine: {convo.engine} ({convo.backend} backend)")
        if message is not None:
            if as_json:
                convo.answer(message, checked)
            else:
                _stream(convo.ask(message, checked))
        else:
            _loop(convo, checked)
        if as_json:
            emit_json(convo.public())
        if export_to:
            atomic_write_text(export_to, chatapi.export(convo, "md" if export_to.suffix == ".md" else "json"))


@click.command(name="eval", cls=PluginOptionsCommand, family="chat_backends")
@click.argument("models", nargs=-1, required=True)
@click.option("--data", required=True, help="Prepared dataset folder (its val_mc.json, else val.json) or one of "
                                            "its files.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N items.")
@model_flags
@click.option("--json", "as_json", is_flag=True, help="Output the eval run's data as JSON (eval.json: every "
                                                      "item's reply).")
@click.pass_context
def eval_cmd(ctx: click.Context, models: tuple[str, ...], data: str, limit: int | None, backend: str | None,
             base_url: str | None, engine: str | None, tp: int | None, session_len: int | None,
             device: str | None, opts: tuple[str, ...], as_json: bool, **plugin_options: Any) -> None:
    """Evaluate one or two MODELS (base, fine-tuned) on the validation split: recorded as an `eval` run.

    Multiple-choice data (val_mc.json): accuracy with its 95 % interval, per category (FoodieQA:
    food_type, main_region), and for two models the items the second fixed and broke. Open-ended data
    (val.json, e.g. CLoT): exact match and chrF.
    """
    if len(models) > 2:
        raise BadInput(f"{len(models)} models given", "give one model, or two to compare (base, fine-tuned)")
    options = _plugin_options(ctx, models[0], backend, _backend_options(base_url, engine, tp, session_len, device),
                              plugin_options, opts)
    progress, close = tqdm_progress(not as_json)
    try:  # one model loaded at a time
        report = evalapi.evaluate_models([partial(_open, model, None, backend, options) for model in models],
                                         data, limit, progress)
    finally:
        close()
    if as_json:
        emit_json(report)
        return
    _print_eval(report)
    for note in report["notes"]:
        say(f"note: {note}")
    say(f"recorded as run {report['run_id']} ({report['task']}, {report['n']} items; every reply in "
        f"{evalapi.eval_file(report['run_id'])})")
    for speed in load_run(report["run_id"]).data.get("throughput") or []:
        say(f"throughput: {Path(speed['model']).name or speed['model']} {speed['items_per_s'] or 0:.2f} items/s "
            f"({speed['concurrency']} at once, {speed['seconds']:.1f} s)")


def _pct(value: float) -> str:
    return f"{value:.1%}"


def _ci(bounds: list[float]) -> str:
    return f"[{bounds[0]:.1%}, {bounds[1]:.1%}]"


def _labels(results: list[dict[str, Any]]) -> list[str]:
    """Short model names for column headers (a folder's name), numbered when two are the same."""
    names = [Path(r["model"]).name or r["model"] or r["backend"] for r in results]
    return [f"{name} ({i + 1})" if names.count(name) > 1 else name for i, name in enumerate(names)]


def _indices(values: list[int], shown: int = 20) -> str:
    text = ", ".join(map(str, values[:shown]))
    return text + (f", ... ({len(values) - shown} more)" if len(values) > shown else "")


def _print_eval(report: dict[str, Any]) -> None:
    """The overall table, the per-category table and the fixed / broken items, on stdout."""
    results, labels = report["results"], _labels(report["results"])
    open_ended = report["task"] == evalapi.OPEN
    columns = ["model", "backend", "n", "exact" if open_ended else "correct",
               "exact match" if open_ended else "accuracy", "95% CI", *(["chrF"] if open_ended else [])]
    rows = [{"model": label, "backend": r["backend"], "n": r["n"], columns[3]: r["correct"],
             columns[4]: _pct(r["accuracy"]), "95% CI": _ci(r["ci95"]), "chrF": f"{r.get('chrf', 0.0):.1f}"}
            for label, r in zip(labels, results)]
    click.echo(table(rows, columns))
    category_rows = []
    for field in report["categories"]:
        values = list(dict.fromkeys(v for r in results for v in r["categories"].get(field, {})))
        for value in values:
            cells = [r["categories"].get(field, {}).get(value) for r in results]
            row = {"category": field, "value": value, "n": next(c["n"] for c in cells if c)}
            row |= {label: f"{_pct(c['accuracy'])} ({c['correct']}) {_ci(c['ci95'])}" if c else "-"
                    for label, c in zip(labels, cells)}
            category_rows.append(row)
    if category_rows:
        click.echo()
        click.echo(table(category_rows, ["category", "value", "n", *labels]))
    if "fixed" in report:
        click.echo()
        click.echo(f"fixed by {labels[1]} (wrong with {labels[0]}): {len(report['fixed'])}"
                   + (f" - items {_indices(report['fixed'])}" if report["fixed"] else ""))
        click.echo(f"broken by {labels[1]} (right with {labels[0]}): {len(report['broken'])}"
                   + (f" - items {_indices(report['broken'])}" if report["broken"] else ""))
