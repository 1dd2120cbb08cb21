"""``vlhub convert`` and ``vlhub templates``."""
from __future__ import annotations

import click


@click.command()
def convert() -> None:
    """Convert a checkpoint to an official InternVL folder (being written)."""


@click.command()
def templates() -> None:
    """List chat templates (being written)."""
