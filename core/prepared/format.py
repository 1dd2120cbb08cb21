"""The prepared-data folder format (``vlhub.prepared/1``, format version 2) and its reader.

Layout of a prepared folder ``OUT/`` (written by :func:`vlhub.core.prepared.folder.finish`)::

    train.json      LLaVA-style list of {"id": str, "image": str | [str] (absent for text-only records),
                    "conversations": [{"from": "human" | "gpt", "value": str}, ...]}; image paths are
                    relative to image_root as found on disk ("/" separators, no "./" or "//", the
                    file system's Unicode spelling), one "<image>" placeholder per image, in human turns
    val.json        the same for the validation split (only when there is one)
    val_mc.json     validation multiple-choice items for `vlhub eval` (only when the plugin keeps
                    them): {"id", "subset", "image", "question", "choices": [str], "answer": int
                    (index into choices), "prompt", "food_name", "categories": {field: str}} --
                    ``categories`` are what `vlhub eval` breaks accuracy down by (FoodieQA:
                    "food_type", "main_region", where the question has them; {} when none); absent
                    in folders prepared before it was added (see Versions)
    report.json     validation: {"checked": int, "usable": int, "dropped": int, "problems": [{"index":
                    int, "field": str, "reason": str}] (the first 200), "left_out_straddling_splits": int}
    stats.json      statistics (:func:`vlhub.core.prepared.stats.compute` lists its keys)
    prepared.json   the manifest below, written last: a folder without it is incomplete

Images are not copied: ``image_root`` points into the source folder.

``prepared.json`` fields:

=================  ====================  ================================================================
field              type                  meaning
=================  ====================  ================================================================
``format``         str                   always ``"vlhub.prepared/1"`` (:data:`FORMAT`), the family
                                         every reader checks; kept so that vlhub 0.1 reads newer folders
``format_version`` int                   the layout's version (:data:`FORMAT_VERSION`); absent in folders
                                         written by vlhub 0.1, which are read as version 1
``dataset``        str                   the dataset plugin that wrote the folder (e.g. ``"foodieqa"``)
``source``         str                   the source folder or file given to prepare (absolute, resolved)
``image_root``     str                   the folder image paths are relative to (absolute, resolved)
``files``          {str: str}            ``"train"``, ``"val"`` (if any), ``"val_mc"`` (if any) -> the
                                         file's absolute path
``records``        {str: int}            split name -> records written
``dropped``        int                   records that failed validation (listed in ``report.json``)
``left_out``       int                   valid records in neither split (a multi-image question whose
                                         groups straddle the split)
``options``        {str: any}            the plugin's options, typed (``strict`` and ``force`` left out)
``vlhub_version``  str                   the vlhub version that wrote the folder
``created``        str                   local time, ``%Y-%m-%dT%H:%M:%S%z``
=================  ====================  ================================================================

Versions: 1 is what vlhub 0.1 wrote (the fields above without ``format_version``); 2 adds
``format_version``. :func:`load_manifest` reads both, and refuses a higher version with the fix.
A field added to the records or items without changing how the existing ones read keeps the
version (a reader ignores what it does not know, so an older vlhub still reads the folder):
``val_mc.json`` items gained ``categories`` that way, within version 2. Readers must accept items
without it (a folder prepared before: `vlhub eval` then leaves per-category accuracy out and
says that preparing the data again, ``vlhub data prepare ... --force``, fills them).

It imports no other module of :mod:`vlhub.core.prepared`, nor :mod:`vlhub.core.types`, so that
:mod:`vlhub.core.types` can re-export :class:`PreparedData` and :class:`Problem` from here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlhub.core.errors import BadInput
from vlhub.core.fsutil import read_json

MANIFEST = "prepared.json"
FORMAT = "vlhub.prepared/1"
#: the version :func:`vlhub.core.prepared.folder.finish` writes
FORMAT_VERSION = 2
#: the version of a manifest without ``format_version`` (written by vlhub 0.1)
V0_1 = 1
PREPARE_AGAIN = "prepare the data again with `vlhub data prepare ... --force`"
_REQUIRED = object()
_JSON = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean",
         type(None): "null"}
#: the fields :func:`load_manifest` reads: type, and the default when absent (``_REQUIRED``: none)
FIELDS: dict[str, tuple[type, Any]] = {
    "dataset": (str, _REQUIRED), "source": (str, _REQUIRED), "image_root": (str, _REQUIRED),
    "files": (dict, _REQUIRED), "records": (dict, {}), "dropped": (int, 0), "left_out": (int, 0),
    "options": (dict, {}), "vlhub_version": (str, ""), "created": (str, ""),
}


@dataclass
class Problem:
    """One rejected record: where it is and why."""

    index: int
    reason: str
    field: str = ""


@dataclass
class PreparedData:
    """A prepared dataset folder: LLaVA-style JSON files, the image root, a report."""

    out: Path
    files: dict[str, Path]          # split name -> JSON file
    image_root: Path
    records: dict[str, int]         # split name -> usable records
    dropped: int
    problems: list[Problem] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class Manifest:
    """A prepared folder's ``prepared.json``, read (any version); paths are absolute."""

    folder: Path
    format_version: int
    dataset: str
    source: Path
    image_root: Path
    files: dict[str, Path]
    records: dict[str, int]
    dropped: int
    left_out: int
    options: dict[str, Any]
    vlhub_version: str
    created: str


