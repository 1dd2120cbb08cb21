"""``vlhub launch``: start the Streamlit launcher (127.0.0.1 unless --allow-remote), or open the one
that runs; ``--install-shortcut`` / ``--remove-shortcut`` manage its desktop entry."""
from __future__ import annotations

import sys

import click
from click.core import ParameterSource

from ..output import say


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8501, show_default=True, type=click.IntRange(0, 65535),
              help="Port; 0: any free one. A port you name is kept, or refused if another program "
                   "holds it; the default falls back to a free one.")
@click.option("--no-browser", is_flag=True, help="Do not open a browser.")
@click.option("--allow-remote", is_flag=True, help="Allow a --host other than this machine.")
@click.option("--install-shortcut", is_flag=True,
              help="Add vlhub to the desktop's applications menu (starts this environment's vlhub), then exit.")
@click.option("--remove-shortcut", is_flag=True, help="Remove the shortcut --install-shortcut wrote, then exit.")
@click.pass_context
def launch(ctx: click.Context, host: str, port: int, no_browser: bool, allow_remote: bool,
           install_shortcut: bool, remove_shortcut: bool) -> None:
    """Start the Streamlit launcher, or open the one of this VLHUB_HOME that already runs.

    On a remote GPU server it stays on 127.0.0.1: forward the port from your computer with
    `ssh -L 8501:127.0.0.1:8501 HOST`, then open http://127.0.0.1:8501 in your browser.
    """
    if install_shortcut or remove_shortcut:
        from .. import shortcut

        if install_shortcut and remove_shortcut:
            raise click.UsageError("--install-shortcut and --remove-shortcut exclude each other")
        (shortcut.install if install_shortcut else shortcut.remove)(say)
        return
    from .. import launch as launcher

    launcher.validate_host(host, allow_remote)
    if allow_remote and host not in launcher.LOCAL_HOSTS:
        say(f"WARNING: the launcher will be reachable from other machines on {host}; "
            "anyone who reaches it can use your hub logins.")
    strict = ctx.get_parameter_source("port") is not ParameterSource.DEFAULT
    sys.exit(launcher.launch(host, port, not no_browser, say=say, strict_port=strict))
