"""The ``vlhub`` command. Every verb calls the same core or plugin function the launcher uses."""
from __future__ import annotations

import sys
import traceback
from typing import Any

import click

from . import __version__, cli_chat, cli_convert, cli_data, cli_publish, cli_train, plugins, runs, stage
from .boundary import user_error
from .output import emit_json, say, table, tqdm_progress
from .secrets import setup_logging


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


# ------------------------------------------------------------------ plugins
@cli.command(name="plugins")
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
@cli.group()
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
    """Versions, GPU visibility and what is missing, per stage environment (NAMES, default: all)."""
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


# ------------------------------------------------------------------ doctor
@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
def doctor(as_json: bool) -> None:
    """Check Python, git, git-lfs, GPU, stage environments and hub logins."""
    from .doctor import diagnose

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
    for hub, tok in report["tokens"].items():
        click.echo(f"{'token ' + hub:10} {'found (' + tok['source'] + ')' if tok['found'] else 'not found'}")
    for fix in report["fixes"]:
        click.echo(f"fix: {fix}")


# ------------------------------------------------------------------ runs
def _run_row(run: runs.Run) -> dict[str, Any]:
    return {"id": run.id, "kind": run.kind, "status": run.status, "created": run.data.get("created", ""),
            "dir": str(run.dir)}


@cli.command(name="runs")
@click.option("--kind", help="Only runs of this kind (train, eval, publish, or a launcher job's action: "
                              "data.prepare, convert, env.create, train.plan, ...).")
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
def runs_cmd(kind: str | None, as_json: bool) -> None:
    """List runs in the vlhub workspace, newest first."""
    from .lifecycle import refresh

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


@cli.group(name="run")
def run_group() -> None:
    """Inspect or stop one run."""


@run_group.command(name="show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
def run_show(run_id: str, as_json: bool) -> None:
    """Show a run's state (run.json plus live status)."""
    from .lifecycle import refresh

    run = refresh(runs.load_run(run_id))
    if as_json:
        emit_json(run.data)
        return
    for key, value in run.data.items():
        click.echo(f"{key}: {value}")


# ------------------------------------------------------------------ launch
@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8501, show_default=True, help="Port (0 or taken: a free one).")
@click.option("--no-browser", is_flag=True, help="Do not open a browser.")
@click.option("--allow-remote", is_flag=True, help="Allow a --host other than this machine.")
def launch(host: str, port: int, no_browser: bool, allow_remote: bool) -> None:
    """Start the Streamlit launcher."""
    from . import launch as launcher

    launcher.validate_host(host, allow_remote)
    if allow_remote and host not in launcher.LOCAL_HOSTS:
        say(f"WARNING: the launcher will be reachable from other machines on {host}; "
            "anyone who reaches it can use your hub logins.")
    sys.exit(launcher.launch(host, port, not no_browser, say=say))


for _command in (cli_data.data, cli_train.train, cli_convert.convert, cli_convert.templates,
                 cli_chat.chat, cli_chat.eval_cmd, cli_publish.publish):
    cli.add_command(_command)
run_group.add_command(cli_train.stop)


def main() -> None:
    """Console-script entry point."""
    plugins.host().call_commands(cli)
    try:
        cli.main(prog_name="vlhub", standalone_mode=True)
    except Exception:  # only reached with --debug
        traceback.print_exc()
        sys.exit(1)
