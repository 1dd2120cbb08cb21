"""How a publish spends its time: hashing on several threads, each upload as soon as its file is hashed,
no second read of an unchanged folder, and the benchmark that measures it (issue #21).

Orders of events, never durations: a named pipe (FIFO) gives a file whose bytes arrive only when the test
writes them, so "hashed concurrently" and "uploaded before the next file was hashed" are proven by what
could not have happened otherwise (a one-thread hasher, or an upload that waits for every hash, would stop
on the pipe; the test's guard then fails it). Real servers on 127.0.0.1 (git http-backend + giftless, the
HF-API stand-in), real git-lfs, the real ``vlhub`` console script.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import pytest

from conftest import ROOT, run_vlhub
from publish_helpers import MB, hub_server_class, make_model
from servers.git_lfs import GitLfsServer
from vlhub.core.publishing import HashCache, LocalFile, Remote, Stage, scan
from vlhub.core.publishing.hashing import Hasher
from vlhub.core.publishing.lfs import send

TOKEN = "canary-pipeline-5d1e07"
REPO = "org/InternVL2-pipeline"
GUARD_S = 60  # a deadlock guard, not a speed limit: the pipe is fed anyway after this, and the test fails


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[GitLfsServer]:
    with GitLfsServer(tmp_path / "srv", token=TOKEN) as server:
        yield server


def feed_later(fifo: Path, data: bytes, go: threading.Event) -> tuple[threading.Thread, list[bool]]:
    """A thread that writes ``data`` into ``fifo`` once ``go`` is set (or after the guard); records whether ``go`` was."""
    seen: list[bool] = []

    def write() -> None:
        seen.append(go.wait(GUARD_S))
        with open(fifo, "wb") as out:
            out.write(data)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread, seen


def test_the_hasher_reads_files_at_once(tmp_path: Path) -> None:
    """Two pipes: ``b`` gets its bytes only once ``a`` is being read. One thread (``a`` first, smallest-then-name
    order) would wait on ``a`` forever; two threads read both."""
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    os.mkfifo(a)
    os.mkfifo(b)
    records = [LocalFile(p.name, 3, 0, 0, True) for p in (a, b)]  # a scan refuses pipes: records by hand
    a_open = threading.Event()

    def feed() -> None:
        with open(a, "wb") as out:  # returns once a reader opened a
            a_open.set()
            with open(b, "wb") as other:
                other.write(b"bbb")
            out.write(b"aaa")

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    hasher = Hasher(tmp_path, records, threads=2)
    got: dict[str, str] = {}
    for _ in range(GUARD_S * 10):
        got.update((f.path, oid) for f, oid in hasher.finished(timeout=0.1))
        if not hasher.busy:
            break
    assert a_open.is_set() and got == {"a.bin": hashlib.sha256(b"aaa").hexdigest(),
                                       "b.bin": hashlib.sha256(b"bbb").hexdigest()}, got
    assert hasher.hashed == hasher.total == 6


def test_a_file_that_cannot_be_read_is_reported_and_cancel_stops(tmp_path: Path) -> None:
    (tmp_path / "ok.bin").write_bytes(b"x" * 10)
    records = {f.path: f for f in scan(tmp_path, False).files}
    gone = replace(records["ok.bin"], path="gone.bin", real=str(tmp_path / "gone.bin"))
    hasher = Hasher(tmp_path, [records["ok.bin"], gone], threads=1)
    with pytest.raises(FileNotFoundError):
        hasher.wait()
    cancelled = Hasher(tmp_path, [records["ok.bin"]], threads=1)
    cancelled.cancel()
    assert cancelled.cancelled and not cancelled.busy and cancelled.finished(timeout=0) == []


def test_each_object_is_uploaded_as_soon_as_its_file_is_hashed(srv: GitLfsServer, tmp_path: Path) -> None:
    """``b`` is hashed from a pipe that is fed only when the server receives ``a``'s upload: a publish that
    hashed everything before uploading would never get there."""
    model = make_model(tmp_path / "model", {"a.safetensors": 2 * MB, "b.safetensors": 3 * MB})
    files = {f.path: f for f in scan(model, False).files}
    a, b = files["a.safetensors"], files["b.safetensors"]
    oid_a = hashlib.sha256((model / a.path).read_bytes()).hexdigest()
    fifo = tmp_path / "b.fifo"
    os.mkfifo(fifo)
    upload_of_a = threading.Event()
    srv.before_lfs_upload = lambda oid: upload_of_a.set() if oid == oid_a else None
    writer, fed_after_a = feed_later(fifo, (model / b.path).read_bytes(), upload_of_a)

    stage = Stage(model, Remote(srv.repo_url(REPO), "user", TOKEN))
    stage.setup()
    hasher = Hasher(model, [a, replace(b, real=str(fifo))], threads=2)  # b's hash comes from the pipe
    result = send(stage, [a, b], HashCache(stage.dir / "hashes.json"), set(), hasher=hasher)
    writer.join(GUARD_S)
    assert fed_after_a == [True], "b was hashed before a's upload reached the server"
    assert result.objects_sent == 2 and result.bytes_sent == 5 * MB
    assert srv.lfs_objects(REPO) == {result.oids["a.safetensors"]: 2 * MB, result.oids["b.safetensors"]: 3 * MB}
    assert HashCache(stage.dir / "hashes.json").get(b) == hashlib.sha256((model / b.path).read_bytes()).hexdigest()


def test_the_preflight_starts_hashing_for_the_publish(srv: GitLfsServer, tmp_path: Path) -> None:
    """A real publish's preflight leaves the weights' rows unhashed but has started hashing them; its
    publish takes those results (the cache then holds them); a dry run waits for them (exact table)."""
    from vlhub.core.publishing import GitJob, gitpush

    model = make_model(tmp_path / "model", {"model.safetensors": 4 * MB})
    job = GitJob("git:test", model, Remote(srv.repo_url(REPO), "user", TOKEN), REPO, srv.repo_url(REPO))
    plan = gitpush.preflight(job, {})
    assert not plan.problems and job.stage is not None and job.stage.hasher is not None
    assert {"model.safetensors"} <= set(job.stage.hasher.wait())  # the background hashing of the weights
    dry = gitpush.preflight(GitJob("git:test", model, job.remote, REPO, job.web_url), {"dry_run": True})
    assert dry.hashes["model.safetensors"] == hashlib.sha256((model / "model.safetensors").read_bytes()).hexdigest()
    assert srv.lfs_bytes_uploaded == 0  # preflights send nothing


def test_a_republish_to_the_hub_api_reads_no_weight(tmp_path: Path) -> None:
    """After a publish the hash cache holds the SDK's (or vlhub's) SHA-256 of each weight. A shard then
    rewritten in place with its size, mtime and inode kept (content the cache cannot see) is not read
    again: nothing is hashed, nothing sent, no commit. (A hash cache is only as good as its stamps; a
    changed mtime makes vlhub read the file again: the second half.)"""
    model = make_model(tmp_path / "model", {"model.safetensors": 12 * MB})
    shard = model / "model.safetensors"
    with hub_server_class()(tmp_path / "hub", token=TOKEN, user="tester") as hub:
        env = hub.env()
        first = run_vlhub("publish", str(model), "--to", "hf:tester/m", "--json", env=env)
        assert first.returncode == 0, first.stderr[-2000:]
        received = hub.lfs_bytes_uploaded
        assert received >= 12 * MB
        st = shard.stat()
        with open(shard, "r+b") as out:  # same size and inode, new bytes after the header
            out.seek(4096)
            out.write(os.urandom(4096))
        os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))
        again = run_vlhub("publish", str(model), "--to", "hf:tester/m", "--json", env=env)
        assert again.returncode == 0, again.stderr[-2000:]
        result = json.loads(again.stdout)["targets"][0]["result"]
        assert result["changed"] is False and result["bytes_sent"] == 0
        assert hub.lfs_bytes_uploaded == received

        os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # now the stamp shows the change
        third = run_vlhub("publish", str(model), "--to", "hf:tester/m", "--json", env=env)
        assert third.returncode == 0, third.stderr[-2000:]
        assert json.loads(third.stdout)["targets"][0]["result"]["bytes_sent"] >= 12 * MB
        assert hub.files("tester/m")["model.safetensors"] == shard.read_bytes()


def test_the_benchmark_prints_every_ratio_of_the_issue(tmp_path: Path) -> None:
    """``bench/publish.py`` on a tiny folder, one round: every ratio line, and the server copies deleted."""
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "publish.py"), "--size", "2MB", "--shard", "1MB",
                           "--rounds", "1", "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "VLHUB_HOME": str(tmp_path / "unused")})
    assert proc.returncode == 0, proc.stderr[-2000:]
    for line in ("bound / vlhub --to git", "vlhub --to hf / HfApi.upload_folder", "vlhub --to git / HfApi.upload_folder",
                 "vlhub --to git / tutorial", "re-publish unchanged:", "peak RSS of the publish:"):
        assert line in proc.stdout, proc.stdout
    assert "median of 1 rounds" in proc.stdout and ", 0 LFS bytes received" in proc.stdout
    assert list(tmp_path.iterdir()) == [], "the benchmark left files behind"
