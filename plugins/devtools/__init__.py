"""Developer tools: ``vlhub dev tiny-model`` (tiny InternVL-format models of every generation, for tests and
plugin authors).

Registered through the ``register_commands`` hook, exactly as a third-party plugin adds a command.
"""
from __future__ import annotations

from vlhub.core import hookimpl


@hookimpl
def register_commands(cli) -> None:
    """Add the ``vlhub dev`` group."""
    from .cli import dev

    cli.add_command(dev)
