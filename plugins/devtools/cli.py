"""``vlhub dev ...``: tools for plugin authors and tests."""
from __future__ import annotations

from pathlib import Path

import click

from vlhub.core.errors import BadInput
from vlhub.core.output import emit_json, say


@click.group()
def dev() -> None:
    """Developer tools (tiny test models)."""


@dev.command(name="tiny-model")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--llm", default="phi3", show_default=True, help="Language-model family of the model.")
@click.option("--size", default="tiny", show_default=True, type=click.Choice(["tiny", "2b"]),
              help="tiny: a few hundred kB (tests); 2b: InternVL2-2B's dimensions, about 4.4 GB (GPU speed tests).")
@click.option("--seed", default=0, show_default=True, help="Seed of the random weights.")
@click.option("--force", is_flag=True, help="Replace OUT if it exists and is not empty.")
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
def tiny_model(out: Path, llm: str, size: str, seed: int, force: bool, as_json: bool) -> None:
    """Write a random-weight InternVL2-format model folder at OUT (for tests and GPU checks)."""
    from .tiny_model import make_tiny_model

    try:
        path = make_tiny_model(out, llm=llm, size=size, seed=seed, force=force)
    except FileExistsError as exc:
        raise BadInput(f"{out} exists and is not empty", "pass --force to replace it, or choose another OUT") from exc
    except ValueError as exc:
        raise BadInput(str(exc), "see `vlhub dev tiny-model --help`") from exc
    files = sorted(p.name for p in path.iterdir())
    size_bytes = sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    if as_json:
        emit_json({"path": str(path), "size": size, "llm": llm, "seed": seed, "bytes": size_bytes, "files": files})
        return
    say(f"tiny model ({size}, {llm}, {size_bytes / 1e6:.1f} MB) written")
    click.echo(str(path))
