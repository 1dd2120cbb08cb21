"""The data API that ``vlhub data`` and the launcher's Data page call.

Preparing runs a registered dataset plugin (found through :mod:`vlhub.core.plugins`);
validation, stats and the prepared-folder format are :mod:`vlhub.core.prepared`
(imported lazily, so ``import vlhub.core`` stays light). With ``trainer=NAME`` (``--trainer``),
:func:`validate` and :func:`prepare` also run that trainer's own record check
(:func:`vlhub.core.train.check_records`: what its dataset code accepts, with the model's tokenizer).
"""
from __future__ import annotations

import contextlib
import gc
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from . import plugins
from .errors import BadInput
from .types import PreparedData, Problem, ProgressCallback, to_dict


@dataclass
class TrainerChecked(PreparedData):
    """A prepare result with the trainer's check of its training file (``vlhub data prepare --trainer``).

    ``trainer`` is :func:`vlhub.core.train.check_records`'s report of ``train.json``: its ``problems``
    are records still in the file that the trainer refuses (``vlhub train`` names them too).
    """

    trainer: dict[str, Any] = field(default_factory=dict)


#: trainer problem kinds that make ``--strict`` fail (``image`` problems are the prepared data's own)
_TRAINER_REFUSED = ("record", "length")


def datasets() -> list[dict[str, Any]]:
    """Every registered dataset plugin, by name.

    Returns:
        ``[{"name": str, "description": str, "descriptions": {language: str} (the plugin's optional
        ``descriptions``), "options": [Option.public() dicts], "download": bool (whether
        ``vlhub data download`` can fetch it)}]``.
    """
    return [{"name": name, "description": ds.description, "descriptions": dict(getattr(ds, "descriptions", None) or {}),
             "options": [o.public() for o in ds.options],
             "download": callable(getattr(ds, "download", None))}
            for name, ds in sorted(plugins.registry("datasets").items())]


def prepare(name: str, source: Path, out: Path, options: Mapping[str, Any] | None = None, *,
            strict: bool = False, force: bool = False, min_kept: int | None = None,
            progress: ProgressCallback | None = None, trainer: str | None = None, model: Path | None = None,
            trainer_options: Mapping[str, Any] | None = None) -> PreparedData:
    """Convert ``source`` with dataset ``name`` into the prepared folder ``out``.

    Args:
        name: a registered dataset plugin.
        source: the downloaded dataset (folder or file).
        out: the prepared folder to create (layout: :mod:`vlhub.core.prepared.format`).
        options: option name -> value; text (``--opt KEY=VALUE``, form fields) is converted to
            each option's type (:func:`vlhub.core.options.resolve`). The plugin receives every
            option, typed, plus ``strict`` and ``force``.
        strict: fail instead of dropping bad records.
        force: replace an existing ``out`` that vlhub wrote.
        min_kept: fail (nothing written) when fewer records than this would be written; default:
            ``options["min_kept"]`` when given, else 1 (so an empty result fails); 0 accepts one.
        progress: receives ``check images`` and ``write`` events.
        trainer: also check the written ``train.json`` with this trainer's record check
            (:func:`vlhub.core.train.check_records`), with ``model``'s tokenizer and ``trainer_options``
            (e.g. ``max_length``).
        model: the base model folder the trainer check tokenises with (needed with ``trainer``).
        trainer_options: the trainer's options by name.
    Returns:
        :class:`PreparedData` (problems complete; :func:`result` caps them); with ``trainer`` a
        :class:`TrainerChecked` whose ``trainer`` holds the check's report.
    Raises:
        BadInput: an unknown dataset or option, a bad option value, a missing source, an ``out``
            that exists or overlaps the source, unreadable source files, a negative ``min_kept`` (exit code 2).
        vlhub.core.prepared.validate.ValidationFailed: ``strict`` and some record is bad; nothing
            is written (exit code 1).
        vlhub.core.prepared.validate.TooFewRecords: fewer than ``min_kept`` records survive; nothing
            is written, and the message says what the dropped records share (exit code 1).
        vlhub.core.prepared.validate.ValidationFailed: ``strict`` and the trainer refuses a record of
            ``train.json``; the folder just written is removed again (exit code 1).
        MissingDependency: the trainer check cannot run (e.g. no train environment); the folder stays.
    """
    from .options import resolve
    from .prepared.folder import PREPARE_OPTIONS, check_out

    dataset = plugins.get("datasets", name)
    source = Path(source).expanduser()
    if not source.exists():
        raise BadInput("data.source_missing", path=source, flag="--source")
    check_out(source, Path(out).expanduser(), force)
    given = {**(options or {}), "strict": strict, "force": force}
    if min_kept is not None:
        given["min_kept"] = min_kept
    opts = resolve((*dataset.options, *PREPARE_OPTIONS), given)
    if opts["min_kept"] < 0:
        raise BadInput(f"--min-kept {opts['min_kept']} is negative", "give a count of records (0 accepts an empty result)")
    if trainer:
        _check_trainer_args(trainer, model)
    with _gc_paused():
        prepared = dataset.prepare(source, Path(out).expanduser(), opts, progress)
    if not trainer:
        return prepared
    report = _trainer_report(trainer, model, prepared.out, trainer_options)  # on failure the folder stays
    if strict:
        try:
            _raise_trainer_refused(report, "train.json")
        except BaseException:
            shutil.rmtree(prepared.out, ignore_errors=True)  # the folder this call wrote: --strict leaves none
            raise
    return TrainerChecked(**vars(prepared), trainer=report)


