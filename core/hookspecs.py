"""vlhub's hook specifications: one ``register_*`` hook per pipeline stage.

A plugin implements any of these with ``@hookimpl`` and calls ``register(obj)``
once per object it provides. Hooks are called lazily, the first time vlhub needs
that kind of object (for a command, a page, or ``vlhub plugins``).
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
    """


@hookspec
def register_trainers(register: Callable[[object], None]) -> None:
    """Register trainers (:class:`vlhub.core.types.Trainer`).

    Called when a training run is planned, launched or followed (``vlhub train``, the Train page).
    """


@hookspec
def register_converters(register: Callable[[object], None]) -> None:
    """Register checkpoint converters (:class:`vlhub.core.types.Converter`).

    Called by ``vlhub convert`` and the Convert page to find a converter that accepts a checkpoint.
    """


@hookspec
def register_chat_templates(register: Callable[[object], None]) -> None:
    """Register chat templates (:class:`vlhub.core.types.ChatTemplate`).

    Called when a config is generated, a model is converted or a chat is rendered (``vlhub templates``).
    """


@hookspec
def register_publishers(register: Callable[[object], None]) -> None:
    """Register publishers (:class:`vlhub.core.types.Publisher`) for ``--to NAME:TARGET``.

    Called by ``vlhub publish`` and the Publish page.
    """


@hookspec
def register_chat_backends(register: Callable[[object], None]) -> None:
    """Register chat backends (:class:`vlhub.core.types.ChatBackend`).

    Called by ``vlhub chat``, ``vlhub eval`` and the Chat page.
    """


@hookspec
def register_commands(cli: object) -> None:
    """Add commands to the ``vlhub`` click group (``cli.command()`` or ``cli.add_command``).

    Called once when the CLI starts.
    """
