"""Built-in chat backends: lmdeploy (GPU), transformers (CPU or GPU) and openai (any endpoint)."""
from __future__ import annotations

from typing import Callable

from vlhub.core.hookspecs import hookimpl

from .lmdeploy_backend import LMDeployBackend
from .openai_backend import OpenAIBackend
from .transformers_backend import TransformersBackend


@hookimpl
def register_chat_backends(register: Callable[[object], None]) -> None:
    """The three built-in backends."""
    for backend in (LMDeployBackend(), TransformersBackend(), OpenAIBackend()):
        register(backend)
