"""The data API that ``vlhub data`` and the launcher's Data page call.

Preparing runs a registered dataset plugin; validation, stats and the folder
layout are the built-in helpers of :mod:`vlhub.plugins.datasets` (imported
lazily, so ``vlhub.core`` stays light).
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
    """Every registered dataset: name, description, options, and whether it can be downloaded."""
    return [{"name": name, "description": ds.description, "options": [o.public() for o in ds.options],
             "download": callable(getattr(ds, "download", None))}
            for name, ds in sorted(plugins.registry("datasets").items())]


def prepare(name: str, source: Path, out: Path, options: Mapping[str, Any] | None = None, *,
            strict: bool = False, force: bool = False, progress: ProgressCallback | None = None) -> PreparedData:
    """Convert ``source`` with dataset ``name`` into the prepared folder ``out``.

    ``options`` may hold strings (``--opt KEY=VALUE``); they are converted to each
    option's type. Bad records are dropped, or with ``strict`` raise
    :class:`vlhub.plugins.datasets.validate.ValidationFailed` (nothing is written).
    """
    from vlhub.plugins.datasets.options import resolve
    from vlhub.plugins.datasets.prepared import check_out

    dataset = plugins.get("datasets", name)
    source = Path(source).expanduser()
    if not source.exists():
        raise BadInput(f"source {source} does not exist", "check the --source path")
    check_out(source, Path(out).expanduser(), force)
    opts = {**resolve(dataset.options, options or {}), "strict": strict, "force": force}
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
    """A prepare result as JSON-ready data (problems capped like the report)."""
    from vlhub.plugins.datasets.validate import MAX_PROBLEMS

    out = to_dict(data)
    out["problems"] = out["problems"][:MAX_PROBLEMS]
    return out


def validate(file: Path, images: Path, *, strict: bool = False,
             progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Validate one LLaVA-style JSON/JSONL (or ``messages``) file against the image folder ``images``.

    Returns the counts, the first problems and the stats of the usable records.
    """
    from vlhub.plugins.datasets import stats as stats_mod
    from vlhub.plugins.datasets.images import Checks
    from vlhub.plugins.datasets.llava_json import load_items
    from vlhub.plugins.datasets.validate import ValidationFailed, validate as check

    images = Path(images).expanduser().resolve()
    if not images.is_dir():
        raise BadInput(f"image folder {images} does not exist", "pass the folder the image paths are relative to")
    with _gc_paused(), Checks(str(images)) as checks:
        items, rejected = load_items(Path(file).expanduser(), checks)
        checked = check(items, images, progress, rejected, checks)
    if strict and checked.problems:
        raise ValidationFailed(checked)
    return {"file": str(Path(file).resolve()), "image_root": str(images), **checked.summary(),
            "stats": stats_mod.compute({"all": checked.items}, checked.images)}


def stats(folder: Path) -> dict[str, Any]:
    """The manifest counts and stored stats of a prepared folder."""
    from vlhub.core.fsutil import read_json
    from vlhub.plugins.datasets.prepared import load_manifest

    folder = Path(folder).expanduser().resolve()
    manifest = load_manifest(folder)
    return {"folder": str(folder), "dataset": manifest["dataset"], "image_root": manifest["image_root"],
            "dropped": manifest["dropped"], **read_json(folder / "stats.json", {}, expect=dict)}


def preview(folder: Path, split: str = "train", n: int = 5) -> list[dict[str, Any]]:
    """The first ``n`` records of a split, with image paths made absolute (for display)."""
    from vlhub.core.fsutil import read_json
    from vlhub.plugins.datasets.prepared import load_manifest
    from vlhub.plugins.datasets.records import record_images

    manifest = load_manifest(Path(folder).expanduser())
    if split not in manifest["files"]:
        raise BadInput(f"no split {split!r} in {folder} (splits: {', '.join(manifest['files'])})",
                       "choose one of the listed splits")
    root = Path(manifest["image_root"])
    rows = read_json(Path(manifest["files"][split]), [], expect=list)[:n]
    return [{**row, "images": [str(root / ref) for ref in record_images(row) if isinstance(ref, str)]}
            for row in rows if isinstance(row, dict)]


def download(name: str, out: Path, *, token: str | None = None,
             progress: ProgressCallback | None = None) -> Path:
    """Download dataset ``name`` into ``out`` (token: given, else the user's HF login); the source folder."""
    from .secrets import find_token

    dataset = plugins.get("datasets", name)
    fetch = getattr(dataset, "download", None)
    if not callable(fetch):
        can = ", ".join(d["name"] for d in datasets() if d["download"]) or "none"
        raise BadInput(f"dataset {name!r} cannot be downloaded by vlhub (downloadable: {can})",
                       "get the files yourself and run `vlhub data prepare`")
    return fetch(Path(out).expanduser(), token or find_token("hf").value or None, progress)
