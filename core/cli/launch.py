"""``vlhub launch``: start the Streamlit launcher (127.0.0.1 unless --allow-remote)."""
from __future__ import annotations

import sys

import click

from ..output import say


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8501, show_default=True, help="Port (0 or taken: a free one).")
@click.option("--no-browser", is_flag=True, help="Do not open a browser.")
@click.option("--allow-remote", is_flag=True, help="Allow a --host other than this machine.")
def launch(host: str, port: int, no_browser: bool, allow_remote: bool) -> None:
    """Start the Streamlit launcher."""
    from .. import launch as launcher

    launcher.validate_host(host, allow_remote)
    if allow_remote and host not in launcher.LOCAL_HOSTS:
        say(f"WARNING: the launcher will be reachable from other machines on {host}; "
            "anyone who reaches it can use your hub logins.")
    sys.exit(launcher.launch(host, port, not no_browser, say=say))
