"""Built-in converters, registered through the ``register_converters`` hook like any plugin's.

- ``internvl-official``: an xtuner InternVL run's checkpoint -> official InternVL folder.
- ``xtuner-llm``: an xtuner LLM LoRA checkpoint -> merged Hugging Face folder.

The CLI and the Convert page reach them through :mod:`vlhub.core.convert`.
"""
from __future__ import annotations

from typing import Callable

from vlhub.core import hookimpl

from .xtuner import INTERNVL_OFFICIAL, XTUNER_LLM


@hookimpl
def register_converters(register: Callable[[object], None]) -> None:
    """Register ``internvl-official`` and ``xtuner-llm``."""
    register(INTERNVL_OFFICIAL)
    register(XTUNER_LLM)
