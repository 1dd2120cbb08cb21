"""The plugin manager: built-ins and third-party plugins load the same way, from entry points, and are checked.

Every plugin, built-in or not, is an entry point in the ``vlhub`` group. The
built-in ones belong to the ``vlhub`` distribution itself and always load;
``VLHUB_LOAD_PLUGINS=a,b`` restricts the others to those entry-point or
distribution names (an empty value loads built-ins only).

A plugin is checked against the contract before and after it is used:

- on registration (:meth:`PluginHost.admit`): its ``vlhub_requires`` must match
  :data:`vlhub.core.PLUGIN_API_VERSION`, and each of its ``@hookimpl`` functions must name a hook of
  :mod:`vlhub.core.hookspecs` and take only arguments that hook passes; otherwise the plugin is
  unregistered again and none of its hooks is ever called;
- on each ``register(obj)`` call: ``obj`` must implement its family's interface of
  :mod:`vlhub.core.types` (:func:`check_interface`: attributes and method signatures, and the optional
  ``secrets`` a sequence of :class:`vlhub.core.secrets.Secret`); otherwise that object is left out.

The secrets the registered objects declare are collected by :meth:`PluginHost.secrets` (what
:func:`vlhub.core.secrets.find_token` looks up and :func:`~vlhub.core.secrets.redact` scrubs);
:meth:`PluginHost.describe` lists every object with its options and secrets.

Every failure (import, contract, a hook that raises, an object that does not conform) is recorded in
:attr:`PluginHost.failures` with the plugin's name and the reason; vlhub keeps working without it.
"""
from __future__ import annotations

import collections.abc
import difflib
import inspect
import os
import traceback
import types
import typing
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, Callable, Mapping

import pluggy
from packaging.specifiers import InvalidSpecifier, SpecifierSet

from . import PLUGIN_API_VERSION, __version__, hookspecs
from .errors import BadInput
from .secrets import Secret
from .types import ChatBackend, ChatTemplate, Converter, Dataset, ProgressCallback, Published, Publisher, Trainer

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


class Publisher01:
    """``Publisher`` methods as vlhub 0.1 declared them, which vlhub still calls."""

    def publish(self, folder: Path, target: str, options: Mapping[str, Any],
                progress: ProgressCallback | None = None) -> Published:
        """Plan again and send ``folder`` to ``target``.

        :func:`vlhub.core.publish.execute` calls it for a publisher whose ``preflight`` returns a plain
        :class:`~vlhub.core.types.Preflight` instead of a :class:`~vlhub.core.types.PublishPlan`.

        Args:
            folder, target, options, progress: as for :meth:`vlhub.core.types.Publisher.preflight`.
        Returns:
            :class:`~vlhub.core.types.Published`, as :meth:`vlhub.core.types.Publisher.publish`.
        Raises:
            vlhub.core.errors.VlhubError: as :meth:`vlhub.core.types.Publisher.publish`.
        """


#: (interface, method) -> older declarations of that method that vlhub still calls; a method that
#: accepts the calls of any one of them (or of the interface's own) conforms.
STILL_CALLED: dict[tuple[type, str], tuple[Callable[..., Any], ...]] = {
    (Publisher, "publish"): (Publisher01.publish,),
}

#: Every hook name of :mod:`vlhub.core.hookspecs`.
HOOKS: tuple[str, ...] = tuple(name for name, value in vars(hookspecs).items()
                               if hasattr(value, f"{GROUP}_spec"))


@dataclass
class Failure:
    """A plugin that was refused, or whose hook raised or registered an object that does not conform.

    ``stage`` is ``import`` (the module raised on import), ``requires`` (its ``vlhub_requires`` does not
    match this vlhub), ``register`` (a hook name or hook arguments that vlhub does not know) or the hook
    that failed (e.g. ``register_publishers``). ``error`` is one line; ``detail`` a traceback, if any.
    """

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


def check_requires(plugin: object) -> str:
    """Why ``plugin`` cannot load on this vlhub's plugin API, or ``""`` when it can.

    Args:
        plugin: a plugin module or object. Its optional ``vlhub_requires`` attribute is a PEP 440
            version specifier string such as ``">=1.0,<2"``.
    Returns:
        ``""`` when there is no ``vlhub_requires`` or :data:`vlhub.core.PLUGIN_API_VERSION` matches it,
        else the reason on one line (also when it is not a valid specifier).
    """
    spec = getattr(plugin, "vlhub_requires", None)
    if spec is None:
        return ""
    try:
        allowed = SpecifierSet(spec) if isinstance(spec, str) else None
    except InvalidSpecifier:
        allowed = None
    if allowed is None:
        return f"vlhub_requires = {spec!r} is not a version specifier such as '>=1.0,<2'"
    if allowed.contains(PLUGIN_API_VERSION, prereleases=True):
        return ""
    return (f"vlhub_requires = {spec!r} does not match this vlhub's plugin API {PLUGIN_API_VERSION} "
            f"(vlhub {__version__})")


