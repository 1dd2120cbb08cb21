"""vlhub's hook specifications: one ``register_*`` hook per pipeline stage, plus ``register_commands``.

A plugin implements any of these with ``@hookimpl`` (the function's name is the hook's name) and
calls ``register(obj)`` once per object it provides. Hooks are called lazily, the first time vlhub
needs that kind of object (for a command, a page, or ``vlhub plugins``).
A hook name that is not defined here, or an argument the hook does not pass, gets the whole plugin
refused when it loads; an object that does not implement its interface (:mod:`vlhub.core.types`) is
left out; both are recorded failures of the plugin, shown by ``vlhub plugins``.
"""
from __future__ import annotations

from typing import Callable

import pluggy

hookspec = pluggy.HookspecMarker("vlhub")
hookimpl = pluggy.HookimplMarker("vlhub")


@hookspec
def register_datasets(register: Callable[[object], None]) -> None:
    """Register dataset converters (:class:`vlhub.core.types.Dataset`).

    Called when vlhub lists or prepares datasets (``vlhub data``, the Data page).

    Args:
        register: call it once per object: ``register(dataset)``. An object that does not implement
            :class:`~vlhub.core.types.Dataset`, or whose ``name`` is taken, is not registered and is
            recorded as a failure of this plugin (``register`` itself does not raise).
    Returns:
        None (the return value is ignored).
    Raises:
        Anything: an exception is recorded as a failure of this plugin (stage ``register_datasets``);
        objects registered before it stay registered.
    """


@hookspec
def register_trainers(register: Callable[[object], None]) -> None:
    """Register trainers (:class:`vlhub.core.types.Trainer`).

    Called when a training run is planned, launched or followed (``vlhub train``, the Train page).

    Args:
        register: call it once per object: ``register(trainer)`` (checked as for :func:`register_datasets`).
    Returns:
        None (the return value is ignored).
    Raises:
        Anything: recorded as a failure of this plugin (stage ``register_trainers``).
    """


@hookspec
def register_converters(register: Callable[[object], None]) -> None:
    """Register checkpoint converters (:class:`vlhub.core.types.Converter`).

    Called by ``vlhub convert`` and the Convert page to find a converter that accepts a checkpoint.

    Args:
        register: call it once per object: ``register(converter)`` (checked as for :func:`register_datasets`).
    Returns:
        None (the return value is ignored).
    Raises:
        Anything: recorded as a failure of this plugin (stage ``register_converters``).
    """


@hookspec
def register_chat_templates(register: Callable[[object], None]) -> None:
    """Register chat templates (:class:`vlhub.core.types.ChatTemplate`).

    Called when a config is generated, a model is converted or a chat is rendered (``vlhub templates``).

    Args:
        register: call it once per object: ``register(template)`` (checked as for :func:`register_datasets`).
    Returns:
        None (the return value is ignored).
    Raises:
        Anything: recorded as a failure of this plugin (stage ``register_chat_templates``).
    """


@hookspec
def register_publishers(register: Callable[[object], None]) -> None:
    """Register publishers (:class:`vlhub.core.types.Publisher`) for ``--to NAME:TARGET``.

    Called by ``vlhub publish`` and the Publish page.

    Args:
        register: call it once per object: ``register(publisher)`` (checked as for :func:`register_datasets`).
    Returns:
        None (the return value is ignored).
    Raises:
        Anything: recorded as a failure of this plugin (stage ``register_publishers``).
    """


@hookspec
def register_chat_backends(register: Callable[[object], None]) -> None:
    """Register chat backends (:class:`vlhub.core.types.ChatBackend`).

    Called by ``vlhub chat``, ``vlhub eval`` and the Chat page.

    Args:
        register: call it once per object: ``register(backend)`` (checked as for :func:`register_datasets`).
    Returns:
        None (the return value is ignored).
    Raises:
        Anything: recorded as a failure of this plugin (stage ``register_chat_backends``).
    """


@hookspec
def register_commands(cli: object) -> None:
    """Add commands to the ``vlhub`` command line.

    Called once when the ``vlhub`` command starts, before its arguments are parsed.

    Args:
        cli: the ``vlhub`` :class:`click.Group`: use ``@cli.command()`` or ``cli.add_command(cmd)``.
    Returns:
        None (the return value is ignored).
    Raises:
        Anything: recorded as a failure of this plugin (stage ``register_commands``); vlhub runs without
        its commands.
    """
