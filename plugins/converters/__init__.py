"""Built-in converters, registered through the ``register_converters`` hook like any plugin's.

- ``internvl-official``: an xtuner InternVL run's checkpoint -> official InternVL folder.
- ``xtuner-llm``: an xtuner LLM LoRA checkpoint -> merged Hugging Face folder.
- ``swift-merge``: a ``swift`` run's checkpoint -> model folder (``swift export --merge_lora``).

The CLI and the Convert page reach them through :mod:`vlhub.core.convert`.
"""
from __future__ import annotations

from typing import Callable

from vlhub.core import hookimpl

from .swift import SWIFT_MERGE
from .xtuner import INTERNVL_OFFICIAL, XTUNER_LLM


@hookimpl
def register_converters(register: Callable[[object], None]) -> None:
    """Register ``internvl-official``, ``xtuner-llm`` and ``swift-merge``."""
    register(INTERNVL_OFFICIAL)
    register(XTUNER_LLM)
    register(SWIFT_MERGE)
