"""``vlhub publish``: send a model folder to one or more hubs (logic in :mod:`vlhub.core.publish`).

Besides the common flags, every option a publisher declares is a flag ``--NAME``
(:class:`~.plugins.PluginOptionsCommand`), and ``--opt KEY=VALUE`` reaches any of them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..output import emit_json, say, table, tqdm_progress
from .plugins import PluginOptionsCommand


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)


@click.command(cls=PluginOptionsCommand, family="publishers")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--to", "targets", multiple=True, required=True, metavar="NAME:TARGET",
              help="hf:ORG/NAME, modelscope:ORG/NAME, openxlab:OWNER/NAME, git:URL or a plugin's NAME:TARGET "
                   "(repeatable; `vlhub plugins` lists the publishers).")
@click.option("--private", is_flag=True, help="Create new repositories as private; an existing public one is "
              "refused unless --make-private.")
@click.option("--dry-run", is_flag=True, help="Only preflight: list what would be sent, send nothing.")
@click.option("--via", type=click.Choice(["api", "git"]), help="hf/modelscope: the SDK (default) or git + LFS.")
@click.option("--message", "-m", help="Commit message.")
@click.option("--require-keyword", metavar="WORD", help="Refuse unless each repository name contains WORD.")
@click.option("--overwrite-card", is_flag=True, help="Replace a README.md on the remote that vlhub did not write.")
@click.option("--follow-symlinks", is_flag=True,
              help="Send the files that symbolic links leading outside the folder point to (refused otherwise).")
@click.option("--skip-serve-check", is_flag=True,
              help="Publish even though the folder's last `vlhub check` failed (refused otherwise).")
@click.option("--opt", "opts", multiple=True, metavar="KEY=VALUE",
              help="A publisher's own option (repeatable); each is also a flag --NAME of its own.")
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
@click.pass_context
def publish(ctx: click.Context, folder: Path, targets: tuple[str, ...], private: bool, dry_run: bool,
            via: str | None, message: str | None, require_keyword: str | None, overwrite_card: bool,
            follow_symlinks: bool, skip_serve_check: bool, opts: tuple[str, ...], as_json: bool,
            **plugin_options: Any) -> None:
    """Publish a model folder to Hugging Face, ModelScope, OpenXLab, any git + LFS remote or a plugin's target.

    Every target is checked first (files, LFS, token, name); a failing target does not
    stop the others. Rerunning resumes an interrupted upload and sends only what changed.
    """
    from .. import publish as core

    options = {"private": private, "via": via, "message": message, "require_keyword": require_keyword,
               "overwrite_card": overwrite_card, "follow_symlinks": follow_symlinks,
               "skip_serve_check": skip_serve_check}
    options.update(ctx.command.given(plugin_options, [t.partition(":")[0] for t in targets], opts))
    progress, close = tqdm_progress(enabled=not as_json)

    def attached(run) -> None:  # type: ignore[no-untyped-def]
        say(f"already running as run {run.id} (pid {run.data.get('pid')}); following it")

    try:
        report = core.publish(folder, list(targets), options, dry_run=dry_run, progress=progress,
                              on_attach=attached)
    finally:
        close()
    if as_json:
        emit_json(report.public())
    elif report.followed is not None:
        for item in report.public()["targets"]:
            outcome = item.get("result") or {}
            say(f"Error: {item['error']}" if item.get("error") else
                f"{item.get('target')}: {outcome.get('url', '')} (sent by run {report.followed.get('id')})")
    else:
        for result in report.results:
            _show(result, dry_run)
    if not report.ok:
        raise SystemExit(report.exit_code)


def _show(result, dry_run: bool) -> None:  # type: ignore[no-untyped-def]
    pre = result.preflight
    if pre is not None and pre.files:
        rows = [{"file": f.path, "size": _human(f.size), "lfs": "LFS" if f.lfs else "",
                 "remote": "same (skipped)" if f.on_remote else "send"} for f in pre.files]
        say(f"{result.target}:\n" + table(rows, ["file", "size", "lfs", "remote"]))
        say(f"  to send: {_human(pre.bytes_to_send)}")
    if pre is not None and pre.checks.get("visibility"):
        from ..publishing.access import VISIBILITY

        say(f"  repository: {VISIBILITY.get(pre.checks['visibility'], pre.checks['visibility'])}")
    if pre is not None:
        for warning in pre.checks.get("warnings") or []:
            say(warning)
        base = pre.checks.get("card_base_model")
        if base:
            say(f"  model card: base model {base} ({pre.checks.get('card_base_model_from', '')})")
        for note in pre.checks.get("card_notes") or []:
            say(f"  {note}")
        if pre.checks.get("serve_check"):
            from ..serve_check import summary

            say(f"  {summary(pre.checks['serve_check'])}")
    if result.error:
        say(f"Error: {result.error}")
    elif result.published is not None:
        pub = result.published
        state = f"commit {pub.commit[:12]}" if pub.changed else "unchanged, no new commit"
        say(f"{result.target}: {pub.url} ({state}; sent {_human(pub.bytes_sent)} in {pub.files_sent} files)")
    elif dry_run:
        say(f"{result.target}: ready (dry run, nothing sent)")
