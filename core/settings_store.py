"""What the launcher remembers between sessions, under ``$VLHUB_HOME/ui/``.

Streamlit forgets a page's fields when another page is shown and everything on a reload; the
launcher keeps them here so a form comes back as it was left:

=================  ===================================================================================
file               content
=================  ===================================================================================
``forms.json``     ``{"values": {field key: value}, "lang": "en" | "zh"}``: the last value of every form
                   field of the Data, Train, Convert and Publish pages, and the language
``presets.json``   ``{name: {"trainer", "model", "data", "options"}}``: named training settings
``places.json``    ``{"datasets": [...], "models": [...], "base_models": [...]}``: folders the user
                   chose, newest first, so that the pages can offer them (and what is beside them)
=================  ===================================================================================

Every write is atomic (:func:`vlhub.core.fsutil.atomic_write_json`) and made under a file lock,
so two tabs never lose each other's changes. Nothing secret is stored: values are redacted
(:func:`vlhub.core.secrets.redact_data`), like ``run.json``. ``forms.json`` and ``places.json``
only save typing, so a damaged one reads as empty; ``presets.json`` is the user's work, so a
damaged one is reported (:class:`~vlhub.core.errors.BadInput` naming the file).

The pickers' lists are found on disk: prepared folders (``prepared.json``), converted model
folders (``vlhub_provenance.json``) and base models (``config.json``), searched two levels deep
under ``$VLHUB_HOME/data`` / ``$VLHUB_HOME/models`` and beside the remembered places.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from filelock import FileLock

from .errors import BadInput
from .fsutil import atomic_write_json, read_cache, read_json
from .home import home_path, vlhub_home
from .secrets import redact_data

FORMS = "forms.json"
PRESETS = "presets.json"
PLACES = "places.json"
#: Kinds of remembered places (:func:`remember_place`) and the file that marks a folder of that kind.
MARKERS = {"datasets": "prepared.json", "models": "vlhub_provenance.json", "base_models": "config.json"}
LANGUAGES = ("en", "zh")
#: At most this many places of each kind are remembered.
KEEP_PLACES = 20


def ui_dir() -> Path:
    """``$VLHUB_HOME/ui`` (created on first write)."""
    return home_path() / "ui"


def _update(name: str, change: Any, *, strict: bool = False) -> dict[str, Any]:
    """Read ``name``, let ``change(data)`` edit it, write it back atomically, under the file's lock."""
    folder = vlhub_home() / "ui"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with FileLock(str(folder / f".{name}.lock")):
        data = read_json(path, {}, expect=dict) if strict else read_cache(path, {})
        change(data)
        atomic_write_json(path, data)
    return data


# ------------------------------------------------------------------ form values and the language
def form_values() -> dict[str, Any]:
    """Every remembered field value, by the field's key (``{}`` when nothing is remembered yet)."""
    values = read_cache(ui_dir() / FORMS, {}).get("values")
    return dict(values) if isinstance(values, dict) else {}


def remember_values(values: Mapping[str, Any]) -> None:
    """Remember field values (merged into the ones already remembered; ``None`` forgets a field)."""
    if not values:
        return

    def change(data: dict[str, Any]) -> None:
        current = data.get("values") if isinstance(data.get("values"), dict) else {}
        for key, value in redact_data(dict(values)).items():
            if value is None:
                current.pop(key, None)
            else:
                current[key] = value
        data["values"] = current

    _update(FORMS, change)


def language() -> str | None:
    """The remembered language (``"en"`` or ``"zh"``), or ``None``."""
    lang = read_cache(ui_dir() / FORMS, {}).get("lang")
    return lang if lang in LANGUAGES else None


def remember_language(lang: str) -> None:
    """Remember the language for the next session.

    Raises:
        BadInput: not one of :data:`LANGUAGES`.
    """
    if lang not in LANGUAGES:
        raise BadInput(f"unknown language {lang!r}", f"use one of: {', '.join(LANGUAGES)}")
    _update(FORMS, lambda data: data.__setitem__("lang", lang))


# ------------------------------------------------------------------ presets of training settings
def presets() -> dict[str, dict[str, Any]]:
    """The saved presets by name (sorted).

    Raises:
        BadInput: ``presets.json`` is damaged (named, with the fix).
    """
    data = read_json(ui_dir() / PRESETS, {}, expect=dict)
    return {name: data[name] for name in sorted(data) if isinstance(data[name], dict)}


def save_preset(name: str, trainer: str, options: Mapping[str, Any], model: str = "", data: str = "") -> dict[str, Any]:
    """Save (or replace) preset ``name``: a trainer and its settings, and the model and data folders.

    Args:
        name: the preset's name (stripped; not empty).
        trainer: the trainer's name.
        options: the trainer's settings as the Train page gives them (the ones that differ from the defaults).
        model: the base model folder ("" to leave it out).
        data: the prepared data folder ("" to leave it out).
    Returns:
        The saved preset.
    Raises:
        BadInput: an empty name, or ``presets.json`` is damaged.
    """
    name = " ".join(str(name).split())
    if not name:
        raise BadInput("a preset needs a name", "type a name for the preset, then save it")
    preset = redact_data({"trainer": trainer, "options": dict(options), "model": model, "data": data})
    _update(PRESETS, lambda all_: all_.__setitem__(name, preset), strict=True)
    return preset