def _check_trainer_args(trainer: str, model: Path | None) -> None:
    """Refuse ``--trainer`` without ``--model`` or naming an unknown trainer, before any work."""
    impl = plugins.get("trainers", trainer)
    if not callable(getattr(impl, "check_records", None)):
        raise BadInput(f"trainer {trainer!r} has no record check (no check_records method)",
                       "drop --trainer, or use a trainer that checks records (e.g. --trainer xtuner)")
    if model is None:
        raise BadInput(f"--trainer {trainer} needs --model: the check tokenises with the model's tokenizer",
                       "add --model MODEL_DIR (the base model you will train)")


def _trainer_report(trainer: str, model: Path | None, data: Path,
                    options: Mapping[str, Any] | None) -> dict[str, Any]:
    from . import train

    return train.check_records(model, data, dict(options or {}), trainer)


def _trainer_problems(report: dict[str, Any], kinds: tuple[str, ...] = _TRAINER_REFUSED) -> list[Problem]:
    """The trainer's refused records as :class:`Problem` s (field ``"TRAINER: FIELD"``)."""
    return [Problem(p["index"], p["reason"], f"{report['trainer']}: {p.get('field', '')}")
            for p in report.get("problems", []) if p.get("kind", "record") in kinds]


def _raise_trainer_refused(report: dict[str, Any], what: str) -> None:
    from .prepared.validate import Validation, ValidationFailed, describe

    problems = _trainer_problems(report)
    if problems:
        count = sum(n for kind, n in report.get("left_out", {}).items() if kind in _TRAINER_REFUSED) or len(problems)
        raise ValidationFailed(Validation([], problems, count, {}),
                               f"{count} of {report['records']} records of {what} cannot be trained by "
                               f"{report['trainer']} (first: {describe(problems[0])})",
                               "fix the records listed, or run without --strict (they are reported, and "
                               "`vlhub train` refuses them)")


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while records are read and converted.

    Records form no reference cycles, and the collector's passes over the growing heap
    of records cost almost as much as converting them.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def result(data: PreparedData) -> dict[str, Any]:
    """A prepare result as JSON-ready data: :class:`PreparedData`'s fields, paths as strings,
    ``problems`` as ``[{"index", "reason", "field"}]`` capped like ``report.json`` (and ``trainer``, the
    trainer check's report, for a :class:`TrainerChecked`)."""
    from .prepared.validate import MAX_PROBLEMS

    out = to_dict(data)
    out["problems"] = out["problems"][:MAX_PROBLEMS]
    return out