def load_manifest(folder: Path) -> Manifest:
    """The manifest of a complete prepared folder, whatever version wrote it.

    Args:
        folder: the prepared folder (``~`` is expanded).
    Returns:
        :class:`Manifest`; relative paths in the file (hand-edited folders) are taken relative to
        ``folder``, and ``format_version`` is :data:`V0_1` for a folder written by vlhub 0.1.
    Raises:
        BadInput: ``folder`` has no ``prepared.json`` of this format (not prepared, or an interrupted
            prepare); the file is damaged (not JSON, or a field of the wrong type); or it was written
            by a newer vlhub (a higher ``format_version``).
    """
    folder = Path(folder).expanduser().resolve()
    path = folder / MANIFEST
    raw = read_json(path, expect=dict)
    if raw is None or raw.get("format") != FORMAT:
        raise BadInput(f"{folder} is not a prepared dataset folder (no complete {MANIFEST})",
                       "run `vlhub data prepare NAME --source DIR --out DIR` first")
    version = raw.get("format_version", V0_1)
    if not isinstance(version, int) or version < V0_1:
        raise BadInput(f"{path} is damaged: format_version {version!r} is not a version number", PREPARE_AGAIN)
    if version > FORMAT_VERSION:
        raise BadInput(f"{folder} was prepared by a newer vlhub (format version {version}; this one reads "
                       f"{V0_1} to {FORMAT_VERSION})", "upgrade vlhub, or prepare the data again with this one")
    values = {}
    for key, (kind, default) in FIELDS.items():
        value = raw.get(key, default)
        if value is _REQUIRED or not isinstance(value, kind):
            found = "missing" if value is _REQUIRED else f"a JSON {_JSON.get(type(value), type(value).__name__)}"
            raise BadInput(f"{path} is damaged: {key!r} is {found}, expected a JSON {_JSON[kind]}", PREPARE_AGAIN)
        values[key] = value
    return Manifest(folder=folder, format_version=version, dataset=values["dataset"],
                    source=_absolute(path, values["source"]), image_root=_absolute(path, values["image_root"]),
                    files={name: _absolute(path, file) for name, file in values["files"].items()},
                    records=values["records"], dropped=values["dropped"], left_out=values["left_out"],
                    options=values["options"], vlhub_version=values["vlhub_version"], created=values["created"])


def _absolute(manifest: Path, path: Any) -> Path:
    """A path of the manifest: as written when absolute, else relative to the folder."""
    if not isinstance(path, str) or not path:
        raise BadInput(f"{manifest} is damaged: {path!r} is not a path", PREPARE_AGAIN)
    return Path(path) if Path(path).is_absolute() else manifest.parent / path
