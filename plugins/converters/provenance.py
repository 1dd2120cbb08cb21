"""``vlhub_provenance.json``: where a converted folder came from and the sha256 of every file in it."""
from __future__ import annotations

import datetime as _dt
import hashlib
from pathlib import Path
from typing import Any

from vlhub.core import __version__
from vlhub.core.fsutil import atomic_write_json, timestamp
from vlhub.core.types import Progress, ProgressCallback

PROVENANCE = "vlhub_provenance.json"
FORMAT = "vlhub-provenance/1"


def sha256(path: Path, progress: ProgressCallback | None = None, done: int = 0, total: int | None = None) -> str:
    """The hex sha256 of a file (progress in bytes over all files, when given)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
            done += len(block)
            if progress:
                progress(Progress("sha256", done, total, "B", path.name))
    return digest.hexdigest()


def file_hashes(folder: Path, progress: ProgressCallback | None = None) -> dict[str, dict[str, Any]]:
    """``relative path -> {size, sha256}`` for every file under ``folder`` except the provenance file."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != PROVENANCE)
    total = sum(p.stat().st_size for p in files)
    out, done = {}, 0
    for path in files:
        size = path.stat().st_size
        out[path.relative_to(folder).as_posix()] = {"size": size, "sha256": sha256(path, progress, done, total)}
        done += size
    return out


def write(folder: Path, facts: dict[str, Any], progress: ProgressCallback | None = None) -> Path:
    """Write the provenance file into ``folder`` (last, after every other file is in place)."""
    record = {"format": FORMAT, "vlhub_version": __version__,
              "created": _dt.datetime.fromtimestamp(timestamp(), _dt.timezone.utc).isoformat(timespec="seconds"),
              **facts, "files": file_hashes(folder, progress)}
    path = folder / PROVENANCE
    atomic_write_json(path, record)
    return path
