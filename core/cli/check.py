"""``vlhub check``: the serve-ready check of a model folder (logic in :mod:`vlhub.core.serve_check`).

Besides the fixed flags, every option of the chat backends is a flag ``--NAME``
(:class:`~.plugins.PluginOptionsCommand`: ``--device``, ``--env``, ``--engine``, ``--tp``, ...),
checked against the chosen backend, and ``--opt KEY=VALUE`` reaches any of them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..output import emit_json, say
from .plugins import PluginOptionsCommand


@click.command(cls=PluginOptionsCommand, family="chat_backends")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--backend", type=click.Choice(["transformers", "lmdeploy"]), default="transformers",
              show_default=True, help="transformers: the folder's own chat code (CPU or GPU, serve or train env); "
                                      "lmdeploy: LMDeploy's api_server (serve env, NVIDIA GPU).")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=128, show_default=True,
              help="The answer must end with a stop token within this many tokens.")
@click.option("--opt", "opts", multiple=True, metavar="KEY=VALUE",
              help="An option of the chosen backend (repeatable); each is also a flag --NAME of its own.")
@click.option("--json", "as_json", is_flag=True, help="Output the result as JSON.")
@click.pass_context
def check(ctx: click.Context, model: Path, backend: str, max_new_tokens: int, opts: tuple[str, ...], as_json: bool,
          **plugin_options: Any) -> None:
    """Check that MODEL can be served: load it as the backend serves it, ask one question about a generated
    image (greedy), and require the answer to end with a stop token (an eos token of the folder or a stop
    word of its chat template) within --max-new-tokens.

    The result (ok or failed, the reason, backend, date, tokens) is recorded in the folder's
    vlhub_provenance.json; `vlhub publish` refuses a folder whose last check failed unless given
    --skip-serve-check, and the model card shows it. Exit 0 when it passed, 1 when it failed.
    """
    from .. import serve_check

    options = ctx.command.given(plugin_options, [backend], opts)
    result = serve_check.check(model, backend, max_new_tokens, options)
    if as_json:
        emit_json(result.public())
    else:
        tokens = "?" if result.tokens is None else result.tokens
        say(f"{result.folder}: serve check {result.status} ({result.backend}, {tokens} tokens, limit "
            f"{result.max_new_tokens}): {result.reason}")
        if result.answer:
            say(f"  answer: {' '.join(result.answer.split())[:200]}")
        say(f"  {result.note}" if result.note else "  recorded in vlhub_provenance.json")
    if not result.ok:
        raise SystemExit(1)
