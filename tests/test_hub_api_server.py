"""The local hub server (tests/servers/hub_api.py) driven by the real, unpatched huggingface_hub and modelscope SDKs.

Uploads run the SDK in a subprocess with ``srv.env()``: huggingface_hub reads HF_ENDPOINT and
HF_HUB_DISABLE_XET at import time, so a fresh process is the only reliable way to point it at a
random port. Error-class checks also run in-process with explicit ``endpoint=``/``token=`` arguments.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.servers.hub_api import HubApiServer

TOKEN = "hub-test-token"
USER = "tester"
WEIGHTS_SIZE = 12 * 1024 * 1024

HF_SCRIPT = r"""
import json, os, sys
from huggingface_hub import HfApi, constants
from huggingface_hub.errors import HfHubHTTPError
mode, repo_id, folder = sys.argv[1:4]
assert constants.HF_HUB_DISABLE_XET and constants.ENDPOINT == os.environ["HF_ENDPOINT"]
api = HfApi()
out = {}
try:
    if mode in ("first", "error"):
        out["user"] = api.whoami()["name"]
        out["url"] = str(api.create_repo(repo_id, exist_ok=True))
        api.create_repo(repo_id, exist_ok=True)  # exists: the server answers 409, the SDK accepts it
    out["oid"] = api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="upload " + mode).oid
    if mode == "first":
        from huggingface_hub import snapshot_download
        snap = snapshot_download(repo_id, cache_dir=os.path.join(os.path.dirname(folder), "hf-cache"))
        out["snapshot"] = {
            os.path.relpath(os.path.join(d, f), snap).replace(os.sep, "/"):
                __import__("hashlib").sha256(open(os.path.join(d, f), "rb").read()).hexdigest()
            for d, _, fs in os.walk(snap) for f in fs}
except HfHubHTTPError as err:
    out["error"] = f"{type(err).__module__}.{type(err).__name__}"
    out["status"] = err.response.status_code
print(json.dumps(out))
"""

MS_SCRIPT = r"""
import json, os, sys
from modelscope.hub.api import HubApi
from modelscope_hub.errors import HubError
mode, repo_id, folder = sys.argv[1:4]
api = HubApi()
assert api.endpoint == os.environ["MODELSCOPE_ENDPOINT"], api.endpoint
out = {}
try:
    if mode in ("first", "error"):
        out["created"] = api.create_repo(repo_id, exist_ok=True) is not None
        out["created_again"] = api.create_repo(repo_id, exist_ok=True) is not None  # exists: SDK returns None
    result = api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="upload " + mode)
    out["result"] = result
except HubError as err:
    out["error"] = f"{type(err).__module__}.{type(err).__name__}"
    out["status"] = getattr(err, "status_code", None)