def check_interface(obj: object, interface: type) -> list[str]:
    """What keeps ``obj`` from implementing ``interface``; ``[]`` when it conforms.

    Each attribute the interface annotates must exist with that type (``name`` also non-empty,
    ``options`` a sequence of :class:`vlhub.core.types.Option`; the optional ``secrets``, when present, a
    sequence of :class:`vlhub.core.secrets.Secret`). Each method must exist, be callable and
    accept every call vlhub makes: all the interface's parameters positionally (each landing on the
    parameter of the same name), only its required ones, or all of them by keyword. So extra parameters
    need defaults, a parameter with a default in the interface needs one in ``obj`` too, and ``*args`` /
    ``**kwargs`` are accepted (as vlhub passes the parameters positionally, ``**kwargs`` alone does not
    stand in for one). A method may instead match an older declaration in :data:`STILL_CALLED`.
    Plugin authors can call this in their own tests.

    Args:
        obj: the object a plugin registers.
        interface: one of the protocols of :mod:`vlhub.core.types` (``Dataset``, ``Trainer``,
            ``Converter``, ``ChatTemplate``, ``Publisher``, ``ChatBackend``).
    Returns:
        One line per problem, naming the attribute or method, what was expected and what was found.
    """
    problems = []
    declared = inspect.get_annotations(interface)
    for attr, hint in typing.get_type_hints(interface).items():
        if not hasattr(obj, attr):
            problems.append(f"no attribute {attr} (expected {declared[attr]})")
        elif not _conforms(getattr(obj, attr), hint):
            problems.append(f"{attr} = {getattr(obj, attr)!r:.80} is not a {declared[attr]}")
    if "name" in declared and getattr(obj, "name", None) == "":
        problems.append("name is empty")
    secrets = getattr(obj, "secrets", None)
    if secrets is not None and not _conforms(secrets, collections.abc.Sequence[Secret]):
        problems.append(f"secrets = {secrets!r:.80} is not a Sequence[Secret]")
    for method, spec in vars(interface).items():
        if not method.startswith("_") and inspect.isfunction(spec):
            problems += _check_method(obj, method, [spec, *STILL_CALLED.get((interface, method), ())])
    return problems


