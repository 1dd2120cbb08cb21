"""The ``vlhub`` command: one module per verb group; every verb calls the same core function as the page.

``data``, ``train`` (and ``run stop``), ``convert`` (and ``templates``), ``chat`` (and ``eval``),
``check``, ``publish``, ``runs`` (and ``run show``), ``env`` (and ``doctor``), ``plugins``, ``launch``. Plugins add
their own commands through the ``register_commands`` hook.
"""
from __future__ import annotations

import sys
import traceback
from typing import Any

import click

from .. import __version__
from .. import plugins as plugin_host
from . import chat, check, convert, data, env, launch, plugins, publish, runs, train
from ..boundary import user_error
from ..secrets import setup_logging


class VlhubGroup(click.Group):
    """A click group that turns every exception into one line and an exit code (:func:`user_error`)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:  # every failure is one line (boundary.user_error) unless --debug
            if ctx.params.get("debug"):
                raise
            error = user_error(exc)
            click.echo(f"Error: {error.one_line()}", err=True)
            ctx.exit(error.exit_code)


@click.group(cls=VlhubGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vlhub")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
def cli(debug: bool) -> None:
    """vlhub: prepare data, fine-tune, convert, chat with and publish InternVL models."""
    import logging

    setup_logging(logging.DEBUG if debug else logging.WARNING)


for _command in (data.data, train.train, convert.convert, convert.templates, chat.chat, chat.eval_cmd,
                 check.check, publish.publish, runs.runs_cmd, runs.run_group, env.env, env.doctor, plugins.plugins_cmd,
                 launch.launch):
    cli.add_command(_command)
runs.run_group.add_command(train.stop)


def main() -> None:
    """Console-script entry point."""
    plugin_host.host().call_commands(cli)
    try:
        cli.main(prog_name="vlhub", standalone_mode=True)
    except Exception:  # only reached with --debug
        traceback.print_exc()
        sys.exit(1)
