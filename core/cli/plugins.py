"""``vlhub plugins``: loaded plugins, what each registered, and the ones that failed."""
from __future__ import annotations

import click

from .. import plugins
from ..output import emit_json


@click.command(name="plugins")
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
def plugins_cmd(as_json: bool) -> None:
    """List loaded plugins, what each registered, and plugins that failed (with the reason)."""
    report = plugins.host().describe()
    if as_json:
        emit_json(report)
        return
    click.echo(f"vlhub plugin API {report['plugin_api_version']}")
    for p in report["plugins"]:
        kind = "built-in" if p["builtin"] else p["distribution"]
        click.echo(f"{p['name']} {p['version']} ({kind})")
        for family, names in p["registered"].items():
            click.echo(f"  {plugins.FAMILIES[family][2]}: {', '.join(names)}")
        if p["hooks"]:
            click.echo(f"  hooks: {', '.join(p['hooks'])}")
    for f in report["failures"]:
        click.echo(f"FAILED {f['plugin']} ({f['stage']}): {f['error']}")


# ------------------------------------------------------------------ env
