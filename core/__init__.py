"""vlhub's core API: hooks, plugin manager, interfaces, errors, runs and stage environments.

Third-party plugins need only ``from vlhub.core import hookimpl`` and the interfaces
in :mod:`vlhub.core.types`. Nothing here imports torch, xtuner or lmdeploy.
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .hookspecs import hookimpl

#: The version of the plugin contract (the hooks of :mod:`vlhub.core.hookspecs` and the interfaces of
#: :mod:`vlhub.core.types`), ``MAJOR.MINOR``. MINOR grows when something is added that existing plugins
#: may ignore; MAJOR when a hook or an interface method changes in a way that breaks them. A plugin
#: module declares what it was written for with a version specifier, e.g. ``vlhub_requires = ">=1.0,<2"``,
#: and is refused (a recorded failure, see ``vlhub plugins``) when this version does not match it.
PLUGIN_API_VERSION = "1.0"

try:
    __version__ = version("vlhub")
except PackageNotFoundError:  # running from a checkout that is not installed
    __version__ = "0+unknown"

__all__ = ["PLUGIN_API_VERSION", "hookimpl", "__version__"]