print(json.dumps(out))
"""


def sha256(data: bytes) -> str:
    """Hex sha256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def folder_digests(folder: Path) -> dict[str, str]:
    """``{relative posix path: sha256}`` of every file under ``folder``."""
    return {p.relative_to(folder).as_posix(): sha256(p.read_bytes()) for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubApiServer]:
    """A running server with its repos under tmp_path."""
    with HubApiServer(tmp_path / "hub", token=TOKEN, user=USER) as srv:
        yield srv


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A model folder: 12 MB random weights, a config, a model card and a nested file."""
    folder = tmp_path / "model"
    (folder / "docs").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(os.urandom(WEIGHTS_SIZE))
    (folder / "config.json").write_text(json.dumps({"architectures": ["InternVLChatModel"]}))
    (folder / "docs" / "notes.md").write_text("# notes\nnested file\n")
    (folder / "README.md").write_text("---\nlicense: apache-2.0\nlibrary_name: transformers\n---\n# A model\n")
    return folder


def run_sdk(srv: HubApiServer, script: str, *args: str, **env: str) -> dict[str, Any]:
    """Run an SDK script in a fresh interpreter pointed at ``srv``; return its JSON line."""
    proc = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **srv.env(), **env})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def puts(srv: HubApiServer) -> list[tuple[str, str, int]]:
    """LFS upload requests seen so far."""
    return [r for r in srv.requests if r[0] == "PUT"]


# ------------------------------------------------------------------------------------------ Hugging Face
def test_hf_upload_folder_stores_files_as_git_commit_with_lfs(hub: HubApiServer, model_dir: Path) -> None:
    out = run_sdk(hub, HF_SCRIPT, "first", f"{USER}/m", str(model_dir))
    assert out["user"] == USER and out["url"] == f"{hub.url}/{USER}/m"
    assert ("POST", "/api/repos/create", 409) in hub.requests
    assert ("POST", "/api/validate-yaml", 200) in hub.requests  # the SDK checks README.md metadata first

    stored = hub.files(f"{USER}/m")
    assert {p: sha256(b) for p, b in stored.items() if p != ".gitattributes"} == folder_digests(model_dir)
    assert hub.is_lfs(f"{USER}/m", "model.safetensors")
    assert not hub.is_lfs(f"{USER}/m", "config.json") and not hub.is_lfs(f"{USER}/m", "docs/notes.md")
    assert b"*.safetensors filter=lfs" in stored[".gitattributes"]
    commits = hub.commits(f"{USER}/m", "main")
    assert [c["title"] for c in commits] == ["upload first", "initial commit"]
    assert commits[0]["oid"] == out["oid"]
    assert hub.lfs_bytes_uploaded == WEIGHTS_SIZE
    assert {p: h for p, h in out["snapshot"].items() if p != ".gitattributes"} == folder_digests(model_dir)

    before = len(hub.requests)
    again = run_sdk(hub, HF_SCRIPT, "again", f"{USER}/m", str(model_dir))
    assert hub.lfs_bytes_uploaded == WEIGHTS_SIZE, "the second upload sent LFS bytes"
    assert not [r for r in hub.requests[before:] if r[0] == "PUT"]
    assert again["oid"] == out["oid"] and len(hub.commits(f"{USER}/m")) == 2  # SDK skipped the empty commit


def test_hf_wrong_token_raises_the_sdks_http_error(hub: HubApiServer, model_dir: Path) -> None:
    hub.create_repo(f"{USER}/m")
    out = run_sdk(hub, HF_SCRIPT, "again", f"{USER}/m", str(model_dir), HF_TOKEN="wrong")
    assert out == {"error": "huggingface_hub.errors.HfHubHTTPError", "status": 401}
    assert len(hub.commits(f"{USER}/m")) == 1 and hub.lfs_bytes_uploaded == 0

    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    with pytest.raises(HfHubHTTPError, match="Invalid user token") as err:
        HfApi(endpoint=hub.url, token="wrong").whoami()
    assert err.value.response.status_code == 401
    hub.reject_token = True
    with pytest.raises(HfHubHTTPError, match="Invalid credentials in Authorization header"):
        HfApi(endpoint=hub.url, token=TOKEN).create_repo(f"{USER}/other", exist_ok=True)
    assert not hub.exists(f"{USER}/other")
    assert all(TOKEN not in path and "wrong" not in path for _, path, _ in hub.requests)


def test_hf_rejects_invalid_model_card_metadata_before_uploading(hub: HubApiServer) -> None:
    from huggingface_hub import HfApi

    hub.create_repo(f"{USER}/m")
    with pytest.raises(ValueError, match="Invalid metadata in README.md"):
        HfApi(endpoint=hub.url, token=TOKEN).upload_file(path_or_fileobj=b"---\nlicense: [\n---\n",
                                                         path_in_repo="README.md", repo_id=f"{USER}/m")
    assert len(hub.commits(f"{USER}/m")) == 1 and ("POST", "/api/validate-yaml", 400) in hub.requests


def test_hf_survives_a_dropped_lfs_upload_and_reports_a_failed_commit(hub: HubApiServer, model_dir: Path) -> None:
    hub.create_repo(f"{USER}/m")
    hub.drop_lfs_upload_after = 1_000_000
    run_sdk(hub, HF_SCRIPT, "again", f"{USER}/m", str(model_dir))
    statuses = [status for _, _, status in puts(hub)]
    assert statuses == [0, 200], "expected one cut-off PUT, then the SDK's retry"
    assert hub.files(f"{USER}/m")["model.safetensors"] == (model_dir / "model.safetensors").read_bytes()

    (model_dir / "config.json").write_text('{"changed": true}')
    hub.fail_commit_once = True
    out = run_sdk(hub, HF_SCRIPT, "again", f"{USER}/m", str(model_dir))
    assert out == {"error": "huggingface_hub.errors.HfHubHTTPError", "status": 500}
    run_sdk(hub, HF_SCRIPT, "again", f"{USER}/m", str(model_dir))
    assert hub.files(f"{USER}/m")["config.json"] == b'{"changed": true}'


# ------------------------------------------------------------------------------------------ ModelScope
def test_modelscope_upload_folder_stores_files_on_master_with_lfs(hub: HubApiServer, model_dir: Path) -> None:
    out = run_sdk(hub, MS_SCRIPT, "first", f"{USER}/ms", str(model_dir))
    assert out["created"] is True and out["created_again"] is False
    assert "error" not in out, out

    assert hub.repo(f"{USER}/ms").default_branch() == "master"
    stored = hub.files(f"{USER}/ms", "master")
    assert {p: sha256(b) for p, b in stored.items() if p != ".gitattributes"} == folder_digests(model_dir)
    assert hub.is_lfs(f"{USER}/ms", "model.safetensors") and not hub.is_lfs(f"{USER}/ms", "config.json")
    assert hub.lfs_bytes_uploaded == WEIGHTS_SIZE
    assert not (model_dir / ".ms_upload_cache").exists()  # MODELSCOPE_UPLOAD_CACHE_ENABLED=0 from srv.env()

    run_sdk(hub, MS_SCRIPT, "again", f"{USER}/ms", str(model_dir))
    assert hub.lfs_bytes_uploaded == WEIGHTS_SIZE, "the second upload sent LFS bytes"
    assert len(puts(hub)) == 1


def test_modelscope_wrong_token_raises_the_sdks_errors(hub: HubApiServer, model_dir: Path) -> None:
    from modelscope.hub.api import HubApi
    from modelscope_hub.errors import AuthenticationError

    with pytest.raises(AuthenticationError):
        HubApi(endpoint=hub.url, token="wrong").create_repo(f"{USER}/ms", exist_ok=True)
    with pytest.raises(AuthenticationError):
        HubApi(endpoint=hub.url, token="wrong").login("wrong")
    assert not hub.exists(f"{USER}/ms")

    hub.create_repo(f"{USER}/ms", branch="master")
    out = run_sdk(hub, MS_SCRIPT, "again", f"{USER}/ms", str(model_dir), MODELSCOPE_API_TOKEN="wrong")
    # upload_folder logs the per-file AuthenticationError and raises its summary StorageError
    assert out["error"] == "modelscope_hub.errors.StorageError"
    assert ("POST", f"/api/v1/repos/models/{USER}/ms/commit/master", 401) in hub.requests
    assert len(hub.commits(f"{USER}/ms")) == 1 and hub.lfs_bytes_uploaded == 0


def test_modelscope_retries_a_dropped_lfs_upload_and_a_failed_commit(hub: HubApiServer, model_dir: Path) -> None:
    hub.drop_lfs_upload_after = 1_000_000
    hub.fail_commit_once = True
    out = run_sdk(hub, MS_SCRIPT, "first", f"{USER}/ms", str(model_dir))
    assert "error" not in out, out
    assert [status for _, _, status in puts(hub)] == [0, 200]
    commit_statuses = [s for m, p, s in hub.requests if p.endswith("/commit/master")]
    assert commit_statuses == [500, 200]
    assert hub.files(f"{USER}/ms")["model.safetensors"] == (model_dir / "model.safetensors").read_bytes()


# ------------------------------------------------------------------------------------------ git over HTTP
def test_git_clone_and_lfs_pull_of_an_uploaded_repo(hub: HubApiServer, model_dir: Path, tmp_path: Path) -> None:
    run_sdk(hub, HF_SCRIPT, "first", f"{USER}/m", str(model_dir))
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    subprocess.run(["git", "lfs", "install", "--skip-repo"], env=env, check=True, capture_output=True)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", hub.git_url(f"{USER}/m"), str(clone)], env=env, check=True,
                   capture_output=True, timeout=60)
    assert {p: h for p, h in folder_digests(clone).items() if not p.startswith(".git")} == folder_digests(model_dir)
