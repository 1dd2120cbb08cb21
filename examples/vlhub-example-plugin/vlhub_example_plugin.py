"""An example vlhub plugin: a publisher that writes model folders to a local "folder hub" (a bucket).

``vlhub publish MODEL --to folder:/srv/hub/org/name`` copies every file into
``/srv/hub/org/name/files/`` and writes ``manifest.json`` (path, size, sha256),
last and atomically, so a reader never sees a half-published model. Files whose
sha256 already matches are not copied again. The preflight plans once (hashes, what to
copy) and the publish executes that plan as it is.

It declares one secret, ``EXAMPLE_BUCKET_TOKEN``: the bucket's access token. The first publish
claims the bucket (``bucket.json`` keeps a salted sha256 of the token, never the token); later
publishes must present the same token. Without it the preflight fails naming the variable (exit 2).
And one option, ``verify`` (``--verify/--no-verify`` on ``vlhub publish``; 复制后校验 on the
Chinese Publish page).

``vlhub_requires`` names the plugin API versions this module was written for
(:data:`vlhub.core.PLUGIN_API_VERSION`); another vlhub lists it as a failure instead of loading it.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

from vlhub.core import hookimpl
from vlhub.core.errors import BadInput, VlhubError
from vlhub.core.secrets import require_token
from vlhub.core.types import Option, PlannedFile, Progress, ProgressCallback, Published, PublishPlan, Secret

vlhub_requires = ">=1.0,<2"

MANIFEST = "manifest.json"
BUCKET = "bucket.json"
TOKEN = Secret("folder-hub", ("EXAMPLE_BUCKET_TOKEN",), "access token of the folder hub's buckets")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and ".git" not in p.parts)


def _digest(salt: str, token: str) -> str:
    return hashlib.sha256(f"{salt}:{token}".encode()).hexdigest()


def _check_token(dest: Path, token: str) -> None:
    """Refuse a token that is not the one that claimed the bucket ``dest`` (a new bucket takes any)."""
    path = dest / BUCKET
    if path.is_file():
        claim = json.loads(path.read_text())
        if not hmac.compare_digest(claim["token_sha256"], _digest(claim["salt"], token)):
            raise BadInput(f"EXAMPLE_BUCKET_TOKEN is not the token of the bucket {dest}",
                           "export the token this bucket was first published with")


def _claim(dest: Path, token: str) -> None:
    """Record the bucket's token (salted sha256 only) on its first publish."""
    if not (dest / BUCKET).is_file():
        salt = secrets.token_hex(8)
        (dest / BUCKET).write_text(json.dumps({"salt": salt, "token_sha256": _digest(salt, token)}))


class FolderHub:
    """Publish to a folder on this machine (or a mounted share)."""

    name = "folder"
    description = "Copy a model folder into a local folder hub with a sha256 manifest ($EXAMPLE_BUCKET_TOKEN)."
    options = (Option("verify", "Hash every copied file again and compare it with the preflight's hash.",
                      bool, True, labels={"zh": "复制后校验"}),)
    secrets = (TOKEN,)

    def _manifest(self, dest: Path) -> dict[str, Any]:
        path = dest / MANIFEST
        return json.loads(path.read_text()) if path.exists() else {"files": {}}

    def preflight(self, folder: Path, target: str, options: Mapping[str, Any],
                  progress: ProgressCallback | None = None) -> PublishPlan:
        """Hash every file of ``folder`` (bytes hashed go to ``progress``); those the manifest at ``target``
        has with the same sha256 are ``on_remote``. The plan keeps the hashes and the destination for
        :meth:`publish`. Raises BadInput for a target that is not an absolute path, and when
        ``$EXAMPLE_BUCKET_TOKEN`` is not set or is not the bucket's token."""
        dest = Path(target).expanduser()
        if not target or not dest.is_absolute():
            raise BadInput(f"folder:{target} is not an absolute path", "use --to folder:/absolute/path/org/name")
        _check_token(dest, require_token(TOKEN))
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
        token = require_token(TOKEN)
        _check_token(dest, token)
        (dest / "files").mkdir(parents=True, exist_ok=True)
        _claim(dest, token)
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
