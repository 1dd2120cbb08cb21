"""The prepared-data folder that every dataset plugin writes.

Layout of ``OUT/`` (built in a temporary sibling and renamed into place, so an
interrupted prepare leaves no folder; ``prepared.json`` is written last)::

    train.json      LLaVA-style list: {"id", "image": str | [str] (optional), "conversations":
                    [{"from": "human" | "gpt", "value"}]}, image paths relative to image_root
    val.json        the same, validation split (only when there is one)
    val_mc.json     validation multiple-choice items for `vlhub eval`: {"id", "subset",
                    "image", "question", "choices", "answer" (int index), "prompt"}
    report.json     validation: checked / usable / dropped counts, problems (index, field, reason)
    stats.json      records, images, turns, answer lengths, categories, duplicate images
    prepared.json   manifest: dataset, source, image_root (absolute), files, records, dropped,
                    options, vlhub_version, created

Images are not copied: ``image_root`` points into the source folder.
"""
from __future__ import annotations

import contextlib
import json
import multiprocessing
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

from vlhub.core import __version__
from vlhub.core.errors import BadInput
from vlhub.core.fsutil import atomic_dir, check_replaceable, atomic_write_json, atomic_write_text, read_json, timestamp
from vlhub.core.types import PreparedData, Progress, ProgressCallback

from .images import can_fork
from .split import Split
from .stats import compute
from .validate import Validation, ValidationFailed

MANIFEST = "prepared.json"
FORMAT = "vlhub.prepared/1"
#: below this many records a forked writer costs more than it saves
FORK_MIN = 5000


def check_out(source: Path, out: Path, force: bool) -> None:
    """Refuse an output folder that exists (without ``force``) or overlaps the source folder."""
    source, out = Path(source).resolve(), Path(out).resolve()
    src_dir = source if source.is_dir() else source.parent
    if out == src_dir or out.is_relative_to(src_dir) or src_dir.is_relative_to(out):
        raise BadInput(f"the output folder {out} overlaps the source folder {src_dir}",
                       "choose an --out outside the source folder (the source is never modified)")
    check_replaceable(out, MANIFEST, force=force)


def finish(out: Path, *, dataset: str, source: Path, image_root: Path, validation: Validation, split: Split,
           options: Mapping[str, Any], progress: ProgressCallback | None = None) -> PreparedData:
    """Apply ``strict``, then write the prepared folder atomically (``prepared.json`` last)."""
    if options.get("strict") and validation.problems:
        raise ValidationFailed(validation)
    force = bool(options.get("force"))
    check_out(source, out, force)
    out = Path(out).resolve()
    splits = {"train": split.train, **({"val": split.val} if split.val else {})}
    records = {name: len(items) for name, items in splits.items()}
    files = {name: out / f"{name}.json" for name in splits}
    report = {**validation.summary(), "left_out_straddling_splits": len(split.straddling)}
    manifest = {"format": FORMAT, "dataset": dataset, "source": str(Path(source).resolve()),
                "image_root": str(Path(image_root).resolve()), "files": {k: str(v) for k, v in files.items()},
                "records": records, "dropped": validation.dropped, "left_out": len(split.straddling),
                "options": {k: v for k, v in options.items() if k not in ("strict", "force")},
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


def load_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a complete prepared folder; :class:`BadInput` when there is none."""
    manifest = read_json(Path(folder) / MANIFEST, expect=dict)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BadInput(f"{folder} is not a prepared dataset folder (no complete {MANIFEST})",
                       "run `vlhub data prepare NAME --source DIR --out DIR` first")
    return manifest
