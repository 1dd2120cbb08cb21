"""The writer of the prepared-data folder (layout and ``prepared.json`` schema: :mod:`.format`).

The folder is built in a temporary sibling and renamed into place, so an interrupted
prepare leaves no folder; ``prepared.json`` is written last.
"""
from __future__ import annotations

import contextlib
import json
import multiprocessing
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

from vlhub.core import __version__
from vlhub.core.boundary import require_free_space
from vlhub.core.errors import BadInput
from vlhub.core.fsutil import atomic_dir, atomic_write_json, atomic_write_text, check_replaceable, timestamp
from vlhub.core.options import Option
from vlhub.core.types import Progress, ProgressCallback

from .format import FORMAT, FORMAT_VERSION, MANIFEST, PreparedData
from .images import can_fork
from .split import Split
from .stats import compute
from .validate import Validation, ValidationFailed, check_kept

#: options every dataset's ``prepare`` receives besides its own (``vlhub data prepare --strict/--force``)
PREPARE_OPTIONS = (
    Option("strict", "Fail (nothing written) if any record is bad.", bool, False),
    Option("force", "Replace an existing output folder that vlhub wrote.", bool, False),
    Option("min_kept", "Fail (nothing written) when fewer records than this are kept (0: accept an empty result).",
           int, 1),
)
#: below this many records a forked writer costs more than it saves
FORK_MIN = 5000


def check_out(source: Path, out: Path, force: bool) -> None:
    """Refuse an output folder that exists (without ``force``) or overlaps the source folder.

    Args:
        source: the source folder or file (a file's folder is what must not overlap).
        out: the prepared folder to write.
        force: whether an existing ``out`` that vlhub wrote may be replaced.
    Raises:
        BadInput: ``out`` is, contains or lies inside the source folder; ``out`` exists and is not
            empty without ``force``; or it holds files vlhub did not write (no ``prepared.json``).
    """
    source, out = Path(source).resolve(), Path(out).resolve()
    src_dir = source if source.is_dir() else source.parent
    if out == src_dir or out.is_relative_to(src_dir) or src_dir.is_relative_to(out):
        raise BadInput(f"the output folder {out} overlaps the source folder {src_dir}",
                       "choose an --out outside the source folder (the source is never modified)")
    check_replaceable(out, MANIFEST, force=force)


