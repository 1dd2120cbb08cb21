"""``vlhub convert`` and ``vlhub templates``: thin wrappers over :mod:`vlhub.core.convert`."""
from __future__ import annotations

import click

from .. import convert as convertapi
from ..output import emit_json, say, table, tqdm_progress
from ..types import to_dict


@click.command()
@click.argument("source")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Folder to create.")
@click.option("--config", type=click.Path(dir_okay=False), help="The xtuner config (default: the run's, or beside the checkpoint).")
@click.option("--converter", help="Converter name (default: chosen from the config's model class).")
@click.option("--template", help="Chat template name (default: the one matching the base model).")
@click.option("--checkpoint", metavar="best|last|N",
              help="Which checkpoint of a RUN_ID: best (default when the run's validation marked one), last, "
                   "or an iteration N.")
@click.option("--image", type=click.Path(exists=True, dir_okay=False), help="Image for the verification chat turn.")
@click.option("--force", is_flag=True, help="Replace an existing --out folder once the new one is complete.")
@click.option("--no-verify", is_flag=True, help="Skip loading the result, the chat turn and the weight check.")
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
def convert(source: str, out: str, config: str | None, converter: str | None, template: str | None,
            checkpoint: str | None, image: str | None, force: bool, no_verify: bool, as_json: bool) -> None:
    """Convert RUN_ID (its best checkpoint by validation, else its last) or a CHECKPOINT (iter_N.pth file or
    DeepSpeed folder) to a model folder."""
    progress, close = tqdm_progress()
    try:
        result = convertapi.convert(source, out, config=config, converter=converter, template=template, force=force,
                             verify=not no_verify, image=image, progress=progress, checkpoint=checkpoint)
    finally:
        close()
    if as_json:
        emit_json(to_dict(result))
        return
    state = "verified" if result.verified.get("ok") else "not verified"
    say(f"converted {result.source} -> {result.out} ({state}); provenance: {result.provenance}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Output JSON (with each template's Jinja).")
def templates(as_json: bool) -> None:
    """List chat templates, the models each matches and the xtuner template each trains with."""
    rows = [convertapi.template_public(t) for t in convertapi.templates().values()]
    if as_json:
        emit_json(rows)
        return
    click.echo(table(rows, ["name", "xtuner_template", "lmdeploy_name", "matches"]))
