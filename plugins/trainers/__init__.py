"""Built-in trainers: ``xtuner`` (InternVL2 fine-tuning with xtuner train + DeepSpeed).

Registered through the ``register_trainers`` hook like any plugin's; the CLI and the Train page
reach it through :mod:`vlhub.core.train`.
"""
from __future__ import annotations

from typing import Callable

from vlhub.core import hookimpl

from .xtuner import XtunerTrainer


@hookimpl
def register_trainers(register: Callable[[object], None]) -> None:
    """Register the ``xtuner`` trainer."""
    register(XtunerTrainer())
