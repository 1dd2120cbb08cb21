"""``vlhub runs`` and ``vlhub run show``: the run folders under ``$VLHUB_HOME/runs``."""
from __future__ import annotations

from typing import Any

import click

from .. import runs
from ..output import emit_json, say, table


def _run_row(run: runs.Run) -> dict[str, Any]:
    return {"id": run.id, "kind": run.kind, "status": run.status, "created": run.data.get("created", ""),
            "dir": str(run.dir)}


@click.command(name="runs")
@click.option("--kind", help="Only runs of this kind (train, eval, publish, or a launcher job's action: "
                              "data.prepare, convert, env.create, train.plan, ...).")
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
def runs_cmd(kind: str | None, as_json: bool) -> None:
    """List runs in the vlhub workspace, newest first."""
    from ..lifecycle import refresh

    rows = [_run_row(refresh(r)) for r in runs.list_runs(kind)]
    damaged = runs.damaged_runs()
    rows += [{"id": folder.name, "kind": "", "status": "damaged", "created": "", "dir": str(folder), "error": error}
             for folder, error in damaged]
    if as_json:
        emit_json(rows)
        return
    if rows:
        click.echo(table(rows, ["id", "kind", "status", "created"]))
    else:
        say("no runs yet")
    for _, error in damaged:
        say(f"Warning: {error}")


@click.group(name="run")
def run_group() -> None:
    """Inspect or stop one run."""


@run_group.command(name="show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
def run_show(run_id: str, as_json: bool) -> None:
    """Show a run's state (run.json plus live status)."""
    from ..lifecycle import refresh

    run = refresh(runs.load_run(run_id))
    if as_json:
        emit_json(run.data)
        return
    for key, value in run.data.items():
        click.echo(f"{key}: {value}")
