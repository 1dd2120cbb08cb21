"""Built-in chat templates, registered through the ``register_chat_templates`` hook like any plugin's.

Finding the one a model needs (``template_for_model``, ``template_for_folder``) is core's job
(:mod:`vlhub.core.convert`), over every registered template, built-in or not. A template's
``xtuner_template`` names the ``PROMPT_TEMPLATE`` entry to train with, its ``jinja`` goes into
``tokenizer_config.json``, its ``stop_words`` into ``generation_config.json``;
:func:`.render.render` renders it as the tokenizer does.
"""
from __future__ import annotations

from typing import Callable

from vlhub.core import hookimpl

from .catalog import BUILTIN


@hookimpl
def register_chat_templates(register: Callable[[object], None]) -> None:
    """Register every template of :data:`.catalog.BUILTIN`."""
    for template in BUILTIN:
        register(template)