def _conforms(value: object, hint: Any) -> bool:
    """Whether ``value`` has the type ``hint`` (a class, ``X | None`` or ``Sequence[X]``)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, arg) for arg in args)
    if origin is collections.abc.Sequence:
        return (isinstance(value, collections.abc.Sequence) and not isinstance(value, str)
                and all(_conforms(item, args[0]) for item in value))
    return isinstance(value, hint)


def _check_method(obj: object, method: str, specs: list[Callable[..., Any]]) -> list[str]:
    """``[]`` when ``obj.method`` accepts vlhub's calls as one of ``specs`` declares them (functions with
    ``self``), else the problem: the expected and the found signature."""
    expected = [list(inspect.signature(spec).parameters.values())[1:] for spec in specs]
    want = " or ".join(f"{method}{_plain(inspect.Signature(params))}" for params in expected)
    impl = getattr(obj, method, None)
    if impl is None:
        return [f"no method {want}"]
    if not callable(impl):
        return [f"{method} = {impl!r:.80} is not callable (expected {want})"]
    try:
        found = inspect.signature(impl)
    except (TypeError, ValueError):  # a callable without a readable signature (C code): cannot be checked
        return []
    if any(_accepts(found, params) for params in expected):
        return []
    return [f"{method}: expected {want}, found {method}{_plain(found)}"]


def _accepts(found: inspect.Signature, expected: list[inspect.Parameter]) -> bool:
    """Whether ``found`` binds ``expected`` all positionally (each to the parameter of the same name, or
    to ``*args``), only its required ones positionally, and all by keyword."""
    required = [p for p in expected if p.default is p.empty]
    try:
        positional = found.bind(*expected).arguments
        found.bind(*required)
        found.bind(**{p.name: p for p in expected})
    except TypeError:
        return False
    return all(not isinstance(value, inspect.Parameter) or value.name == name for name, value in positional.items())


def _plain(sig: inspect.Signature) -> str:
    """``(a, b, c=None)``: a signature without annotations (what error messages show)."""
    return str(sig.replace(parameters=[p.replace(annotation=p.empty) for p in sig.parameters.values()],
                           return_annotation=sig.empty))


def _object_label(obj: object, label: str) -> str:
    """``publisher 'folder' (module.Class)``: how a failure names a registered object."""
    cls = type(obj)
    name = getattr(obj, "name", None)
    return f"{label} {name!r} ({cls.__module__}.{cls.__qualname__})" if name else f"{label} {obj!r:.80}"


class PluginHost:
    """One pluggy manager plus what each plugin registered and what failed."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.info: dict[str, PluginInfo] = {}
        self._refused: list[Failure] = []
        self._hook_failures: dict[str, list[Failure]] = {}
        self._registries: dict[str, dict[str, Any]] = {}
        self._secrets: dict[str, tuple[Secret, list[str]]] | None = None
        self._secret_failures: list[Failure] = []
        self._loaded = False

    @property
    def failures(self) -> list[Failure]:
        """Every failure: plugins refused on loading first, then hooks that raised or registered bad objects."""
        return [*self._refused, *(f for family in self._hook_failures.values() for f in family),
                *self._secret_failures]

    # ------------------------------------------------------------ loading
    def load(self) -> None:
        """Import and admit every allowed entry point once."""
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
        except Exception as exc:  # a broken plugin must not break vlhub
            self._refused.append(Failure(ep.name, "import", f"{type(exc).__name__}: {exc}",
                                         traceback.format_exc(limit=5)))
            return
        self.admit(module, PluginInfo(ep.name, dist, ep.dist.version if ep.dist else "", builtin))

    def register_module(self, module: object, name: str, *, builtin: bool = False) -> bool:
        """Admit a plugin object directly (tests, notebooks), after the entry points.

        Args:
            module: a module, class or instance with ``@hookimpl`` functions.
            name: the plugin's name in ``vlhub plugins`` and in failures.
            builtin: list it as a built-in.
        Returns:
            True when it was registered; False when it was refused (the reason is in :attr:`failures`).
        """
        self.load()
        return self.admit(module, PluginInfo(name, "", "", builtin))

    def admit(self, plugin: object, info: PluginInfo) -> bool:
        """Register ``plugin`` as ``info.name`` when it keeps the contract, else record why and leave it out.

        Checks, in order: ``vlhub_requires`` (:func:`check_requires`, failure stage ``requires``);
        pluggy's validation of each ``@hookimpl`` against its hookspec (arguments the hook does not pass)
        and hook names that :mod:`vlhub.core.hookspecs` does not define, with the closest hook name
        (stage ``register``). A refused plugin is unregistered: none of its hooks is called.

        Args:
            plugin: the imported module (or object) with ``@hookimpl`` functions.
            info: its name, distribution, version and whether it is built in.
        Returns:
            True when the plugin was registered.
        """
        stage, reason = "requires", check_requires(plugin)
        if not reason:
            stage = "register"
            try:
                self.pm.register(plugin, name=info.name)
            except (pluggy.PluginValidationError, ValueError) as exc:
                reason = " ".join(str(exc).split())
            else:
                reason = "; ".join(self._unknown_hooks(plugin))
            if reason and self.pm.get_plugin(info.name) is plugin:
                self.pm.unregister(plugin, info.name)
        if reason:
            self._refused.append(Failure(info.name, stage, reason))
            return False
        self.info[info.name] = info
        self._registries.clear()
        self._secrets = None
        return True

    def _unknown_hooks(self, plugin: object) -> list[str]:
        """One line per ``@hookimpl`` of ``plugin`` that names no hook of :mod:`vlhub.core.hookspecs`."""
        unknown = []
        for caller in self.pm.get_hookcallers(plugin) or []:
            if not caller.has_spec():
                close = difflib.get_close_matches(caller.name, HOOKS, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"vlhub's hooks are {', '.join(HOOKS)}"
                unknown.append(f"unknown hook {caller.name!r} ({hint})")
        return unknown

    # ------------------------------------------------------------ registries
    def registry(self, family: str) -> dict[str, Any]:
        """Name -> object for one family, calling each plugin's hook once."""
        self.load()
        if family not in self._registries:
            self._registries[family] = self._collect(family)
        return self._registries[family]

    def _collect(self, family: str) -> dict[str, Any]:
        """Call every plugin's hook for ``family``; objects that do not conform are recorded and left out."""
        hook_name, interface, label = FAMILIES[family]
        found: dict[str, Any] = {}
        owner: dict[str, str] = {}
        failures = self._hook_failures[family] = []
        for info in self.info.values():
            info.registered.pop(family, None)
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            plugin = impl.plugin_name

            def register(obj: object, _plugin: str = plugin) -> None:
                problems = check_interface(obj, interface)
                name = getattr(obj, "name", None)
                if problems:
                    error = f"does not implement the {label} interface: {'; '.join(problems)}"
                elif name in found:
                    error = f"is left out: the name {name!r} is taken by the plugin {owner[name]!r}"
                else:
                    error = ""
                if error:
                    failures.append(Failure(_plugin, hook_name, f"{_object_label(obj, label)} {error}"))
                    return
                found[name] = obj
                owner[name] = _plugin
                if _plugin in self.info:
                    self.info[_plugin].registered.setdefault(family, []).append(name)

            try:
                impl.function(register=register)
            except Exception as exc:
                failures.append(Failure(plugin, hook_name, f"{type(exc).__name__}: {exc}",
                                        traceback.format_exc(limit=5)))
        return found

    def secrets(self) -> dict[str, Secret]:
        """Every secret the registered objects (of every family) declare, by name.

        The first declaration of a name wins; an object that declares the same name differently is
        recorded as a failure of its plugin (the object itself stays registered).
        """
        return {name: secret for name, (secret, _) in self._declarations().items()}

    def secret_users(self) -> dict[str, list[str]]:
        """Secret name -> the objects that declare it, e.g. ``["publisher hf"]``."""
        return {name: users for name, (_, users) in self._declarations().items()}

    def _declarations(self) -> dict[str, tuple[Secret, list[str]]]:
        if self._secrets is not None:
            return self._secrets
        found: dict[str, tuple[Secret, list[str]]] = {}
        failures: list[Failure] = []
        for family, (hook_name, _, label) in FAMILIES.items():
            objects = self.registry(family)
            owners = {name: plugin for plugin, info in self.info.items() for name in info.registered.get(family, [])}
            for name, obj in objects.items():
                for secret in getattr(obj, "secrets", None) or ():
                    if secret.name not in found:
                        found[secret.name] = (secret, [f"{label} {name}"])
                    elif found[secret.name][0] == secret:
                        found[secret.name][1].append(f"{label} {name}")
                    else:
                        first = found[secret.name][0]
                        failures.append(Failure(owners.get(name, "?"), hook_name,
                                                f"{_object_label(obj, label)} declares the secret {secret.name!r} "
                                                f"({', '.join(secret.env)}) differently from "
                                                f"{', '.join(found[secret.name][1])} ({', '.join(first.env)}): "
                                                "its declaration is ignored"))
        self._secret_failures = failures
        self._secrets = found
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
                self._refused.append(Failure(impl.plugin_name, "register_commands",
                                             f"{type(exc).__name__}: {exc}"))

    # ------------------------------------------------------------ reporting
    def describe(self) -> dict[str, Any]:
        """The report of ``vlhub plugins``.

        Returns:
            ``plugin_api_version``; ``plugins``: one dict per registered plugin (``name``, ``distribution``,
            ``version``, ``builtin``, ``hooks``, ``registered``: family -> names, ``objects``: family ->
            one dict per object, ``{"name", "description", "options": [Option.public()], "secrets":
            [Secret.public()]}``), built-ins first; ``secrets``: every declared secret, ``Secret.public()``
            plus ``declared_by`` (e.g. ``["publisher hf"]``); ``failures``: one dict per failure
            (``plugin``, ``stage``, ``error``), see :class:`Failure`.
        """
        for family in FAMILIES:
            self.registry(family)
        users = self.secret_users()
        plugins = []
        for name, info in sorted(self.info.items(), key=lambda kv: (not kv[1].builtin, kv[0])):
            module = self.pm.get_plugin(name)
            hooks = sorted(h.name for h in self.pm.get_hookcallers(module) or []) if module else []
            objects = {family: [describe_object(self.registry(family)[obj]) for obj in names]
                       for family, names in info.registered.items()}
            plugins.append({"name": name, "distribution": info.distribution, "version": info.version,
                            "builtin": info.builtin, "hooks": hooks, "registered": info.registered,
                            "objects": objects})
        secrets = [{**secret.public(), "declared_by": users[name]} for name, secret in self.secrets().items()]
        failures = [{"plugin": f.plugin, "stage": f.stage, "error": f.error} for f in self.failures]
        return {"plugin_api_version": PLUGIN_API_VERSION, "plugins": plugins, "secrets": secrets,
                "failures": failures}


def describe_object(obj: Any) -> dict[str, Any]:
    """One registered object as JSON-ready data: ``{"name", "description", "options": [Option.public()],
    "secrets": [Secret.public()]}`` (``vlhub plugins --json``)."""
    return {"name": obj.name, "description": getattr(obj, "description", ""),
            "options": [option.public() for option in getattr(obj, "options", None) or ()],
            "secrets": [secret.public() for secret in getattr(obj, "secrets", None) or ()]}


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
