"""``vlhub publish``: send a model folder to one or more hubs."""
from __future__ import annotations

import click


@click.command()
def publish() -> None:
    """Publish a model folder (being written)."""
