"""Built-in publishers: Hugging Face, ModelScope, OpenXLab and any git + LFS remote.

``--to hf:ORG/NAME``, ``--to modelscope:ORG/NAME``, ``--to openxlab:OWNER/NAME``,
``--to git:URL``. Every ``--via git`` path shares one git + LFS engine (:mod:`.gitlfs`).
Importing this package is light: SDKs and GitPython load when a publish starts.
"""
from __future__ import annotations

from typing import Callable

from vlhub.core import hookimpl

from .targets import GitPublisher, HfPublisher, ModelScopePublisher, OpenXLabPublisher


@hookimpl
def register_publishers(register: Callable[[object], None]) -> None:
    for publisher in (HfPublisher(), ModelScopePublisher(), OpenXLabPublisher(), GitPublisher()):
        register(publisher)
