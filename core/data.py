"""The data API that ``vlhub data`` and the launcher's Data page call.

Preparing runs a registered dataset plugin (found through :mod:`vlhub.core.plugins`);
validation, stats and the prepared-folder format are :mod:`vlhub.core.prepared`
(imported lazily, so ``import vlhub.core`` stays light).
"""
from __future__ import annotations

import contextlib
import gc
from pathlib import Path
from typing import Any, Iterator, Mapping

from . import plugins
from .errors import BadInput
from .types import PreparedData, ProgressCallback, to_dict


def datasets() -> list[dict[str, Any]]:
    """Every registered dataset plugin, by name.

    Returns:
        ``[{"name": str, "description": str, "options": [Option.public() dicts], "download": bool
        (whether ``vlhub data download`` can fetch it)}]``.
    """
    return [{"name": name, "description": ds.description, "options": [o.public() for o in ds.options],
             "download": callable(getattr(ds, "download", None))}
            for name, ds in sorted(plugins.registry("datasets").items())]


def prepare(name: str, source: Path, out: Path, options: Mapping[str, Any] | None = None, *,
            strict: bool = False, force: bool = False, min_kept: int | None = None,
            progress: ProgressCallback | None = None) -> PreparedData:
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
    Returns:
        :class:`PreparedData` (problems complete; :func:`result` caps them).
    Raises:
        BadInput: an unknown dataset or option, a bad option value, a missing source, an ``out``
            that exists or overlaps the source, unreadable source files, a negative ``min_kept`` (exit code 2).
        vlhub.core.prepared.validate.ValidationFailed: ``strict`` and some record is bad; nothing
            is written (exit code 1).
        vlhub.core.prepared.validate.TooFewRecords: fewer than ``min_kept`` records survive; nothing
            is written, and the message says what the dropped records share (exit code 1).
    """
    from .options import resolve
    from .prepared.folder import PREPARE_OPTIONS, check_out

    dataset = plugins.get("datasets", name)
    source = Path(source).expanduser()
    if not source.exists():
        raise BadInput(f"source {source} does not exist", "check the --source path")
    check_out(source, Path(out).expanduser(), force)
    given = {**(options or {}), "strict": strict, "force": force}
    if min_kept is not None:
        given["min_kept"] = min_kept
    opts = resolve((*dataset.options, *PREPARE_OPTIONS), given)
    if opts["min_kept"] < 0:
        raise BadInput(f"--min-kept {opts['min_kept']} is negative", "give a count of records (0 accepts an empty result)")
    with _gc_paused():
        return dataset.prepare(source, Path(out).expanduser(), opts, progress)


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
    ``problems`` as ``[{"index", "reason", "field"}]`` capped like ``report.json``."""
    from .prepared.validate import MAX_PROBLEMS

    out = to_dict(data)
    out["problems"] = out["problems"][:MAX_PROBLEMS]
    return out


def validate(file: Path, images: Path, *, strict: bool = False,
             progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Validate one LLaVA-style JSON/JSONL (or ``messages``) file against the image folder ``images``.

    Args:
        file: the JSON list or JSON Lines file.
        images: the folder the records' image paths are relative to.
        strict: raise when any record is bad.
        progress: receives ``check images`` events.
    Returns:
        ``{"file", "image_root": str, "checked", "usable", "dropped": int, "problems": [{"index",
        "field", "reason"}] (the first 200), "stats": {...}}`` (``stats.json``'s keys, of the usable
        records: :func:`vlhub.core.prepared.stats.compute`).
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
    with _gc_paused(), Checks(str(images)) as checks:
        items, rejected = load_items(Path(file).expanduser(), checks)
        checked = check(items, images, progress, rejected, checks)
    check_kept(checked, len(checked.items), image_root=images, source=str(file),
               root_fix="pass the folder the image paths are relative to: --images {root}")
    if strict and checked.problems:
        raise ValidationFailed(checked)
    return {"file": str(Path(file).resolve()), "image_root": str(images), **checked.summary(),
            "stats": stats_mod.compute({"all": checked.items}, checked.images)}


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