def finish(out: Path, *, dataset: str, source: Path, image_root: Path, validation: Validation, split: Split,
           options: Mapping[str, Any], progress: ProgressCallback | None = None, root_fix: str = "") -> PreparedData:
    """Apply ``min_kept`` and ``strict``, then write the prepared folder atomically (``prepared.json`` last).

    Args:
        out: the prepared folder.
        dataset: the plugin's name, recorded in the manifest.
        source: the source folder or file, recorded.
        image_root: the folder the records' image paths are relative to, recorded (absolute).
        validation: what :func:`vlhub.core.prepared.validate.validate` returned.
        split: the split of the usable items; ``split.val`` items with ``mc`` fill ``val_mc.json``.
        options: the typed options; ``strict``, ``force`` and ``min_kept`` (:data:`PREPARE_OPTIONS`) are
            obeyed, the others recorded.
        progress: receives ``write`` events (files written / total).
        root_fix: how the user gives this plugin another image root, ``{root}`` where the folder goes
            (e.g. ``"pass the folder the image paths are relative to: --opt image_root={root}"``); said
            when the records were dropped because their images are not under ``image_root``.
    Returns:
        :class:`PreparedData` (``problems`` complete, not capped).
    Raises:
        ValidationFailed: ``strict`` and some record failed validation (nothing is written).
        TooFewRecords: fewer than ``min_kept`` (default 1) records would be written: nothing is
            written, not even an empty folder (:func:`~.validate.check_kept`).
        BadInput: ``out`` may not be written (:func:`check_out`); ``min_kept`` is negative.
    """
    min_kept = options.get("min_kept", 1)
    if min_kept is None or min_kept < 0:
        raise BadInput(f"--min-kept {min_kept} is negative", "give a count of records (0 accepts an empty result)")
    check_kept(validation, len(split.train) + len(split.val), min_kept, image_root=image_root, root_fix=root_fix,
               source=str(source))
    if options.get("strict") and validation.problems:
        raise ValidationFailed(validation)
    force = bool(options.get("force"))
    check_out(source, out, force)
    out = Path(out).resolve()
    splits = {"train": split.train, **({"val": split.val} if split.val else {})}
    records = {name: len(items) for name, items in splits.items()}
    files = {name: out / f"{name}.json" for name in splits}
    report = {**validation.summary(), "left_out_straddling_splits": len(split.straddling)}
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "dataset": dataset,
                "source": str(Path(source).resolve()), "image_root": str(Path(image_root).resolve()),
                "files": {k: str(v) for k, v in files.items()},
                "records": records, "dropped": validation.dropped, "left_out": len(split.straddling),
                "options": {k: v for k, v in options.items() if k not in {o.name for o in PREPARE_OPTIONS}},
                "vlhub_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(timestamp()))}
    mc = [item.mc for item in split.val if item.mc]
    if mc:
        manifest["files"]["val_mc"] = str(out / "val_mc.json")
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    report_progress = progress or (lambda event: None)
    report_progress(Progress("write", 0, len(splits) + 3, "file"))
    lists = {f"{name}.json": [item.record for item in items] for name, items in splits.items()}
    if mc:
        lists["val_mc.json"] = mc
    # the JSON files it writes (images are referenced, never copied): about 2x their records' text, plus a margin
    needed = sum(len(json.dumps(rows, ensure_ascii=False)) for rows in lists.values()) * 2 + 8 * 1024 * 1024
    require_free_space(out.parent, needed, f"the prepared folder {out}")
    with atomic_dir(out, force=force, marker=MANIFEST) as tmp:
        with _writing(tmp, lists):  # the record files are written while the stats are computed
            stats = compute(splits, validation.images)
        report_progress(Progress("write", len(splits), len(splits) + 3, "file"))
        atomic_write_json(tmp / "report.json", report)
        atomic_write_json(tmp / "stats.json", stats)
        atomic_write_json(tmp / MANIFEST, manifest)
        report_progress(Progress("write", len(splits) + 3, len(splits) + 3, "file"))
    return PreparedData(out=out, files=files, image_root=Path(image_root).resolve(), records=records,
                        dropped=validation.dropped, problems=validation.problems, stats=stats)


@contextlib.contextmanager
def _writing(folder: Path, lists: Mapping[str, list[dict[str, Any]]]) -> Iterator[None]:
    """Write each list of records into ``folder`` while the block runs, in a forked child.

    In this process instead when forking is unsafe (a threaded process) or does not pay
    (fewer than :data:`FORK_MIN` records). A failed child's files are written again here,
    so that its error is raised with its message.
    """
    if sum(map(len, lists.values())) < FORK_MIN or not can_fork():
        _write_lists(folder, lists)
        yield
        return
    child = multiprocessing.get_context("fork").Process(target=_write_lists, args=(folder, lists), daemon=True)
    child.start()
    try:
        yield
    finally:
        child.join()
    if child.exitcode:
        _write_lists(folder, lists)


def _write_lists(folder: Path, lists: Mapping[str, list[dict[str, Any]]]) -> None:
    for name, records in lists.items():
        _write_records(folder / name, records)


def _write_records(path: Path, records: list[dict[str, Any]]) -> None:
    """A JSON list with one record per line: readable, and fast to write for large sets."""
    lines = ",\n".join(map(json.JSONEncoder(ensure_ascii=False).encode, records))
    atomic_write_text(path, f"[\n{lines}\n]\n" if records else "[]\n")