def validate(file: Path, images: Path, *, strict: bool = False,
             progress: ProgressCallback | None = None, trainer: str | None = None, model: Path | None = None,
             trainer_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Validate one LLaVA-style JSON/JSONL (or ``messages``) file against the image folder ``images``.

    Args:
        file: the JSON list or JSON Lines file.
        images: the folder the records' image paths are relative to.
        strict: raise when any record is bad (with ``trainer``: also when a sample is longer than
            the trainer's ``max_length``).
        progress: receives ``check images`` events.
        trainer: also run this trainer's record check (:func:`vlhub.core.train.check_records`): the
            records it refuses become problems (field ``"TRAINER: FIELD"``) and are not usable.
        model: the base model folder the trainer check tokenises with (needed with ``trainer``).
        trainer_options: the trainer's options by name (e.g. ``max_length``); ``image_root`` is ``images``.
    Returns:
        ``{"file", "image_root": str, "checked", "usable", "dropped": int, "problems": [{"index",
        "field", "reason"}] (the first 200), "stats": {...}}`` (``stats.json``'s keys, of the usable
        records: :func:`vlhub.core.prepared.stats.compute`); with ``trainer`` also ``"trainer"``: the
        check's report (``over_max_length``, ``over_max_length_worst``, ``problems`` ...).
    Raises:
        BadInput: ``images`` is not a folder; ``file`` is missing, not a regular file, not UTF-8,
            not JSON or no list.
        vlhub.core.prepared.validate.ValidationFailed: ``strict`` and some record is bad.
        vlhub.core.prepared.validate.TooFewRecords: no record is usable (or the file holds none):
            the message says what the bad records share, e.g. the image root their images are not under.
    """
    from .prepared import stats as stats_mod
    from .prepared.images import Checks
    from .prepared.records import load_items
    from .prepared.validate import ValidationFailed, check_kept, validate as check

    images = Path(images).expanduser().resolve()
    if not images.is_dir():
        what = "is not a folder" if images.exists() else "does not exist"
        raise BadInput(f"image folder {images} {what}", "pass the folder the image paths are relative to")
    if trainer:
        _check_trainer_args(trainer, model)
    with _gc_paused(), Checks(str(images)) as checks:
        items, rejected = load_items(Path(file).expanduser(), checks)
        checked = check(items, images, progress, rejected, checks)
    check_kept(checked, len(checked.items), image_root=images, source=str(file),
               root_fix="pass the folder the image paths are relative to: --images {root}")
    report = None
    if trainer:
        report = _trainer_report(trainer, model, Path(file).expanduser(),
                                 {**(trainer_options or {}), "image_root": str(images)})
        checked = _merge_trainer(checked, report, strict)
    if strict and checked.problems:
        raise ValidationFailed(checked)
    out = {"file": str(Path(file).resolve()), "image_root": str(images), **checked.summary(),
           "stats": stats_mod.compute({"all": checked.items}, checked.images)}
    if report is not None:
        out["trainer"] = report
    return out


def _merge_trainer(checked: Any, report: dict[str, Any], strict: bool) -> Any:
    """``checked`` (a :class:`vlhub.core.prepared.validate.Validation`) with the records the trainer refuses
    (and, with ``strict``, those longer than its ``max_length``) as problems, no longer usable."""
    from .prepared.validate import Validation

    found = _trainer_problems(report, ("record", "length", "image"))
    if strict:
        found += [Problem(r["index"], f"{r['tokens']} tokens, longer than --max-length {report.get('max_length')}: "
                          "it would be cut", f"{report['trainer']}: conversations")
                  for r in report.get("over_max_length_records", [])]
    known = {p.index for p in checked.problems}
    added = [p for p in found if p.index not in known]
    if not added:
        return checked
    bad = {p.index for p in added}
    problems = sorted([*checked.problems, *added], key=lambda p: p.index)
    return Validation([item for item in checked.items if item.index not in bad], problems,
                      checked.dropped + len(bad), checked.images, checked.image_problems)


def stats(folder: Path) -> dict[str, Any]:
    """The manifest counts and stored stats of a prepared folder (any format version).

    Args:
        folder: a prepared folder.
    Returns:
        ``{"folder", "dataset", "image_root": str, "format_version", "dropped": int}`` and the keys
        of its ``stats.json`` (:func:`vlhub.core.prepared.stats.compute`; none when it is missing).
    Raises:
        BadInput: not a complete prepared folder, a damaged ``prepared.json`` or ``stats.json``, or
            a folder written by a newer vlhub.
    """
    from .fsutil import read_json
    from .prepared.format import load_manifest

    manifest = load_manifest(folder)
    return {"folder": str(manifest.folder), "dataset": manifest.dataset, "image_root": str(manifest.image_root),
            "format_version": manifest.format_version, "dropped": manifest.dropped,
            **read_json(manifest.folder / "stats.json", {}, expect=dict)}


def preview(folder: Path, split: str = "train", n: int = 5) -> list[dict[str, Any]]:
    """The first ``n`` records of a split, with image paths made absolute (for display).

    Args:
        folder: a prepared folder (any format version).
        split: a file of the manifest: ``train``, ``val`` or ``val_mc``.
        n: how many records.
    Returns:
        The records as stored, each with ``"images"``: its image paths joined to the image root.
    Raises:
        BadInput: not a prepared folder (see :func:`stats`), or no such split.
    """
    from .fsutil import read_json
    from .prepared.format import load_manifest
    from .prepared.records import record_images

    manifest = load_manifest(folder)
    if split not in manifest.files:
        raise BadInput(f"no split {split!r} in {folder} (splits: {', '.join(manifest.files)})",
                       "choose one of the listed splits")
    root = manifest.image_root
    rows = read_json(manifest.files[split], [], expect=list)[:n]
    return [{**row, "images": [str(root / ref) for ref in record_images(row) if isinstance(ref, str)]}
            for row in rows if isinstance(row, dict)]


def download(name: str, out: Path, *, token: str | None = None,
             progress: ProgressCallback | None = None) -> Path:
    """Download dataset ``name`` into ``out``.

    Args:
        name: a registered dataset plugin with a ``download`` method.
        out: the folder to download into.
        token: the hub token; default: the user's login (``HF_TOKEN``, ``hf auth login``).
        progress: receives ``download`` events.
    Returns:
        The source folder to give ``vlhub data prepare --source``.
    Raises:
        BadInput: an unknown dataset, or one vlhub cannot download.
        VlhubError: the hub refused or failed (the plugin's message).
    """
    from .secrets import find_token

    dataset = plugins.get("datasets", name)
    fetch = getattr(dataset, "download", None)
    if not callable(fetch):
        can = ", ".join(d["name"] for d in datasets() if d["download"]) or "none"
        raise BadInput(f"dataset {name!r} cannot be downloaded by vlhub (downloadable: {can})",
                       "get the files yourself and run `vlhub data prepare`")
    return fetch(Path(out).expanduser(), token or find_token("hf").value or None, progress)
