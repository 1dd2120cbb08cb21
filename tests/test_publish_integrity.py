"""What lands is what was meant: a publish exits 0 only when the server holds every object its pointers name.

Real servers on 127.0.0.1 (git http-backend + giftless LFS, the HF API stand-in), the real ``vlhub``
console script, no mocks of the engine:

- a weight rewritten while it uploads (the server's ``before_lfs_upload`` switch does it mid-PUT), and a
  server that rejects (422) or loses (``discard_lfs_uploads``) an object: exit 1, nothing committed;
- names with spaces and glob characters over 10 MB go through LFS and a clone's ``git check-attr`` agrees;
- a ``.gitattributes`` in GBK, and the remote's own ``.gitattributes``, merged as bytes;
- a push that loses a race, and a push to a non-bare repository, each with its own fix;
- a ``file://`` or path remote stores real copies of the LFS objects (no hard or symbolic links);
- the staging's free space is checked before it is written;
- the published ``vlhub_provenance.json`` holds no local paths (the local file is unchanged).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import run_vlhub
from publish_helpers import MB, hub_server_class, make_model, publish_git, tree_digest
from servers.git_lfs import GitLfsServer

CANARY = "canary-integrity-81b2f0"
REPO = "org/InternVL2-integrity"
BIG = 10 * MB + 1  # over the LFS threshold (files over 10 MB go through LFS whatever their name)


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[GitLfsServer]:
    with GitLfsServer(tmp_path / "srv", token=CANARY) as server:
        yield server


def publish(folder: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    return publish_git(folder, url, CANARY, *args)


def errors(proc: subprocess.CompletedProcess) -> list[str]:
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return [line for line in proc.stderr.splitlines() if line.startswith("Error:")]


def git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True).stdout.decode()


# ---------------------------------------------------------------- 1. objects the server lacks


@pytest.mark.parametrize("how", ["rewrite", "rewrite-keep-stamp"])
def test_a_weight_rewritten_during_its_upload_fails_and_commits_nothing(srv: GitLfsServer, tmp_path: Path,
                                                                        how: str) -> None:
    """The shard changes while git-lfs sends it: the server answers 422 (content != oid), git-lfs still exits 0.

    ``rewrite``: caught by the size/mtime/inode check right after the upload. ``rewrite-keep-stamp``: the
    mtime is put back, so only the batch API question (does the server hold the object?) can catch it.
    """
    model = make_model(tmp_path / "model", {"model.safetensors": 40 * MB})
    shard = model / "model.safetensors"
    done: list[str] = []

    def rewrite(oid: str) -> None:
        if done or shard.stat().st_size != 40 * MB:
            return
        st = shard.stat()
        with open(shard, "r+b") as out:  # same size, same inode, new content (the safetensors header kept)
            out.seek(4096)
            out.write(os.urandom(40 * MB - 4096))
        if how == "rewrite-keep-stamp":
            os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))
        done.append(oid)

    srv.before_lfs_upload = rewrite
    proc = publish(model, srv.repo_url(REPO))
    assert done, "the shard was not rewritten during its upload"
    assert proc.returncode == 1, proc.stderr[-1500:]
    lines = errors(proc)
    assert len(lines) == 1, proc.stderr[-1500:]
    assert "model.safetensors" in lines[0] and "nothing was committed" in lines[0]
    assert "rerun `vlhub publish" in lines[0]
    if how == "rewrite":
        assert "changed during upload" in lines[0]
    else:
        assert "does not hold model.safetensors" in lines[0]
    assert srv.ls_tree(REPO, "main") == []  # no commit, no pointer to a missing object
    assert not [r for r in srv.requests if r.kind == "receive-pack"]

    srv.before_lfs_upload = None  # the rerun the message names completes
    rerun = publish(model, srv.repo_url(REPO))
    assert rerun.returncode == 0, rerun.stderr[-1500:]
    clone = srv.clone(REPO, tmp_path / "clone")
    assert (clone / "model.safetensors").read_bytes() == shard.read_bytes()


def test_a_server_that_loses_objects_fails_the_publish(srv: GitLfsServer, tmp_path: Path) -> None:
    """The server answers 200 to every PUT and stores nothing (git-lfs, its verify failing, still exits 0)."""
    model = make_model(tmp_path / "model", {"model.safetensors": 3 * MB})
    srv.discard_lfs_uploads = True
    proc = publish(model, srv.repo_url(REPO))
    assert proc.returncode == 1, proc.stderr[-1500:]
    lines = errors(proc)
    assert len(lines) == 1 and "does not hold model.safetensors" in lines[0] and "nothing was committed" in lines[0]
    assert srv.ls_tree(REPO, "main") == [] and srv.lfs_objects(REPO) == {}
    assert CANARY not in proc.stderr + proc.stdout


def test_objects_the_remote_tree_names_but_its_server_lost_are_sent_again(srv: GitLfsServer, tmp_path: Path) -> None:
    model = make_model(tmp_path / "model", {"model.safetensors": 2 * MB})
    assert publish(model, srv.repo_url(REPO)).returncode == 0
    for obj in (srv.lfs_root / "org" / "InternVL2-integrity").iterdir():
        obj.unlink()  # the server lost them; its tree still points to them
    (model / "extra.txt").write_text("one more file\n")
    proc = publish(model, srv.repo_url(REPO))
    assert proc.returncode == 0, proc.stderr[-1500:]
    clone = srv.clone(REPO, tmp_path / "clone")
    assert (clone / "model.safetensors").read_bytes() == (model / "model.safetensors").read_bytes()


# ---------------------------------------------------------------- 2. names with spaces and glob characters

NAMES = ["training log.txt", "merges (1).txt", "big!.dat", "a[1].dat", "#x.dat", "*star*.dat", "q?.dat",
         "sub dir/x y.dat", "!bang.dat", 'quo"te.dat', "back\\slash.dat", "tab\tname.dat", "模型 权重.dat",
         "trailing .dat ", "[ab].dat"]


def test_big_files_with_special_names_go_through_lfs(srv: GitLfsServer, tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    for name in NAMES:
        path = model / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as out:  # sparse, so cheap; one shared object
            out.truncate(BIG)
    (model / "ab.dat").write_text("small: '[ab].dat' must not match it\n")
    proc = publish(model, srv.repo_url(REPO))
    assert proc.returncode == 0, proc.stderr[-2000:]
    clone = srv.clone(REPO, tmp_path / "clone", lfs=False)
    attrs = git("check-attr", "-z", "filter", "--", *NAMES, "ab.dat", cwd=clone).split("\0")
    filters = {attrs[i]: attrs[i + 2] for i in range(0, len(attrs) - 2, 3)}
    for name in NAMES:
        assert srv.is_pointer(REPO, "main", name), name
        assert filters[name] == "lfs", (name, (clone / ".gitattributes").read_text())
    assert filters["ab.dat"] == "unspecified" and not srv.is_pointer(REPO, "main", "ab.dat")
    env = srv.client_env()
    subprocess.run(["git", "lfs", "pull"], cwd=clone, env=env, check=True, capture_output=True)
    assert (clone / "training log.txt").stat().st_size == BIG
    assert git("status", "--porcelain", cwd=clone, env=env) == ""  # the attributes agree with the tree


def test_attr_pattern_matches_exactly_one_path(tmp_path: Path) -> None:
    from vlhub.core.publishing import attr_pattern

    repo = tmp_path / "r"
    git("init", "-q", str(repo))
    tricky = [*NAMES, " lead.dat", "new\nline.dat", "end\\", "x\\*.dat", "**", "dir[1]/f?.dat", "é.dat", "\x7f.dat"]
    names = [*tricky, "ab.dat", "a1.dat", "xstarx.dat", "q1.dat", "sub dir/other.dat", "lead.dat", "dir1/f1.dat",
             "x\\a.dat", "e.dat"]
    lines = "".join(f"{attr_pattern(n)} filter=lfs\n" for n in tricky)
    (repo / ".gitattributes").write_bytes(lines.encode())
    out = subprocess.run(["git", "check-attr", "--stdin", "-z", "filter"], cwd=repo, check=True, capture_output=True,
                         input="".join(f"{n}\0" for n in names).encode()).stdout.decode().split("\0")
    got = {out[i]: out[i + 2] for i in range(0, len(out) - 2, 3)}
    assert got == {n: "lfs" if n in tricky else "unspecified" for n in names}


# ---------------------------------------------------------------- 3. .gitattributes as bytes, merged

GBK_COMMENT = "# 模型权重用 LFS 存储\n".encode("gbk")


def test_a_gbk_gitattributes_is_kept_as_bytes(srv: GitLfsServer, tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    (model / ".gitattributes").write_bytes(GBK_COMMENT + b"*.json text eol=lf\r\n"
                                           b"*.npz filter=lfs diff=lfs merge=lfs -text\n")
    (model / "extra.npz").write_bytes(b"\0" * 1000)
    proc = publish(model, srv.repo_url(REPO))
    assert proc.returncode == 0, proc.stderr[-1500:]
    committed = srv.read_blob(REPO, "main", ".gitattributes")
    assert committed.startswith(GBK_COMMENT) and b"*.safetensors filter=lfs" in committed
    assert srv.is_pointer(REPO, "main", "extra.npz")  # the folder's rule is honoured
    again = publish(model, srv.repo_url(REPO), "--json")  # merging the merge changes nothing
    assert again.returncode == 0 and not json.loads(again.stdout)["targets"][0]["result"]["changed"]


def test_the_remotes_gitattributes_is_merged(srv: GitLfsServer, tmp_path: Path) -> None:
    """A repository that already has a .gitattributes (its own rules, a GBK comment) keeps every rule."""
    seed = tmp_path / "seed"
    env = srv.client_env()
    git("init", "-q", "-b", "main", str(seed), env=env)
    theirs = GBK_COMMENT + (b"*.custom filter=lfs diff=lfs merge=lfs -text\n"
                            b"*tfevents* filter=lfs diff=lfs merge=lfs -text\n")
    (seed / ".gitattributes").write_bytes(theirs)
    git("add", ".", cwd=seed, env=env)
    git("commit", "-qm", "initial commit", cwd=seed, env=env)
    git("push", "-q", srv.repo_url(REPO), "main", cwd=seed, env=env)
    model = make_model(tmp_path / "model")
    (model / ".gitattributes").write_bytes(b"*.npz filter=lfs diff=lfs merge=lfs -text\n")
    (model / "w.custom").write_bytes(b"x" * 100)
    proc = publish(model, srv.repo_url(REPO))
    assert proc.returncode == 0, proc.stderr[-1500:]
    committed = srv.read_blob(REPO, "main", ".gitattributes")
    assert committed.startswith(theirs)
    assert b"*.npz filter=lfs" in committed and b"*.safetensors filter=lfs" in committed
    assert srv.is_pointer(REPO, "main", "w.custom")  # the remote's rule decides it, as it will for clones


def test_hf_via_git_merges_the_hubs_gitattributes(tmp_path: Path) -> None:
    with hub_server_class()(tmp_path / "hub", token=CANARY, user="tester") as hub:
        from servers.hub_api import HF_DEFAULT_GITATTRIBUTES

        hub.create_repo("tester/InternVL2-attrs")
        model = make_model(tmp_path / "model")
        (model / ".gitattributes").write_bytes(GBK_COMMENT + b"*.npz filter=lfs diff=lfs merge=lfs -text\n")
        proc = run_vlhub("publish", str(model), "--to", "hf:tester/InternVL2-attrs", "--via", "git",
                         env={**hub.env(), "MODELSCOPE_CACHE": str(tmp_path / "ms")})
        assert proc.returncode == 0, proc.stderr[-1500:]
        committed = hub.files("tester/InternVL2-attrs")[".gitattributes"]
        for line in HF_DEFAULT_GITATTRIBUTES.splitlines():
            assert line.encode() in committed.splitlines(), line
        assert GBK_COMMENT.rstrip() in committed and b"*.npz filter=lfs" in committed


# ---------------------------------------------------------------- 4. refused pushes, each with its fix


def test_two_publishes_racing_to_one_new_remote(srv: GitLfsServer, tmp_path: Path) -> None:
    """Both read the empty remote, both upload (held until all four PUTs arrived), both push: one wins."""
    first = make_model(tmp_path / "a", {"model.safetensors": MB})
    second = tmp_path / "b"
    shutil.copytree(first, second)
    arrived, gate = [], threading.Event()

    def hold(oid: str) -> None:
        arrived.append(oid)
        if len(arrived) >= 4:
            gate.set()
        gate.wait(60)

    srv.before_lfs_upload = hold
    exe = Path(sys.executable).parent / "vlhub"
    env = {**os.environ, "VLHUB_GIT_TOKEN": CANARY}
    procs = [subprocess.Popen([str(exe), "publish", str(folder), "--to", f"git:{srv.repo_url(REPO)}",
                               "--message", f"from {folder.name}"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for folder in (first, second)]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 1], outs
    loser = next(err for p, (_, err) in zip(procs, outs) if p.returncode == 1)
    lines = [line for line in loser.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in loser, loser[-1500:]
    assert "the remote branch moved while publishing (someone else pushed)" in lines[0]
    assert "Fix: rerun" in lines[0]
    assert len(git("--git-dir", str(srv.repo_path(REPO)), "rev-list", "main").split()) == 1


def test_a_non_bare_remote_with_the_branch_checked_out(tmp_path: Path) -> None:
    remote = tmp_path / "clone"
    git("init", "-q", "-b", "main", str(remote))
    (remote / "notes.txt").write_text("hello\n")
    git("add", ".", cwd=remote)
    git("commit", "-qm", "first", cwd=remote)
    model = make_model(tmp_path / "model")
    for url in (str(remote), f"file://{remote}"):
        proc = run_vlhub("publish", str(model), "--to", f"git:{url}")
        assert proc.returncode == 1, proc.stderr[-1500:]
        lines = errors(proc)
        assert len(lines) == 1
        assert "non-bare repository with the branch checked out" in lines[0]
        assert "Fix: push to a bare repository" in lines[0]
    assert git("rev-list", "--count", "main", cwd=remote).strip() == "1"


def test_git_error_hints_match_the_rejection() -> None:
    from vlhub.core.publishing import git_error

    url = "https://example.invalid/o/n.git"
    cases = {
        " ! [rejected]        main -> main (fetch first)\nerror: failed to push some refs": "moved while publishing",
        " ! [rejected]        main -> main (non-fast-forward)": "moved while publishing",
        "remote: error: cannot lock ref 'refs/heads/main': reference already exists": "moved while publishing",
        "remote: error: refusing to update checked out branch: refs/heads/main\n"
        " ! [remote rejected] main -> main (branch is currently checked out)": "non-bare repository",
        "remote: error: file big.bin (52428800 bytes) is larger than 10 MB; track it with Git LFS\n"
        " ! [remote rejected] main -> main (pre-receive hook declined)": "over the server's size limit",
        "remote: GL-HOOK-ERR: commits must be signed\n ! [remote rejected] main -> main (pre-receive hook declined)":
            "commits must be signed",
    }
    for stderr, words in cases.items():
        error = git_error("git push", stderr, url)
        line = error.one_line()
        assert words in line and error.exit_code == 1, (stderr, line)
    other = git_error("git push", list(cases)[-1], url).one_line()
    assert other.endswith("Fix: read the server's message above")
    assert "Fix: rerun" in git_error("git push", list(cases)[0], url).one_line()
    assert "Fix: push to a bare repository" in git_error("git push", list(cases)[3], url).one_line()
    assert "Git LFS" in git_error("git push", list(cases)[4], url).one_line()
    full = git_error("git hash-object", "fatal: unable to write loose object: No space left on device", url)
    assert "is full" in full.one_line() and "df -h" in full.one_line()


# ---------------------------------------------------------------- 5. free space in the staging


def test_the_staging_needs_free_space_before_it_is_written(srv: GitLfsServer, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch, isolated: Path) -> None:
    from vlhub.core import boundary, publish as core_publish

    model = make_model(tmp_path / "model", {"model.safetensors": 3 * MB})
    (model / "notes.txt").write_bytes(b"n" * (2 * MB))
    monkeypatch.setenv("VLHUB_GIT_TOKEN", CANARY)
    real = shutil.disk_usage

    def full(path: Any) -> Any:
        usage = real(path)
        return usage._replace(free=MB) if str(path).startswith(str(isolated)) else usage

    monkeypatch.setattr(boundary.shutil, "disk_usage", full)
    report = core_publish.publish(model, [f"git:{srv.repo_url(REPO)}"], {})
    error = report.results[0].error
    assert report.exit_code == 1 and "the publish staging of git:" in error, error
    assert "needs" in error and "only 1.0 MiB is free" in error
    assert not [r for r in srv.requests if r.kind in ("lfs-upload", "receive-pack")]
    assert srv.ls_tree(REPO, "main") == []


# ---------------------------------------------------------------- 6. local remotes get real copies


@pytest.mark.parametrize("form", ["file", "path"])
def test_a_local_remote_stores_copies_not_links(tmp_path: Path, form: str) -> None:
    model = make_model(tmp_path / "model", {"model.safetensors": 3 * MB})
    bare = tmp_path / "remote.git"
    git("init", "-q", "--bare", "-b", "main", str(bare))
    url = f"file://{bare}" if form == "file" else str(bare)
    proc = run_vlhub("publish", str(model), "--to", f"git:{url}", "--json")
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert json.loads(proc.stdout)["targets"][0]["result"]["bytes_sent"] >= 3 * MB
    source = (model / "model.safetensors").stat()
    stored = [p for p in (bare / "lfs" / "objects").rglob("*") if p.is_file() or p.is_symlink()]
    assert len(stored) == 2  # model.safetensors, tokenizer.model
    for obj in stored:
        st = obj.lstat()
        assert not obj.is_symlink() and st.st_nlink == 1 and st.st_ino != source.st_ino, obj
    assert source.st_nlink == 1
    clone = tmp_path / "clone"
    git("clone", "-q", url, str(clone))
    git("lfs", "install", "--local", cwd=clone)  # the tests' git config has no LFS filter
    git("lfs", "pull", cwd=clone)
    assert (clone / "model.safetensors").read_bytes() == (model / "model.safetensors").read_bytes()
    again = run_vlhub("publish", str(model), "--to", f"git:{url}", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["targets"][0]["result"]["bytes_sent"] == 0


# ---------------------------------------------------------------- 8. provenance without local paths


def test_published_provenance_holds_no_local_paths(srv: GitLfsServer, tmp_path: Path) -> None:
    home = Path(os.environ["HOME"])
    run_dir = home / ".vlhub" / "runs" / "20261201-ab12"
    run_dir.mkdir(parents=True)
    model = make_model(tmp_path / "model")
    base = home / "models" / "InternVL2-2B"
    provenance = {"format": "vlhub-provenance/2", "format_version": 2, "base_model": str(base),
                  "run": {"id": "20261201-ab12", "dir": str(run_dir)},
                  "checkpoint": {"path": str(run_dir / "work_dirs" / "iter_500.pth"), "layout": "file", "step": 500},
                  "config": f"{run_dir}/config.py", "remote_code_copied": [f"{base}/modeling_internvl_chat.py"],
                  "verified": {"ok": True, "note": f"loaded {model} and file://{tmp_path}/x"},
                  "files": {"config.json": {"size": 1, "sha256": "0" * 64}}, "datasets": ["lyttt/FoodieQA"]}
    (model / "vlhub_provenance.json").write_text(json.dumps(provenance, indent=2))
    before = tree_digest(model)
    proc = publish(model, srv.repo_url(REPO))
    assert proc.returncode == 0, proc.stderr[-1500:]
    published = srv.read_blob(REPO, "main", "vlhub_provenance.json").decode()
    assert "/tmp/" not in published and str(home) not in published and "~/" not in published
    data = json.loads(published)
    assert data["run"] == {"id": "20261201-ab12", "dir": "20261201-ab12"}
    assert data["checkpoint"]["path"] == "iter_500.pth" and data["base_model"] == "InternVL2-2B"
    assert data["datasets"] == ["lyttt/FoodieQA"] and data["files"] == provenance["files"]
    assert tree_digest(model) == before  # the local file is unchanged
    again = run_vlhub("publish", str(model), "--to", f"git:{srv.repo_url(REPO)}", "--json",
                      env={"VLHUB_GIT_TOKEN": CANARY})
    assert again.returncode == 0 and not json.loads(again.stdout)["targets"][0]["result"]["changed"]


def test_published_provenance_through_the_hub_api(tmp_path: Path) -> None:
    with hub_server_class()(tmp_path / "hub", token=CANARY, user="tester") as hub:
        model = make_model(tmp_path / "model")
        (model / "vlhub_provenance.json").write_text(json.dumps(
            {"run": {"id": "r", "dir": str(tmp_path / "runs" / "r")}, "base_model": "OpenGVLab/InternVL2-2B"}))
        for hub_name in ("hf", "modelscope"):
            repo = f"tester/InternVL2-prov-{hub_name}"
            proc = run_vlhub("publish", str(model), "--to", f"{hub_name}:{repo}",
                             env={**hub.env(), "MODELSCOPE_CACHE": str(tmp_path / "ms")})
            assert proc.returncode == 0, proc.stderr[-1500:]
            data = json.loads(hub.files(repo)["vlhub_provenance.json"])
            assert data == {"run": {"id": "r", "dir": "r"}, "base_model": "OpenGVLab/InternVL2-2B"}, hub_name
