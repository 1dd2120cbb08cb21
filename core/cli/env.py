"""``vlhub env create|use|check`` and ``vlhub doctor``: stage environments and what this machine has."""
from __future__ import annotations

from typing import Any

import click

from .. import stage
from ..output import emit_json, say, table, tqdm_progress


@click.group()
def env() -> None:
    """Stage environments, declared by plugins (built-in: train = xtuner + DeepSpeed; serve = LMDeploy)."""


@env.command(name="create")
@click.argument("name")
@click.option("--python", "base_python", help="Base interpreter for the new virtual environment.")
def env_create(name: str, base_python: str | None) -> None:
    """Create (or repair) stage environment NAME with its pinned set (`vlhub env check` lists the names)."""
    progress, close = tqdm_progress()
    try:
        status = stage.create(name, progress, base_python)
    finally:
        close()
    say(f"{name}: {'ready' if status.ready else 'missing ' + ', '.join(status.missing)} ({status.python})")


@env.command(name="use")
@click.argument("name")
@click.option("--python", required=True, help="Path of the existing environment's python.")
def env_use(name: str, python: str) -> None:
    """Adopt an existing environment (e.g. a tutorial's xtuner-env) as stage environment NAME after checking it."""
    status = stage.adopt(name, python)
    say(f"{name}: using {status.python} ({', '.join(f'{k} {v}' for k, v in status.versions.items())})")


@env.command(name="check")
@click.argument("names", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
def env_check(names: tuple[str, ...], as_json: bool) -> None:
    """Versions, GPU visibility and what is missing, per stage environment (NAMES, default: all); a warning
    when the environment's torchrun belongs to another Python."""
    report = [stage.check(n).public() for n in (names or stage.names())]
    if as_json:
        emit_json(report)
        return
    for item in report:
        state = "ready" if item["ready"] else "NOT READY"
        click.echo(f"{item['name']}: {state}  python={item['python'] or '-'}  gpu={item['gpu'] or 'none'}")
        for pkg, ver in item["versions"].items():
            click.echo(f"  {pkg} {ver or 'MISSING'}")
        if item["fix"]:
            click.echo(f"  fix: {item['fix']}")
        for warning in item["warnings"]:
            click.echo(f"  warning: {warning}")


# ------------------------------------------------------------------ doctor
@click.command()
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
def doctor(as_json: bool) -> None:
    """Check Python, git, git-lfs, GPU, stage environments and hub logins."""
    from ..doctor import diagnose

    report = diagnose()
    if as_json:
        emit_json(report)
        return
    for tool, ver in report["tools"].items():
        click.echo(f"{tool:10} {ver or 'NOT FOUND'}")
    click.echo(f"{'home':10} {report['home']['path']} ({'writable' if report['home']['writable'] else 'NOT WRITABLE'})")
    click.echo(f"{'gpu':10} {report['gpu'] or 'none visible'}")
    for name, item in report["environments"].items():
        click.echo(f"{'env ' + name:10} {'ready' if item['ready'] else 'not ready'}")
        for warning in item.get("warnings", []):
            click.echo(f"{'':10} warning: {warning}")
    for hub, tok in report["tokens"].items():
        click.echo(f"{'token ' + hub:10} {'found (' + tok['source'] + ')' if tok['found'] else 'not found'}")
    for fix in report["fixes"]:
        click.echo(f"fix: {fix}")
