"""``vlhub chat`` and ``vlhub eval``."""
from __future__ import annotations

import click


@click.command()
def chat() -> None:
    """Chat with a model (being written)."""


@click.command(name="eval")
def eval_cmd() -> None:
    """Multiple-choice accuracy on a validation split (being written)."""
