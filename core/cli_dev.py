"""``vlhub dev ...``: tools for plugin authors and tests."""
from __future__ import annotations

import click


@click.group()
def dev() -> None:
    """Developer tools (tiny test models)."""
