"""``vlhub data ...``: prepare, validate, stats and download of datasets (logic in :mod:`.data`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, TypeVar

import click

from .. import data as api
from ..options import flag, parse_pairs
from ..output import emit_json, say, tqdm_progress
from ..types import Problem

T = TypeVar("T")
SHOWN = 10


def _with_progress(work: Callable[[Any], T]) -> T:
    progress, close = tqdm_progress()
    try:
        return work(progress)
    finally:
        close()


def _strict_json(as_json: bool, work: Callable[[], T]) -> T:
    """Run ``work``; on a validation failure (``--strict``, or too few records kept) print its report
    (as JSON too with ``--json``) and the first problems, then fail."""
    from ..prepared.validate import ValidationFailed

    try:
        return work()
    except ValidationFailed as exc:
        if as_json:
            emit_json({"ok": False, "error": exc.one_line(), **exc.validation.summary()})
        _show_problems(exc.validation.problems)
        raise


def _show_problems(problems: list[Problem]) -> None:
    from ..prepared.validate import describe

    if problems:
        say(f"problems (first {min(SHOWN, len(problems))} of {len(problems)}):")
        for problem in problems[:SHOWN]:
            say(f"  {describe(problem)}")


def _trainer_flags(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--trainer NAME --model DIR [--max-length N]``: also run that trainer's own record check."""
    for option in reversed([
        click.option("--trainer", default=None, metavar="NAME",
                     help="Also check every record the way this trainer reads it (e.g. xtuner; needs --model)."),
        click.option("--model", type=click.Path(path_type=Path), default=None,
                     help="With --trainer: the base model folder (its tokenizer counts the tokens)."),
        click.option("--max-length", type=int, default=None, metavar="N",
                     help="With --trainer: the trainer's --max-length (longer samples are reported; "
                          "--strict fails on them)."),
    ]):
        command = option(command)
    return command


def _trainer_options(max_length: int | None) -> dict[str, Any]:
    return {} if max_length is None else {"max_length": max_length}


def _show_trainer(report: dict[str, Any], list_problems: bool) -> None:
    """The trainer check's summary (and, for ``prepare``, the records it refuses)."""
    from ..prepared.validate import describe

    say(f"{report['trainer']} check: {report.get('kept', '?')} of {report.get('records', '?')} records trainable"
        + (f", {report['problem_count']} refused" if report.get("problem_count") else ""))
    worst = report.get("over_max_length_worst")
    if worst:
        say(f"  {report['over_max_length']} samples exceed --max-length {report['max_length']} and would be cut "
            f"(worst: record {worst['index']}, {worst['tokens']} tokens, {worst['over']} over)")
    if list_problems:
        for problem in report.get("problems", [])[:SHOWN]:
            say(f"  {describe(Problem(problem['index'], problem['reason'], problem.get('field', '')))}")


def _extra_options(name: str, args: list[str]) -> dict[str, str]:
    """Explicit plugin flags (``--val-fraction 0.2``, ``--with-choices``) as option values."""
    declared = {o["name"]: o for d in api.datasets() if d["name"] == name for o in d["options"]}
    found: dict[str, str] = {}
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        key, sep, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        key = key.replace("-", "_")
        if key not in declared:
            raise click.UsageError(f"unexpected argument {arg!r} (options of {name}: "
                                   f"{', '.join(map(flag, declared)) or 'none'})")
        if not sep:
            bare_flag = declared[key]["type"] == "bool" and (not rest or rest[0].startswith("--"))
            value = "true" if bare_flag else rest.pop(0) if rest else ""
        found[key] = value
    return found


class PrepareCommand(click.Command):
    """``vlhub data prepare``, whose ``--help`` ends with every dataset plugin and its options."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        with formatter.section("Datasets and their options (--opt KEY=VALUE, or --KEY VALUE)"):
            for row in api.datasets():
                formatter.write_text(f"{row['name']}: {row['description']}")
                rows = [(f"{flag(o['name'])} {o['type'].upper()}",
                         o["help"] + (f" (default: {o['default']})" if o["default"] not in (None, "", ()) else ""))
                        for o in row["options"]]
                if rows:
                    with formatter.indentation():
                        formatter.write_dl(rows)


@click.group()
def data() -> None:
    """Prepare datasets in XTuner's InternVL format, validate them, show stats."""


@data.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
def list_cmd(as_json: bool) -> None:
    """List dataset plugins and their options."""
    rows = api.datasets()
    if as_json:
        emit_json(rows)
        return
    from .. import plugins

    registry = plugins.registry("datasets")
    for row in rows:
        click.echo(f"{row['name']}: {row['description']}")
        for option in row["options"]:
            click.echo(f"  {flag(option['name'])} ({option['type']}, default {option['default']!r}): "
                       f"{option['help']}")
        for secret in getattr(registry.get(row["name"]), "secrets", None) or ():
            click.echo(f"  secret {secret.name}: ${', $'.join(secret.env)}"
                       + (f" ({secret.description})" if secret.description else ""))


