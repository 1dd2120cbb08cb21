"""``vlhub data ...``: prepare, validate, stats and download of datasets."""
from __future__ import annotations

import click


@click.group()
def data() -> None:
    """Prepare datasets in XTuner's InternVL format, validate them, show stats."""
