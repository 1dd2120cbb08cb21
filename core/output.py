"""CLI output conventions: JSON to stdout, human text and progress bars to stderr."""
from __future__ import annotations

import json
import sys
from typing import Any, Callable

import click
from tqdm import tqdm

from .secrets import redact
from .types import Progress, ProgressCallback


def emit_json(data: Any) -> None:
    """Print ``data`` as JSON on stdout (secrets redacted)."""
    click.echo(redact(json.dumps(data, indent=2, ensure_ascii=False, default=str)))


def say(text: str) -> None:
    """Human-readable text on stderr."""
    click.echo(redact(text), err=True)


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A plain fixed-width text table."""
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def tqdm_progress(enabled: bool = True) -> tuple[ProgressCallback, Callable[[], None]]:
    """A progress callback drawing one tqdm bar per task on stderr, and a function closing them."""
    bars: dict[str, tqdm] = {}
    interactive = sys.stderr.isatty()

    def callback(event: Progress) -> None:
        if not enabled:
            return
        bar = bars.get(event.task)
        if bar is None:
            scale = event.unit == "B"
            bar = bars[event.task] = tqdm(total=event.total, desc=event.task, unit=event.unit or "it",
                                          unit_scale=scale, unit_divisor=1024 if scale else 1000,
                                          file=sys.stderr, leave=False, dynamic_ncols=True,
                                          mininterval=0.1 if interactive else 15)
        if event.total is not None and bar.total != event.total:
            bar.total = event.total
        if event.message:
            bar.set_postfix_str(redact(event.message)[:60], refresh=False)
        bar.update(event.done - bar.n)  # draws at most every `mininterval` seconds (quiet in CI logs)

    def close() -> None:
        drawn = bool(bars)
        for bar in bars.values():
            bar.close()
        bars.clear()
        if drawn and not interactive:
            # tqdm clears its line with "\r" and spaces but ends no line: in a log or a pipe the next
            # line (an error) would begin with that clean-up sequence.
            sys.stderr.write("\n")
            sys.stderr.flush()

    return callback, close