@data.command(cls=PrepareCommand, context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("name")
@click.option("--source", required=True, type=click.Path(path_type=Path), help="The source folder (or file).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="The prepared folder to create.")
@click.option("--opt", "opts", multiple=True, metavar="KEY=VALUE", help="A plugin option (repeatable).")
@click.option("--strict", is_flag=True, help="Fail (exit 1, nothing written) if any record is bad.")
@click.option("--force", is_flag=True, help="Replace an existing --out folder.")
@click.option("--min-kept", type=int, default=None, metavar="N",
              help="Fail (exit 1, nothing written) when fewer than N records are kept (default 1; 0 accepts none).")
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
@_trainer_flags
@click.pass_context
def prepare(ctx: click.Context, name: str, source: Path, out: Path, opts: tuple[str, ...], strict: bool,
            force: bool, min_kept: int | None, as_json: bool, trainer: str | None, model: Path | None,
            max_length: int | None) -> None:
    """Convert the dataset NAME in --source into LLaVA-style train/val JSON in --out.

    Plugin options go as --opt KEY=VALUE or as flags (e.g. --val-fraction 0.2);
    each dataset's options are listed below (and by `vlhub data list`).
    With --trainer NAME --model DIR, train.json is then checked the way that trainer reads it.
    """
    options = {**_extra_options(name, ctx.args), **parse_pairs(opts)}
    result = _strict_json(as_json, lambda: _with_progress(
        lambda progress: api.prepare(name, source, out, options, strict=strict, force=force, min_kept=min_kept,
                                     progress=progress, trainer=trainer, model=model,
                                     trainer_options=_trainer_options(max_length))))
    if as_json:
        emit_json(api.result(result))
    splits = ", ".join(f"{k} {v}" for k, v in result.records.items())
    say(f"{name}: {sum(result.records.values())} records ({splits}), {result.dropped} dropped -> {result.out}")
    _show_problems(result.problems)
    if isinstance(result, api.TrainerChecked):
        _show_trainer(result.trainer, list_problems=True)


@data.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--images", required=True, type=click.Path(path_type=Path), help="Folder image paths are relative to.")
@click.option("--strict", is_flag=True, help="Exit 1 if any record is bad.")
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
@_trainer_flags
def validate(file: Path, images: Path, strict: bool, as_json: bool, trainer: str | None, model: Path | None,
             max_length: int | None) -> None:
    """Validate a LLaVA-style JSON/JSONL FILE and its images.

    With --trainer NAME --model DIR, also check every record the way that trainer reads it:
    the records it refuses are bad, with their index and reason.
    """
    report = _strict_json(as_json, lambda: _with_progress(
        lambda progress: api.validate(file, images, strict=strict, progress=progress, trainer=trainer, model=model,
                                      trainer_options=_trainer_options(max_length))))
    if as_json:
        emit_json(report)
    say(f"{report['checked']} records: {report['usable']} usable, {report['dropped']} bad")
    _show_problems([Problem(**p) for p in report["problems"]])
    if "trainer" in report:
        _show_trainer(report["trainer"], list_problems=False)


@data.command()
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--preview", default=0, show_default=True, help="Also show the first N train records.")
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
def stats(folder: Path, preview: int, as_json: bool) -> None:
    """Statistics of a prepared folder: records, images, turns, answer lengths, categories, duplicates."""
    report = api.stats(folder)
    if preview:
        report["preview"] = api.preview(folder, "train", preview)
    if as_json:
        emit_json(report)
        return
    click.echo(f"{report['dataset']}: {report['records_total']} records "
               f"({', '.join(f'{k} {v}' for k, v in report['records'].items())}), {report['images']} images, "
               f"{report['dropped']} dropped")
    click.echo(f"turns: {report['turns']}")
    click.echo(f"answer length: {report['answer_length']}")
    for key, counts in report["categories"].items():
        click.echo(f"{key}: {', '.join(f'{v} {n}' for v, n in counts.items())}")
    dup = report["duplicate_images"]
    click.echo(f"duplicate images: {dup['groups']} groups ({dup['images']} images)")
    for row in report.get("preview", []):
        click.echo(f"- {row['id']} {row['images']}: {row['conversations']}")


@data.command()
@click.argument("name")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Folder to download into.")
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
def download(name: str, out: Path, as_json: bool) -> None:
    """Download dataset NAME from its hub (FoodieQA is gated: request access first)."""
    folder = _with_progress(lambda progress: api.download(name, out, progress=progress))
    if as_json:
        emit_json({"dataset": name, "source": str(folder)})
    say(f"{name}: downloaded to {folder}; next: vlhub data prepare {name} --source {folder} --out DIR")
