"""An example vlhub plugin: a publisher that writes model folders to a local "folder hub".

``vlhub publish MODEL --to folder:/srv/hub/org/name`` copies every file into
``/srv/hub/org/name/files/`` and writes ``manifest.json`` (path, size, sha256),
last and atomically, so a reader never sees a half-published model. Files whose
sha256 already matches are not copied again.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

from vlhub.core import hookimpl
from vlhub.core.errors import BadInput
from vlhub.core.types import Option, PlannedFile, Preflight, Progress, ProgressCallback, Published

MANIFEST = "manifest.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and ".git" not in p.parts)


class FolderHub:
    """Publish to a folder on this machine (or a mounted share)."""

    name = "folder"
    description = "Copy a model folder into a local folder hub with a sha256 manifest."
    options = (Option("keep_going", "Ignore files that cannot be read.", bool, False),)

    def _manifest(self, dest: Path) -> dict[str, Any]:
        path = dest / MANIFEST
        return json.loads(path.read_text()) if path.exists() else {"files": {}}

    def preflight(self, folder: Path, target: str, options: Mapping[str, Any]) -> Preflight:
        dest = Path(target).expanduser()
        if not target or not dest.is_absolute():
            raise BadInput(f"folder:{target} is not an absolute path", "use --to folder:/absolute/path/org/name")
        known = self._manifest(dest)["files"]
        planned = []
        for path in _files(folder):
            rel = path.relative_to(folder).as_posix()
            size = path.stat().st_size
            same = rel in known and known[rel]["size"] == size and known[rel]["sha256"] == _sha256(path)
            planned.append(PlannedFile(rel, size, lfs=False, on_remote=same))
        problems = [] if planned else [f"{folder} has no files"]
        return Preflight(f"folder:{target}", planned, sum(f.size for f in planned if not f.on_remote), problems)

    def publish(self, folder: Path, target: str, options: Mapping[str, Any],
                progress: ProgressCallback | None = None) -> Published:
        plan = self.preflight(folder, target, options)
        if plan.problems:
            raise BadInput("; ".join(plan.problems), "publish a folder that contains the model files")
        dest = Path(target).expanduser()
        (dest / "files").mkdir(parents=True, exist_ok=True)
        before = set(self._manifest(dest)["files"])
        sent = 0
        entries = {}
        for item in plan.files:
            src = folder / item.path
            out = dest / "files" / item.path
            if not item.on_remote:
                out.parent.mkdir(parents=True, exist_ok=True)
                tmp = out.with_name(f".{out.name}.partial")
                shutil.copyfile(src, tmp)
                os.replace(tmp, out)
                sent += item.size
                if progress:
                    progress(Progress(f"folder:{target}", sent, plan.bytes_to_send, "B", item.path))
            entries[item.path] = {"size": item.size, "sha256": _sha256(out)}
        fd, tmp_manifest = tempfile.mkstemp(dir=dest, prefix=".manifest.")
        with os.fdopen(fd, "w") as handle:
            json.dump({"files": entries}, handle, indent=2)
        os.replace(tmp_manifest, dest / MANIFEST)
        changed = sent > 0 or set(entries) != before
        return Published(f"folder:{target}", dest.as_uri(), "", sent, sum(not f.on_remote for f in plan.files), changed)


@hookimpl
def register_publishers(register) -> None:
    """Register the folder-hub publisher."""
    register(FolderHub())
