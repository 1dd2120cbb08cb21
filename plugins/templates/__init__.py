"""Built-in chat templates, and finding the one a model needs.

``template_for_model(config)`` is what config generators and converters call: it returns the
registered :class:`~vlhub.core.types.ChatTemplate` (built-in or from a plugin) matching a model's
``config.json``. Its ``xtuner_template`` names the ``PROMPT_TEMPLATE`` entry to train with, its
``jinja`` goes into ``tokenizer_config.json``, its ``stop_words`` into ``generation_config.json``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping

from vlhub.core import hookimpl, plugins
from vlhub.core.errors import BadInput
from vlhub.core.types import ChatTemplate

from .catalog import BUILTIN, PromptTemplate
from .render import render

__all__ = ["PromptTemplate", "all_templates", "get_template", "template_for_model", "template_for_folder",
           "describe", "render"]


@hookimpl
def register_chat_templates(register: Callable[[object], None]) -> None:
    for template in BUILTIN:
        register(template)


def all_templates() -> dict[str, ChatTemplate]:
    """Every registered chat template by name (built-ins first)."""
    return dict(plugins.registry("chat_templates"))


def get_template(name: str) -> ChatTemplate:
    """One template by name, or a one-line error listing the names."""
    return plugins.get("chat_templates", name)


def template_for_model(config: Mapping[str, Any]) -> ChatTemplate:
    """The template whose rules match ``config`` (a model's parsed ``config.json``)."""
    for template in all_templates().values():
        if template.matches(config):
            return template
    llm = config.get("llm_config") if isinstance(config.get("llm_config"), Mapping) else config
    seen = f"template={config.get('template')!r}, architectures={llm.get('architectures')}"
    raise BadInput(f"no chat template matches this model ({seen})",
                   "`vlhub templates` lists the supported models; pass --template NAME to choose one")


def template_for_folder(model_dir: Path) -> ChatTemplate:
    """:func:`template_for_model` for a model folder's ``config.json``."""
    path = Path(model_dir) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadInput(f"{path}: cannot read the model's config.json ({exc})",
                       "point at a model folder with a config.json") from exc
    return template_for_model(config)


def describe(template: ChatTemplate) -> dict[str, Any]:
    """A template as JSON-ready data (plugin templates without ``public()`` get the protocol fields)."""
    if isinstance(template, PromptTemplate):
        return template.public()
    fields = ("name", "description", "xtuner_template", "lmdeploy_name", "system", "jinja")
    data = {key: getattr(template, key) for key in fields}
    return {**data, "matches": "", "models": [], "stop_words": list(template.stop_words)}
