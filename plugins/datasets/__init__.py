"""Built-in dataset plugins: FoodieQA, CLoT_cn_2000 and any LLaVA-style JSON.

Each turns a source folder into a prepared folder (layout in :mod:`.prepared`):
LLaVA-style ``train.json`` / ``val.json`` with image paths relative to an
``image_root``, plus ``val_mc.json``, ``report.json``, ``stats.json`` and the
``prepared.json`` manifest written last. Validation (:mod:`.validate`) is shared.
"""
from __future__ import annotations

from typing import Callable

from vlhub.core import hookimpl

from .foodieqa import FoodieQA
from .llava_json import Clot, LlavaJson


@hookimpl
def register_datasets(register: Callable[[object], None]) -> None:
    register(FoodieQA())
    register(Clot())
    register(LlavaJson())
