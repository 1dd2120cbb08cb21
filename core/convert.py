"""Conversion and chat templates: the functions ``vlhub convert`` / ``vlhub templates`` and the Convert page call.

A run id converts the run's best checkpoint when its validation marked one (``best_checkpoint.json``,
:mod:`vlhub.core.train_metrics`), else its last; ``checkpoint`` (``--checkpoint last`` or an iteration)
overrides, and the provenance records which one was taken and why.

Converters (:class:`vlhub.core.types.Converter`) and chat templates
(:class:`vlhub.core.types.ChatTemplate`) are found only through the plugin manager, built-in or
third-party alike. Without ``--converter``, the first registered converter whose ``accepts(source)``
is true converts; a converter may raise :class:`BadInput` from ``accepts`` when the source is no
checkpoint at all, and that message is shown when none accepts it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from . import plugins, provenance, train, train_metrics
from .errors import BadInput
from .runs import load_run
from .types import ChatTemplate, Converted, Converter, ProgressCallback

#: The fields of a chat template as JSON-ready data, when the template has no ``public()`` of its own.
TEMPLATE_FIELDS = ("name", "description", "xtuner_template", "lmdeploy_name", "system", "jinja")


def converters() -> dict[str, Converter]:
    """The registered converters by name (built-ins first)."""
    return plugins.registry("converters")


def pick_converter(source: str | Path, name: str | None = None) -> Converter:
    """The converter named ``name``, or the first registered one that accepts ``source``.

    Args:
        source: a run id or a checkpoint path.
        name: a converter's name (``--converter``).
    Returns:
        The converter.
    Raises:
        BadInput: no converter of that name; or none accepts ``source`` (the first converter's own
            explanation when one gave it, e.g. "is not a checkpoint").
    """
    if name:
        return plugins.get("converters", name)
    registry = converters()
    refusals: list[BadInput] = []
    for converter in registry.values():
        try:
            if converter.accepts(Path(source)):
                return converter
        except BadInput as exc:
            refusals.append(exc)
    if refusals:
        raise refusals[0]
    raise BadInput(f"no converter accepts {source} (converters: {', '.join(registry) or 'none'})",
                   "pass --converter NAME (and --config with the training config), or install the plugin for "
                   "this model type")


def run_checkpoint(source: str | Path, choice: str | int | None = None,
                   flag: str = "--checkpoint") -> tuple[str | Path, dict[str, Any]]:
    """What a conversion of ``source`` starts from: for a training run id, the checkpoint ``choice`` names
    (:func:`vlhub.core.train_metrics.choose_checkpoint`: by default the best one the run marked, else the last);
    anything else is returned as it is.

    Args:
        source: a run id or a checkpoint path.
        choice: ``best``, ``last``, an iteration (``40``, ``iter_40``), or ``None`` (the default).
        flag: the flag named in messages.
    Returns:
        ``(source, why)``: the checkpoint path (or ``source`` itself: a path, or a run whose last checkpoint the
        converter finds), and ``why`` (``{"chosen": "best" | "last" | "iter", ...}``; ``{}`` for a path).
    Raises:
        BadInput: ``choice`` is not a checkpoint choice; it names no complete checkpoint of the run; it is given
            with a checkpoint path.
    """
    wanted = train_metrics.parse_choice(choice, flag) if choice not in (None, "") else None
    run = None
    path = Path(source).expanduser()
    if not path.exists() and "/" not in str(source):
        try:
            run = load_run(str(source))
        except BadInput:
            run = None
    if run is None or run.kind != train.KIND:
        if wanted is not None:
            raise BadInput("convert.checkpoint_needs_run", flag=flag, value=str(choice), source=str(source))
        return source, {}
    complete = [(c.step, Path(c.path)) for c in train.checkpoints(run.id) if c.complete]
    chosen, why = train_metrics.choose_checkpoint(run.id, run.dir, complete, wanted, flag)
    return (chosen if chosen is not None else source), why


def convert(source: str | Path, out: str | Path, *, config: str | Path | None = None, converter: str | None = None,
            template: str | None = None, force: bool = False, verify: bool = True, image: str | Path | None = None,
            progress: ProgressCallback | None = None, checkpoint: str | int | None = None) -> Converted:
    """Convert a training run's checkpoint, or a checkpoint, into the model folder ``out``.

    Args:
        source: a run id (by default its best checkpoint by the run's validation metric when it marked one,
            else its last complete one: :func:`run_checkpoint`) or a checkpoint path.
        out: the folder to create (built beside it and renamed into place once complete).
        config: the training config (default: the converter finds it: the run's, or the one beside).
        converter: a converter's name (default: :func:`pick_converter`).
        template: a chat template's name (default: the one matching the base model).
        force: replace an existing ``out`` that vlhub wrote, once the new folder is complete.
        verify: load the result, chat once and check the merged weights.
        image: the image of the verification chat turn.
        progress: receives the converter's progress events.
        checkpoint: which checkpoint of a run (``--checkpoint``): ``best``, ``last`` or an iteration; the
            provenance's ``checkpoint`` records the choice (``chosen``, and for the best ``metric``, ``value``,
            ``iter``).
    Returns:
        The converted folder, its source, its provenance file and the verification report.
    Raises:
        BadInput: a bad source, checkpoint choice, output folder, config or template. VlhubError: the
            conversion or the verification failed (nothing is left at ``out``). MissingDependency: no train
            environment.
    """
    source, why = run_checkpoint(source, checkpoint)
    chosen = pick_converter(source, converter)
    options: dict[str, Any] = {"config": str(config) if config else None, "template": template, "force": force,
                               "verify": verify, "image": str(image) if image else None}
    result = chosen.convert(Path(source), Path(out), options, progress)
    if why:
        recorded = provenance.read(result.out).checkpoint
        provenance.update(result.out, {"checkpoint": {**recorded, **why}})
    return result


# ------------------------------------------------------------------ chat templates
def templates() -> dict[str, ChatTemplate]:
    """Every registered chat template by name (built-ins first)."""
    return dict(plugins.registry("chat_templates"))


def template(name: str) -> ChatTemplate:
    """The chat template ``name``.

    Raises:
        BadInput: no such template (the message lists the registered ones).
    """
    return plugins.get("chat_templates", name)


def template_for_model(config: Mapping[str, Any]) -> ChatTemplate:
    """The first registered template whose ``matches`` accepts ``config`` (a model's parsed ``config.json``).

    Raises:
        BadInput: none matches (the model's template name and architectures are named).
    """
    for candidate in templates().values():
        if candidate.matches(config):
            return candidate
    llm = config.get("llm_config") if isinstance(config.get("llm_config"), Mapping) else config
    seen = f"template={config.get('template')!r}, architectures={llm.get('architectures')}"
    raise BadInput(f"no chat template matches this model ({seen})",
                   "`vlhub templates` lists the supported models; pass --template NAME to choose one")


def template_for_folder(model_dir: Path) -> ChatTemplate:
    """:func:`template_for_model` for a model folder's ``config.json``.

    Raises:
        BadInput: no readable ``config.json``, or no template matches it.
    """
    path = Path(model_dir) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadInput(f"{path}: cannot read the model's config.json ({exc})",
                       "point at a model folder with a config.json") from exc
    return template_for_model(config)


def template_public(chat_template: ChatTemplate) -> dict[str, Any]:
    """A chat template as JSON-ready data: its own ``public()`` when it has one, else the protocol's fields
    (plus empty ``matches`` and ``models``)."""
    public = getattr(chat_template, "public", None)
    if callable(public):
        return public()
    data = {key: getattr(chat_template, key) for key in TEMPLATE_FIELDS}
    return {**data, "matches": "", "models": [], "stop_words": list(chat_template.stop_words)}
