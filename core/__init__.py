"""vlhub's core API: hooks, plugin manager, interfaces, errors, runs and stage environments.

Third-party plugins need only ``from vlhub.core import hookimpl`` and the interfaces
in :mod:`vlhub.core.types`. Nothing here imports torch, xtuner or lmdeploy.
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .hookspecs import hookimpl

try:
    __version__ = version("vlhub")
except PackageNotFoundError:  # running from a checkout that is not installed
    __version__ = "0+unknown"

__all__ = ["hookimpl", "__version__"]