def load_preset(name: str) -> dict[str, Any]:
    """Preset ``name``: ``{"trainer", "options", "model", "data"}``.

    Raises:
        BadInput: no such preset (the message lists the saved ones), or ``presets.json`` is damaged.
    """
    found = presets()
    if name not in found:
        raise BadInput(f"no preset named {name!r} (saved: {', '.join(found) or 'none'})",
                       "choose a saved preset, or save the current settings under that name")
    preset = found[name]
    return {"trainer": str(preset.get("trainer") or ""), "model": str(preset.get("model") or ""),
            "data": str(preset.get("data") or ""),
            "options": dict(preset["options"]) if isinstance(preset.get("options"), dict) else {}}


def delete_preset(name: str) -> None:
    """Forget preset ``name`` (nothing happens when there is none).

    Raises:
        BadInput: ``presets.json`` is damaged.
    """
    _update(PRESETS, lambda all_: all_.pop(name, None), strict=True)


# ------------------------------------------------------------------ remembered places and the pickers
def remember_place(kind: str, path: str | os.PathLike[str]) -> None:
    """Remember a folder of ``kind`` (a key of :data:`MARKERS`) the user chose, newest first."""
    if kind not in MARKERS or not str(path).strip():
        return
    folder = str(Path(path).expanduser().resolve())

    def change(data: dict[str, Any]) -> None:
        known = [p for p in data.get(kind, []) if isinstance(p, str) and p != folder]
        data[kind] = [folder, *known][:KEEP_PLACES]

    with contextlib.suppress(OSError):  # remembering must never break the page's action
        _update(PLACES, change)


def places(kind: str) -> list[str]:
    """The remembered folders of ``kind``, newest first."""
    found = read_cache(ui_dir() / PLACES, {}).get(kind)
    return [p for p in found if isinstance(p, str)] if isinstance(found, list) else []


#: At most this many entries of one folder are looked at (a picker must never crawl a big disk).
SCAN_LIMIT = 300


def _marked(root: Path, marker: str, depth: int = 2) -> Iterable[Path]:
    """``root`` and the folders up to ``depth`` levels below it that hold ``marker`` (the first
    :data:`SCAN_LIMIT` entries of each folder; hidden folders are skipped)."""
    with contextlib.suppress(OSError):
        if (root / marker).is_file():
            yield root
            return  # a dataset or model folder: what is inside is its own
        if depth and root.is_dir():
            children = []
            for n, child in enumerate(os.scandir(root)):
                if n >= SCAN_LIMIT:
                    break
                children.append(child)
            for child in sorted(children, key=lambda e: e.name):
                if not child.name.startswith(".") and child.is_dir():
                    yield from _marked(Path(child.path), marker, depth - 1)


def find(kind: str, extra: Iterable[str | os.PathLike[str]] = ()) -> list[str]:
    """Folders of ``kind`` a picker offers, newest first: the remembered ones and ``extra`` (e.g. a job's
    output), and those found two levels deep under ``$VLHUB_HOME/data`` (datasets) or
    ``$VLHUB_HOME/models`` (models) and beside the remembered ones.

    Args:
        kind: ``datasets`` (folders with ``prepared.json``), ``models`` (converted: ``vlhub_provenance.json``)
            or ``base_models`` (``config.json``; converted folders included).
        extra: more candidate folders (kept only when they hold the marker file).
    """
    marker = MARKERS[kind]
    remembered = [Path(p) for p in [*map(str, extra), *places(kind)]]
    roots = {"datasets": [home_path() / "data"], "models": [home_path() / "models"],
             "base_models": [home_path() / "models"]}[kind]
    roots += [p.parent for p in remembered if len(p.parent.parts) > 1 and p.parent != Path.home()]
    found: dict[str, float] = {}
    for folder in [*remembered, *(f for root in dict.fromkeys(roots) for f in _marked(root, marker))]:
        with contextlib.suppress(OSError):
            if (folder / marker).is_file():
                found.setdefault(str(folder.resolve()), (folder / marker).stat().st_mtime)
    return sorted(found, key=lambda p: -found[p])


def path_kind(path: str | os.PathLike[str]) -> str:
    """What a typed path is, for the pages' field checks: ``missing``, ``file``, ``dataset`` (a prepared
    folder), ``model`` (a converted model folder), ``base_model`` (a folder with ``config.json``),
    ``empty`` (an empty folder) or ``folder`` (any other folder)."""
    target = Path(path).expanduser()
    try:
        if not target.exists():
            return "missing"
        if not target.is_dir():
            return "file"
        for kind, marker in (("dataset", "prepared.json"), ("model", "vlhub_provenance.json"),
                             ("base_model", "config.json")):
            if (target / marker).is_file():
                return kind
        return "folder" if any(target.iterdir()) else "empty"
    except OSError:
        return "missing"
