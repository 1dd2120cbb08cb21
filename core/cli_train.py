"""``vlhub train`` and ``vlhub run stop``."""
from __future__ import annotations

import click


@click.command()
def train() -> None:
    """Plan and launch a training run (being written)."""


@click.command()
@click.argument("run_id")
def stop(run_id: str) -> None:
    """Stop a running training run (being written)."""
