"""Built-in converters, and the one function the CLI and the Convert page call: :func:`convert`.

- ``internvl-official``: an xtuner InternVL run's checkpoint -> official InternVL folder.
- ``xtuner-llm``: an xtuner LLM LoRA checkpoint -> merged Hugging Face folder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from vlhub.core import hookimpl, plugins
from vlhub.core.errors import BadInput
from vlhub.core.types import Converted, Converter, ProgressCallback

from .provenance import PROVENANCE
from .source import Source, resolve
from .xtuner import INTERNVL_OFFICIAL, XTUNER_LLM, XtunerConverter

__all__ = ["PROVENANCE", "Source", "convert", "pick_converter", "resolve"]


@hookimpl
def register_converters(register: Callable[[object], None]) -> None:
    register(INTERNVL_OFFICIAL)
    register(XTUNER_LLM)


def pick_converter(source: Source, name: str | None = None) -> Converter:
    """The named converter, or the first registered one that handles ``source``'s config."""
    if name:
        return plugins.get("converters", name)
    registry = plugins.registry("converters")
    for converter in registry.values():
        if (converter.handles_config(source.config) if isinstance(converter, XtunerConverter)
                else converter.accepts(source.checkpoint)):
            return converter
    raise BadInput(f"no converter handles {source.config} (known: {', '.join(registry)})",
                   "pass --converter NAME, or install the plugin for this model type")


def convert(ref: str | Path, out: str | Path, *, config: str | Path | None = None, converter: str | None = None,
            template: str | None = None, force: bool = False, verify: bool = True, image: str | Path | None = None,
            progress: ProgressCallback | None = None) -> Converted:
    """Convert a run's last checkpoint (``ref`` = run id) or a checkpoint path into the folder ``out``."""
    source = resolve(ref, config)
    chosen = pick_converter(source, converter)
    options: dict[str, Any] = {"config": str(source.config), "template": template, "force": force,
                               "verify": verify, "image": str(image) if image else None}
    return chosen.convert(source.checkpoint, Path(out), options, progress)
