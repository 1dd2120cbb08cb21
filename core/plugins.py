"""The plugin manager: built-ins and third-party plugins load the same way, from entry points.

Every plugin, built-in or not, is an entry point in the ``vlhub`` group. The
built-in ones belong to the ``vlhub`` distribution itself and always load;
``VLHUB_LOAD_PLUGINS=a,b`` restricts the others to those entry-point or
distribution names (an empty value loads built-ins only). A plugin that fails to
import, or raises inside a hook, is recorded in :data:`failures` and skipped.
"""
from __future__ import annotations

import os
import traceback
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from . import hookspecs
from .errors import BadInput
from .types import ChatBackend, ChatTemplate, Converter, Dataset, Publisher, Trainer

GROUP = "vlhub"

#: family name -> (hook name, interface, singular label)
FAMILIES: dict[str, tuple[str, type, str]] = {
    "datasets": ("register_datasets", Dataset, "dataset"),
    "trainers": ("register_trainers", Trainer, "trainer"),
    "converters": ("register_converters", Converter, "converter"),
    "chat_templates": ("register_chat_templates", ChatTemplate, "chat template"),
    "publishers": ("register_publishers", Publisher, "publisher"),
    "chat_backends": ("register_chat_backends", ChatBackend, "chat backend"),
}

@dataclass
class Failure:
    """A plugin that could not load, or whose hook raised."""

    plugin: str
    stage: str
    error: str
    detail: str = ""

@dataclass
class PluginInfo:
    """One loaded plugin and where it came from."""

    name: str
    distribution: str
    version: str
    builtin: bool
    registered: dict[str, list[str]] = field(default_factory=dict)

class PluginHost:
    """One pluggy manager plus what each plugin registered and what failed."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.failures: list[Failure] = []
        self.info: dict[str, PluginInfo] = {}
        self._registries: dict[str, dict[str, Any]] = {}
        self._loaded = False

    # ------------------------------------------------------------ loading
    def load(self) -> None:
        """Import every allowed entry point once."""
        if self._loaded:
            return
        self._loaded = True
        allowed = os.environ.get("VLHUB_LOAD_PLUGINS")
        names = {n.strip() for n in allowed.split(",") if n.strip()} if allowed is not None else None
        for ep in entry_points(group=GROUP):
            self._load_entry_point(ep, names)

    def _load_entry_point(self, ep: EntryPoint, names: set[str] | None) -> None:
        dist = ep.dist.name if ep.dist else "?"
        builtin = dist == GROUP
        if not builtin and names is not None and ep.name not in names and dist not in names:
            return
        if ep.name in self.info:
            return
        try:
            module = ep.load()
            self.pm.register(module, name=ep.name)
        except Exception as exc:  # a broken plugin must not break vlhub
            self.failures.append(Failure(ep.name, "import", f"{type(exc).__name__}: {exc}",
                                         traceback.format_exc(limit=5)))
            return
        version = ep.dist.version if ep.dist else ""
        self.info[ep.name] = PluginInfo(ep.name, dist, version, builtin)

    def register_module(self, module: object, name: str, *, builtin: bool = False) -> None:
        """Register a plugin object directly (tests, notebooks)."""
        self.load()
        self.pm.register(module, name=name)
        self.info[name] = PluginInfo(name, "", "", builtin)
        self._registries.clear()

    # ------------------------------------------------------------ registries
    def registry(self, family: str) -> dict[str, Any]:
        """Name -> object for one family, calling each plugin's hook once."""
        self.load()
        if family not in self._registries:
            self._registries[family] = self._collect(family)
        return self._registries[family]

    def _collect(self, family: str) -> dict[str, Any]:
        hook_name, interface, label = FAMILIES[family]
        found: dict[str, Any] = {}
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            plugin = impl.plugin_name
            added: list[str] = []

            def register(obj: object, _plugin: str = plugin, _added: list[str] = added) -> None:
                name = getattr(obj, "name", None)
                if not isinstance(obj, interface) or not name:
                    raise TypeError(f"{obj!r} does not implement the {label} interface")
                if name in found:
                    raise ValueError(f"{label} {name!r} is already registered")
                found[name] = obj
                _added.append(name)

            try:
                impl.function(register=register)
            except Exception as exc:
                self.failures.append(Failure(plugin, hook_name, f"{type(exc).__name__}: {exc}",
                                             traceback.format_exc(limit=5)))
            if added and plugin in self.info:
                self.info[plugin].registered.setdefault(family, []).extend(added)
        return found

    def get(self, family: str, name: str) -> Any:
        """One registered object, or a clear error listing what exists."""
        items = self.registry(family)
        if name not in items:
            label = FAMILIES[family][2]
            known = ", ".join(sorted(items)) or "none"
            raise BadInput(f"no {label} named {name!r} (available: {known})",
                           "check the name, or install the plugin that provides it and run `vlhub plugins`")
        return items[name]

    def call_commands(self, cli: object) -> None:
        """Let plugins add CLI commands; failures are recorded, not raised."""
        self.load()
        for impl in self.pm.hook.register_commands.get_hookimpls():
            try:
                impl.function(cli=cli)
            except Exception as exc:
                self.failures.append(Failure(impl.plugin_name, "register_commands",
                                             f"{type(exc).__name__}: {exc}"))

    # ------------------------------------------------------------ reporting
    def describe(self) -> dict[str, Any]:
        """Every plugin with version, hooks and registered names, plus failures (for ``vlhub plugins``)."""
        for family in FAMILIES:
            self.registry(family)
        plugins = []
        for name, info in sorted(self.info.items(), key=lambda kv: (not kv[1].builtin, kv[0])):
            module = self.pm.get_plugin(name)
            hooks = sorted(h.name for h in self.pm.get_hookcallers(module) or []) if module else []
            plugins.append({"name": name, "distribution": info.distribution, "version": info.version,
                            "builtin": info.builtin, "hooks": hooks, "registered": info.registered})
        failures = [{"plugin": f.plugin, "stage": f.stage, "error": f.error} for f in self.failures]
        return {"plugins": plugins, "failures": failures}

_host: PluginHost | None = None

def host() -> PluginHost:
    """The process-wide plugin host (loaded on first use)."""
    global _host
    if _host is None:
        _host = PluginHost()
        _host.load()
    return _host

def reset() -> None:
    """Forget loaded plugins (tests that change ``VLHUB_LOAD_PLUGINS``)."""
    global _host
    _host = None

def registry(family: str) -> dict[str, Any]:
    """Shortcut for ``host().registry(family)``."""
    return host().registry(family)

def get(family: str, name: str) -> Any:
    """Shortcut for ``host().get(family, name)``."""
    return host().get(family, name)
