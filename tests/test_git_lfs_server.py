"""The git smart-HTTP + LFS test server itself, driven by the plain git / git-lfs CLI."""
from __future__ import annotations

import base64
import hashlib
import http.client
import os
import subprocess
import tracemalloc
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from servers.git_lfs import GitLfsServer

MB = 1024 * 1024
REPO = "org/model"


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[GitLfsServer]:
    with GitLfsServer(tmp_path / "srv", token="secret") as server:
        yield server


def git(cwd: Path, env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    if check and proc.returncode:
        raise AssertionError(f"git {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def work_repo(path: Path, env: dict[str, str], lfs: bool = True) -> Path:
    path.mkdir()
    git(path, env, "init", "-q", "-b", "main")
    if lfs:
        git(path, env, "lfs", "install", "--local")
        git(path, env, "lfs", "track", "*.safetensors")
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_lfs_push_clone_roundtrip(srv: GitLfsServer, tmp_path: Path) -> None:
    env = srv.client_env()
    work = work_repo(tmp_path / "work", env)
    weights = work / "model.safetensors"
    weights.write_bytes(os.urandom(12 * MB))
    (work / "README.md").write_text("# model\n")
    git(work, env, "add", ".")
    git(work, env, "commit", "-qm", "weights")
    git(work, env, "push", srv.repo_url(REPO), "main")

    assert srv.is_pointer(REPO, "main", "model.safetensors")
    assert not srv.is_pointer(REPO, "main", "README.md")
    assert srv.lfs_objects(REPO) == {sha256(weights): 12 * MB}
    assert srv.lfs_bytes_uploaded == 12 * MB
    assert sorted(srv.ls_tree(REPO, "main")) == [".gitattributes", "README.md", "model.safetensors"]

    clone = srv.clone(REPO, tmp_path / "clone")
    assert sha256(clone / "model.safetensors") == sha256(weights)
    assert srv.lfs_bytes_downloaded == 12 * MB

    # A second push that changes no LFS file sends no LFS bytes.
    (work / "README.md").write_text("# model v2\n")
    git(work, env, "commit", "-qam", "readme")
    srv.reset_stats()
    git(work, env, "push", srv.repo_url(REPO, dot_git=True), "main")
    assert srv.lfs_bytes_uploaded == 0
    assert not [r for r in srv.requests if r.kind == "lfs-upload"]
    assert srv.read_blob(REPO, "main", "README.md") == b"# model v2\n"


def test_big_non_lfs_blob_is_rejected(srv: GitLfsServer, tmp_path: Path) -> None:
    env = srv.client_env()
    work = work_repo(tmp_path / "work", env, lfs=False)
    (work / "big.bin").write_bytes(os.urandom(12 * MB))
    git(work, env, "add", ".")
    git(work, env, "commit", "-qm", "big")
    push = git(work, env, "push", srv.repo_url(REPO), "main", check=False)
    assert push.returncode != 0
    assert "file big.bin (12582912 bytes) is larger than 10 MB; track it with Git LFS" in push.stderr
    assert srv.ls_tree(REPO, "main") == []


def test_blob_limit_is_configurable_and_pointers_pass(tmp_path: Path) -> None:
    with GitLfsServer(tmp_path / "srv", max_blob_bytes=100) as srv:
        env = srv.client_env()
        work = work_repo(tmp_path / "work", env)
        (work / "w.safetensors").write_bytes(os.urandom(4096))  # pointer ~130 bytes > 100: still allowed
        git(work, env, "add", ".")
        git(work, env, "commit", "-qm", "lfs")
        git(work, env, "push", srv.repo_url(REPO), "main")
        (work / "notes.txt").write_text("x" * 500)
        git(work, env, "add", ".")
        git(work, env, "commit", "-qm", "plain")
        push = git(work, env, "push", srv.repo_url(REPO), "main", check=False)
        assert push.returncode != 0 and "file notes.txt (500 bytes) is larger than 100 bytes" in push.stderr


def test_wrong_or_missing_token_is_401(srv: GitLfsServer, tmp_path: Path) -> None:
    env = srv.client_env(token="wrong-token")
    work = work_repo(tmp_path / "work", env)
    (work / "a.txt").write_text("a\n")
    git(work, env, "add", ".")
    git(work, env, "commit", "-qm", "a")
    push = git(work, env, "push", srv.repo_url(REPO), "main", check=False)
    assert push.returncode != 0 and "Authentication failed" in push.stderr

    for auth in (None, basic("user", "wrong-token")):
        req = urllib.request.Request(f"{srv.repo_url(REPO)}/info/refs?service=git-upload-pack")
        if auth:
            req.add_header("Authorization", auth)
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10)
        assert err.value.code == 401 and err.value.headers["WWW-Authenticate"].startswith("Basic realm=")
    req = urllib.request.Request(f"{srv.repo_url(REPO)}/info/refs?service=git-upload-pack",
                                 headers={"Authorization": basic("anyone", "secret")})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
    assert {r.status for r in srv.requests} >= {401, 200}
    assert "wrong-token" not in repr(srv.requests) and "secret" not in repr(srv.requests)


def test_no_autocreate_is_404_until_created(tmp_path: Path) -> None:
    with GitLfsServer(tmp_path / "srv", autocreate=False, default_branch="master") as srv:
        env = srv.client_env()
        missing = git(tmp_path, env, "ls-remote", srv.repo_url(REPO), check=False)
        assert missing.returncode != 0 and "not found" in missing.stderr.lower()
        srv.create_repo(REPO)
        work = work_repo(tmp_path / "work", env, lfs=False)
        (work / "a.txt").write_text("a\n")
        git(work, env, "add", ".")
        git(work, env, "commit", "-qm", "a")
        git(work, env, "push", srv.repo_url(REPO), "main:master")
        assert srv.ls_tree(REPO) == ["a.txt"]  # HEAD is master


def test_read_only_refuses_push(tmp_path: Path) -> None:
    with GitLfsServer(tmp_path / "srv", read_only=True) as srv:
        env = srv.client_env()
        work = work_repo(tmp_path / "work", env)
        (work / "w.safetensors").write_bytes(b"weights" * 100)
        git(work, env, "add", ".")
        git(work, env, "commit", "-qm", "w")
        push = git(work, env, "push", srv.repo_url(REPO), "main", check=False)
        assert push.returncode != 0 and "403" in push.stderr
        assert srv.lfs_objects(REPO) == {} and srv.ls_tree(REPO, "main") == []


def test_dropped_lfs_uploads(tmp_path: Path) -> None:
    # git-lfs retries a dropped PUT (maxretries=1: two tries), so drop both tries to make the push fail.
    with GitLfsServer(tmp_path / "srv", drop_lfs_upload_after=MB, drop_lfs_upload_count=2) as srv:
        env = srv.client_env()
        work = work_repo(tmp_path / "work", env)
        git(work, env, "config", "lfs.transfer.maxretries", "1")
        weights = work / "w.safetensors"
        weights.write_bytes(os.urandom(3 * MB))
        git(work, env, "add", ".")
        git(work, env, "commit", "-qm", "w")
        first = git(work, env, "push", srv.repo_url(REPO), "main", check=False)
        assert first.returncode != 0
        uploads = [(r.status, r.bytes_in, r.detail) for r in srv.requests if r.kind == "lfs-upload" and r.user]
        assert uploads == [(0, MB, "dropped")] * 2
        assert srv.lfs_objects(REPO) == {} and srv.ls_tree(REPO, "main") == []
        assert not [p for p in srv.lfs_root.rglob("*") if p.is_file()]  # no partial object left behind
        git(work, env, "push", srv.repo_url(REPO), "main")  # drops used up
        assert srv.lfs_objects(REPO) == {sha256(weights): 3 * MB}
        assert srv.lfs_bytes_uploaded == 5 * MB


def test_streams_big_bodies_and_serves_concurrently(srv: GitLfsServer, tmp_path: Path) -> None:
    size = 128 * MB
    blob = tmp_path / "big.bin"
    with blob.open("wb") as f:
        for _ in range(size // (8 * MB)):
            f.write(os.urandom(8 * MB))
    oid = sha256(blob)
    path = f"/{REPO}.git/info/lfs/objects/storage/{oid}"
    auth = {"Authorization": basic("user", "secret")}
    host, port = "127.0.0.1", int(srv.url.rsplit(":", 1)[1])

    tracemalloc.start()
    try:
        conn = http.client.HTTPConnection(host, port, timeout=60)
        with blob.open("rb") as body:
            conn.request("PUT", path, body=body, headers={**auth, "Content-Length": str(size)})
            assert conn.getresponse().status == 200
        conn.close()
        conn = http.client.HTTPConnection(host, port, timeout=60)
        conn.request("GET", path, headers=auth)
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("Content-Length") == str(size)
        digest = hashlib.sha256()
        while chunk := resp.read(MB):
            digest.update(chunk)
        conn.close()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert digest.hexdigest() == oid
    assert peak < 32 * MB, f"server buffered the body: peak {peak / MB:.0f} MiB"
    assert srv.lfs_objects(REPO) == {oid: size}

    def info_refs(_: int) -> int:
        req = urllib.request.Request(f"{srv.repo_url(REPO)}/info/refs?service=git-upload-pack", headers=auth)
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(info_refs, range(16))) == [200] * 16
