"""Built-in trainers: ``xtuner`` (InternVL2 fine-tuning with xtuner train + DeepSpeed) and ``swift``
(InternVL2/2.5/3/3.5 with ms-swift + DeepSpeed).

Registered through the ``register_trainers`` hook like any plugin's; the CLI and the Train page
reach it through :mod:`vlhub.core.train`.
"""
from __future__ import annotations

from typing import Callable

from vlhub.core import hookimpl

from .swift import SwiftTrainer
from .xtuner import XtunerTrainer


@hookimpl
def register_trainers(register: Callable[[object], None]) -> None:
    """Register the ``xtuner`` and ``swift`` trainers."""
    register(XtunerTrainer())
    register(SwiftTrainer())
