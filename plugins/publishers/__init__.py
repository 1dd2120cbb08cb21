"""Built-in publishers, one module each: Hugging Face, ModelScope, OpenXLab and any git + LFS remote.

``--to hf:ORG/NAME`` (:mod:`.hf`), ``--to modelscope:ORG/NAME`` (:mod:`.modelscope`),
``--to openxlab:OWNER/NAME`` (:mod:`.openxlab`), ``--to git:URL`` (:mod:`.git`); the model
card they generate is :mod:`.card`, their shared options :mod:`.common`. They are built
from core API only (:mod:`vlhub.core.publishing`: the folder scan, hashing with the cache,
the one planning rule, and the git + LFS engine every ``--via git`` path shares), as a
third-party publisher would be. Importing this package is light: the SDKs and GitPython
load when a publish starts.
"""
from __future__ import annotations

from typing import Callable

from vlhub.core import hookimpl

from .git import GitPublisher
from .hf import HfPublisher
from .modelscope import ModelScopePublisher
from .openxlab import OpenXLabPublisher


@hookimpl
def register_publishers(register: Callable[[object], None]) -> None:
    for publisher in (HfPublisher(), ModelScopePublisher(), OpenXLabPublisher(), GitPublisher()):
        register(publisher)
