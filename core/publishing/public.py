"""What a publish changes in the files it sends: the published ``vlhub_provenance.json`` holds no local paths.

A converter writes absolute paths into the model folder's ``vlhub_provenance.json`` (the
run folder, the checkpoint, a local base model folder; see :mod:`vlhub.core.provenance`).
They say where your files are on your machine (your user name, your home, your disks) and
mean nothing to anyone else, so the copy every publisher sends is rewritten:
:func:`public_provenance` gives its content as a generated file (``PublishPlan.extras``,
beside the card), and the file in the model folder is never changed.

The rule, for every text in the JSON (values and keys, at any depth): an absolute path
(``/...``, ``~/...``, ``C:\\...``, ``file:///...``), alone or inside a longer text, becomes
its path relative to the model folder when it lies inside it, else its last component
(``/home/me/.vlhub/runs/20261201-ab12`` -> ``20261201-ab12``, ``/data/InternVL2-2B`` ->
``InternVL2-2B``). Hub ids (``OpenGVLab/InternVL2-2B``), relative paths and URLs other than
``file://`` are kept.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Iterable

#: The provenance file's name (the one owner of the format is :mod:`vlhub.core.provenance`).
PROVENANCE = "vlhub_provenance.json"
#: Largest provenance file rewritten (a bigger one is not vlhub's and is sent as it is).
_MAX = 4 * 1024 * 1024
#: An absolute path inside a text: ``file:///...``, ``/...`` or ``~/...`` not preceded by a word,
#: a dot, a colon or a slash (so ``https://host/x`` and ``org/name`` are left alone), or ``C:\...``.
_ABS = re.compile(r"file://(?:localhost)?/[^\s'\"<>|,;)\]}]*"
                  r"|(?<![\w.:/~\\-])~?/(?!/)[^\s'\"<>|,;)\]}]+"
                  r"|(?<![\w])[A-Za-z]:\\[^\s'\"<>|,;)\]}]*")


def public_provenance(folder: Path, names: Iterable[str]) -> dict[str, bytes]:
    """The published copy of the folder's ``vlhub_provenance.json`` when it holds local paths.

    Args:
        folder: the model folder.
        names: the paths the folder scan accepted (a refused link is never read).

    Returns:
        ``{"vlhub_provenance.json": content}`` (UTF-8 JSON, indented) when the file exists and
        holds an absolute path; ``{}`` otherwise (no file, no path in it, or not JSON: such a
        file is sent as it is, and the card's reader reports a damaged one).
    """
    if PROVENANCE not in set(names):
        return {}
    path = Path(folder) / PROVENANCE
    try:
        if path.stat().st_size > _MAX:
            return {}
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError):
        return {}
    roots = tuple({os.path.normpath(os.path.abspath(folder)), os.path.realpath(folder)})
    cleaned = _clean(data, roots)
    if cleaned == data:
        return {}
    return {PROVENANCE: (json.dumps(cleaned, indent=2, ensure_ascii=False) + "\n").encode("utf-8")}


def local_paths(text: str) -> list[str]:
    """The absolute paths :func:`public_provenance` would replace in ``text``."""
    return _ABS.findall(text)


def _clean(value: Any, roots: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return _ABS.sub(lambda m: _public_path(m.group(0), roots), value)
    if isinstance(value, dict):
        return {_clean(k, roots): _clean(v, roots) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v, roots) for v in value]
    return value


def _public_path(path: str, roots: tuple[str, ...]) -> str:
    """An absolute path as published: relative to the model folder inside it, else its last component."""
    raw = re.sub(r"^file://(?:localhost)?", "", path)
    if re.match(r"^[A-Za-z]:\\", raw):
        return PureWindowsPath(raw).name or "."
    text = os.path.expanduser(raw) if raw.startswith("~") else raw
    norm = os.path.normpath(text)
    for base in roots:
        if norm == base:
            return "."
        if norm.startswith(base.rstrip("/") + "/"):
            return norm[len(base.rstrip("/")) + 1:]
    return PurePosixPath(norm).name or "."
