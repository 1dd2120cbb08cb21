"""Built-in trainers: ``xtuner`` (InternVL2 fine-tuning with xtuner train + DeepSpeed).

The functions the CLI and the Train page call live in :mod:`.training`.
"""
from __future__ import annotations

from typing import Callable

from vlhub.core import hookimpl

from .xtuner import XtunerTrainer


@hookimpl
def register_trainers(register: Callable[[object], None]) -> None:
    register(XtunerTrainer())
