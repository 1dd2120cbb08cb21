"""``vlhub chat`` and ``vlhub eval``: thin wrappers over :mod:`vlhub.core.chat` and :mod:`vlhub.core.eval`."""
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
from ..types import GenerationSettings

HELP_LOOP = "Type a message and press Enter. /image PATH attaches an image to the next turn; /clear, /exit."


def _backend_options(base_url: str | None, engine: str | None, tp: int | None,
                     session_len: int | None, device: str | None) -> dict[str, Any]:
    given = {"base_url": base_url, "engine": engine, "tp": tp, "session_len": session_len, "device": device}
    return {k: v for k, v in given.items() if v is not None}


def _open(model: str | None, model_name: str | None, backend: str | None, options: dict[str, Any],
          settings: GenerationSettings | None = None) -> chatapi.Conversation:
    name = backend or chatapi.auto_backend(model, options.get("base_url"))
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
    pending = list(images)
    for raw in sys.stdin:
        line = raw.strip()
        if not line:
            continue
        if line.startswith("/image "):
            pending.append(str(chatapi.check_image(line[len("/image "):].strip())))
        elif line == "/clear":
            convo.clear()
            pending = []
        elif line in ("/exit", "/quit"):
            return
        else:
            _stream(convo.ask(line, pending))
            pending = []


_model_flags = [
    click.option("--backend", help="lmdeploy, transformers or openai (default: lmdeploy on a GPU, else transformers; "
                                   "openai without MODEL_DIR)."),
    click.option("--base-url", help="OpenAI-compatible endpoint (default $OPENAI_BASE_URL); key from $OPENAI_API_KEY."),
    click.option("--engine", type=click.Choice(["turbomind", "pytorch"]), help="LMDeploy engine."),
    click.option("--tp", type=int, help="LMDeploy tensor parallel (GPUs per model)."),
    click.option("--session-len", type=int, help="LMDeploy session length in tokens."),
    click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="transformers device."),
]


def model_flags(func: Any) -> Any:
    """The backend-selection flags shared by chat and eval."""
    for flag in reversed(_model_flags):
        func = flag(func)
    return func


@click.command()
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
def chat(model: str | None, images: tuple[str, ...], message: str | None, backend: str | None,
         base_url: str | None, engine: str | None, tp: int | None, session_len: int | None,
         device: str | None, model_name: str | None, temperature: float, top_p: float, max_new_tokens: int,
         export_to: Path | None, as_json: bool) -> None:
    """Chat with MODEL (a model folder, or the endpoint's model with --backend openai).

    With --message: one question, one answer. Otherwise turns are read from stdin.
    """
    checked = [str(chatapi.check_image(p)) for p in images]
    if export_to:
        export_to = check_output_file(export_to, "--export")
    settings = GenerationSettings(temperature, top_p, max_new_tokens)
    options = _backend_options(base_url, engine, tp, session_len, device)
    with _open(model, model_name, backend, options, settings) as convo:
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


@click.command(name="eval")
@click.argument("models", nargs=-1, required=True)
@click.option("--data", required=True, help="Prepared dataset folder (val_mc.json) or the val_mc.json file.")
@click.option("--limit", type=int, help="Only the first N items.")
@model_flags
@click.option("--json", "as_json", is_flag=True, help="Output JSON (with every item's reply).")
def eval_cmd(models: tuple[str, ...], data: str, limit: int | None, backend: str | None, base_url: str | None,
             engine: str | None, tp: int | None, session_len: int | None,
             device: str | None, as_json: bool) -> None:
    """Multiple-choice accuracy of one or two MODELS (before/after) on the validation split (an `eval` run)."""
    if len(models) > 2:
        raise BadInput(f"{len(models)} models given", "give one model, or two to compare (base, fine-tuned)")
    options = _backend_options(base_url, engine, tp, session_len, device)
    progress, close = tqdm_progress(not as_json)
    try:  # one model loaded at a time
        report = evalapi.evaluate_models([partial(_open, model, None, backend, options) for model in models],
                                         data, limit, progress)
    finally:
        close()
    if as_json:
        emit_json(report)
        return
    rows = [{"model": r["model"], "backend": r["backend"], "correct": r["correct"], "total": r["total"],
             "accuracy": f"{r['accuracy']:.1%}"} for r in report["results"]]
    click.echo(table(rows, ["model", "backend", "correct", "total", "accuracy"]))
    say(f"recorded as run {report['run_id']}")
