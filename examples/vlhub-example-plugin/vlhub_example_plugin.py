"""An example vlhub plugin: a publisher that writes model folders to a local "folder hub".

``vlhub publish MODEL --to folder:/srv/hub/org/name`` copies every file into
``/srv/hub/org/name/files/`` and writes ``manifest.json`` (path, size, sha256),
last and atomically, so a reader never sees a half-published model. Files whose
sha256 already matches are not copied again. The preflight plans once (hashes, what to
copy) and the publish executes that plan as it is.

``vlhub_requires`` names the plugin API versions this module was written for
(:data:`vlhub.core.PLUGIN_API_VERSION`); another vlhub lists it as a failure instead of loading it.
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
from vlhub.core.errors import BadInput, VlhubError
from vlhub.core.types import Option, PlannedFile, Progress, ProgressCallback, Published, PublishPlan

vlhub_requires = ">=1.0,<2"

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
    options = (Option("verify", "Hash every copied file again and compare it with the preflight's hash.",
                      bool, True),)

    def _manifest(self, dest: Path) -> dict[str, Any]:
        path = dest / MANIFEST
        return json.loads(path.read_text()) if path.exists() else {"files": {}}

    def preflight(self, folder: Path, target: str, options: Mapping[str, Any],
                  progress: ProgressCallback | None = None) -> PublishPlan:
        """Hash every file of ``folder`` (bytes hashed go to ``progress``); those the manifest at ``target``
        has with the same sha256 are ``on_remote``. The plan keeps the hashes and the destination for
        :meth:`publish`. Raises BadInput for a target that is not an absolute path."""
        dest = Path(target).expanduser()
        if not target or not dest.is_absolute():
            raise BadInput(f"folder:{target} is not an absolute path", "use --to folder:/absolute/path/org/name")
        known = self._manifest(dest)["files"]
        files = _files(folder)
        total = sum(path.stat().st_size for path in files)
        planned, hashes, hashed = [], {}, 0
        for path in files:
            rel = path.relative_to(folder).as_posix()
            size = path.stat().st_size
            hashes[rel] = _sha256(path)
            same = known.get(rel) == {"size": size, "sha256": hashes[rel]}
            planned.append(PlannedFile(rel, size, lfs=False, on_remote=same))
            hashed += size
            if progress:
                progress(Progress(f"folder:{target}: hash", hashed, total, "B", rel))
        problems = [] if planned else [f"{folder} has no files"]
        return PublishPlan(f"folder:{target}", planned, sum(f.size for f in planned if not f.on_remote), problems,
                           folder=folder, hashes=hashes, job=dest)

    def publish(self, plan: PublishPlan, options: Mapping[str, Any],
                progress: ProgressCallback | None = None) -> Published:
        """Copy the files the plan marks to send (each checked against its planned sha256 when
        ``options["verify"]``, the default), then write the manifest atomically. Raises VlhubError for
        a copy whose sha256 differs from the plan's (the file changed since the preflight)."""
        dest: Path = plan.job
        (dest / "files").mkdir(parents=True, exist_ok=True)
        before = set(self._manifest(dest)["files"])
        sent = 0
        for item in plan.files:
            if item.on_remote:
                continue
            out = dest / "files" / item.path
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(f".{out.name}.partial")
            shutil.copyfile(plan.folder / item.path, tmp)
            if options.get("verify", True) and _sha256(tmp) != plan.hashes[item.path]:
                tmp.unlink()
                raise VlhubError(f"{plan.folder / item.path} changed since the preflight", "publish again")
            os.replace(tmp, out)
            sent += item.size
            if progress:
                progress(Progress(plan.target, sent, plan.bytes_to_send, "B", item.path))
        entries = {f.path: {"size": f.size, "sha256": plan.hashes[f.path]} for f in plan.files}
        fd, tmp_manifest = tempfile.mkstemp(dir=dest, prefix=".manifest.")
        with os.fdopen(fd, "w") as handle:
            json.dump({"files": entries}, handle, indent=2)
        os.replace(tmp_manifest, dest / MANIFEST)
        changed = sent > 0 or set(entries) != before
        return Published(plan.target, dest.as_uri(), "", sent, sum(not f.on_remote for f in plan.files), changed)


@hookimpl
def register_publishers(register) -> None:
    """Register the folder-hub publisher."""
    register(FolderHub())
