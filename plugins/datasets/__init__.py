"""Built-in dataset plugins: FoodieQA, CLoT_cn_2000 and any LLaVA-style JSON.

Each converts its source into records and writes a prepared folder through the
public API of :mod:`vlhub.core.prepared` (layout and ``prepared.json`` schema in
:mod:`vlhub.core.prepared.format`; validation, image checks, split and stats are
shared there), exactly as a third-party dataset plugin would.
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
