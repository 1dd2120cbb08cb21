"""Symbolic links, loops and special files in a model folder: one rule for every publisher.

Real servers on 127.0.0.1 (git http-backend + LFS, and the HF/ModelScope API stand-in driven by
the real SDKs), the real ``vlhub`` console script, no mocks. A link that resolves outside the
model folder is refused by the preflight (exit 2, one line naming it and the fix, nothing sent)
unless ``--follow-symlinks``; a linked file is always sent as its content, never as a link;
loops, broken links and named pipes are refused without hanging and without opening them.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import run_vlhub
from publish_helpers import MB, files_containing, hub_server_class, make_model
from servers.git_lfs import GitLfsServer

CANARY = "canary-symlink-5a1c9e"
SECRET = "-----BEGIN OPENSSH PRIVATE KEY----- not-really-a-key-7d41f0"
USER = "tester"
REPO = "org/InternVL2-links"
FIX = "remove the link, copy the files in, or rerun with --follow-symlinks to send them"
#: No publish of a few small files may take longer than this; a hang on a loop or a pipe would.
TIMEOUT = 120


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[GitLfsServer]:
    with GitLfsServer(tmp_path / "srv", token=CANARY) as server:
        yield server


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Any]:
    with hub_server_class()(tmp_path / "hub", token=CANARY, user=USER) as server:
        yield server


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root`` without following links or opening anything but regular files."""
    result = {}
    for dirpath, dirs, names in os.walk(root):  # followlinks=False: a loop is listed, not entered
        for name in sorted(dirs + names):
            path = Path(dirpath) / name
            st = path.lstat()
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                result[rel] = f"link:{os.readlink(path)}"
            elif path.is_dir():
                result[rel] = "dir"
            elif path.is_file():
                result[rel] = f"{hashlib.sha256(path.read_bytes()).hexdigest()}:{st.st_mtime_ns}"
            else:
                result[rel] = f"special:{st.st_mode:o}"
    return result


def vlhub_publish(folder: Path, targets: list[str], *args: str,
                  env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    proc = run_vlhub("publish", str(folder), *[a for t in targets for a in ("--to", t)], *args, env=env,
                     timeout=TIMEOUT)
    return proc, time.monotonic() - start


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    assert CANARY not in out
    return [line for line in out.splitlines() if line.startswith("Error:")]


def outside_layout(tmp: Path, kind: str) -> tuple[Path, Path]:
    """A model folder with a link out of it: a folder (``extras -> ../private``) or a file (``key -> ...``)."""
    private = tmp / "private"
    private.mkdir()
    (private / "id_rsa").write_text(SECRET + "\n")
    model = make_model(tmp / "model")
    if kind == "dir":
        (model / "extras").symlink_to(Path("..") / "private")
    else:
        (model / "notes.txt").symlink_to(Path("..") / "private" / "id_rsa")
    return model, private


def git_modes(srv: GitLfsServer, ref: str = "main") -> dict[str, str]:
    out = subprocess.run(["git", "--git-dir", str(srv.repo_path(REPO)), "ls-tree", "-r", "-z", ref],
                         capture_output=True, text=True)
    modes = {}
    for line in out.stdout.split("\0"):
        if line:
            meta, _, path = line.partition("\t")
            modes[path] = meta.split()[0]
    return modes


def commits(srv: GitLfsServer) -> int:
    out = subprocess.run(["git", "--git-dir", str(srv.repo_path(REPO)), "rev-list", "--count", "main"],
                         capture_output=True, text=True)
    return int(out.stdout.strip() or 0)


class Targets:
    """One target of each kind and what it holds, for the parametrized tests."""

    def __init__(self, name: str, srv: GitLfsServer, hub: Any, tmp: Path) -> None:
        self.name, self.srv, self.hub = name, srv, hub
        self.repo = f"{USER}/InternVL2-{name}-links"
        self.target = {"git": f"git:{srv.repo_url(REPO)}", "hf": f"hf:{self.repo}",
                       "modelscope": f"modelscope:{self.repo}"}[name]
        self.env = {"VLHUB_GIT_TOKEN": CANARY, "VLHUB_GIT_USER": "user", **hub.env(),
                    "MODELSCOPE_CACHE": str(tmp / "ms-cache")}

    def files(self) -> dict[str, bytes]:
        if self.name == "git":
            return {p: self.srv.read_blob(REPO, "main", p) for p in self.srv.ls_tree(REPO, "main")}
        return self.hub.files(self.repo) if self.hub.exists(self.repo) else {}

    def nothing_sent(self) -> None:
        if self.name == "git":
            assert self.srv.ls_tree(REPO, "main") == []
            assert not [r for r in self.srv.requests if r.kind in ("lfs-upload", "receive-pack")]
        else:
            assert not self.hub.exists(self.repo)
            assert self.hub.lfs_bytes_uploaded == 0
        assert files_containing(self.srv.root, SECRET.split()[-1]) == []
        assert files_containing(self.hub.root, SECRET.split()[-1]) == []


@pytest.mark.parametrize("kind", ["dir", "file"])
@pytest.mark.parametrize("name", ["git", "hf", "modelscope"])
def test_link_out_of_the_folder_is_refused(srv: GitLfsServer, hub: Any, tmp_path: Path, isolated: Path,
                                           name: str, kind: str) -> None:
    model, private = outside_layout(tmp_path, kind)
    link, where = ("extras", private) if kind == "dir" else ("notes.txt", private / "id_rsa")
    before, before_private = snapshot(model), snapshot(private)
    t = Targets(name, srv, hub, tmp_path)
    for args in (("--dry-run",), ()):
        proc, _ = vlhub_publish(model, [t.target], *args, env=t.env)
        assert proc.returncode == 2, proc.stderr
        errors = error_lines(proc)
        assert len(errors) == 1, proc.stderr
        assert f"'{link}' -> '{where}'" in errors[0] and FIX in errors[0]
        assert "symbolic links lead outside the model folder" in errors[0]
        assert "ready" not in proc.stderr
        t.nothing_sent()
    assert files_containing(isolated, SECRET.split()[-1]) == []
    assert snapshot(model) == before and snapshot(private) == before_private


@pytest.mark.parametrize("name", ["git", "hf", "modelscope"])
def test_follow_symlinks_sends_the_content_and_names_the_links(srv: GitLfsServer, hub: Any, tmp_path: Path,
                                                                name: str) -> None:
    model, private = outside_layout(tmp_path, "dir")
    (model / "notes.txt").symlink_to(Path("..") / "private" / "id_rsa")
    before = snapshot(model)
    t = Targets(name, srv, hub, tmp_path)
    proc, _ = vlhub_publish(model, [t.target], "--dry-run", "--follow-symlinks", "--json", env=t.env)
    assert proc.returncode == 0, proc.stderr
    pre = json.loads(proc.stdout)["targets"][0]["preflight"]
    assert {"extras/id_rsa", "notes.txt"} <= {f["path"] for f in pre["files"]}
    assert pre["checks"]["symlinks_followed"] == [f"extras -> {private}", f"notes.txt -> {private / 'id_rsa'}"]
    table, _ = vlhub_publish(model, [t.target], "--dry-run", "--follow-symlinks", env=t.env)
    assert table.returncode == 0, table.stderr
    for path in ("extras/id_rsa", "notes.txt"):
        assert path in table.stderr  # the table names each file sent through a link
    t.nothing_sent()

    proc, _ = vlhub_publish(model, [t.target], "--follow-symlinks", "--json", env=t.env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["targets"][0]["result"]["changed"]
    files = t.files()
    content = (private / "id_rsa").read_bytes()
    assert files["extras/id_rsa"] == content and files["notes.txt"] == content
    assert files["config.json"] == (model / "config.json").read_bytes()
    if name == "git":
        assert {m for p, m in git_modes(srv).items()} <= {"100644"}
    assert snapshot(model) == before


def test_folder_of_links_into_a_base_folder_publishes_files_to_git(srv: GitLfsServer, tmp_path: Path) -> None:
    """Every file a relative link into ../base: the clone holds regular files, and a rerun changes nothing."""
    base = make_model(tmp_path / "base", {"model-00001-of-00002.safetensors": 2 * MB,
                                          "model-00002-of-00002.safetensors": MB})
    model = tmp_path / "model"
    model.mkdir()
    for f in sorted(base.iterdir()):
        (model / f.name).symlink_to(Path("..") / "base" / f.name)
    before, before_base = snapshot(model), snapshot(base)
    env = {"VLHUB_GIT_TOKEN": CANARY, "VLHUB_GIT_USER": "user"}
    url = f"git:{srv.repo_url(REPO)}"

    refused, _ = vlhub_publish(model, [url], "--dry-run", env=env)  # every one leads out of the folder
    assert refused.returncode == 2 and FIX in error_lines(refused)[0]
    assert f"'config.json' -> '{base / 'config.json'}'" in refused.stderr

    first, _ = vlhub_publish(model, [url], "--follow-symlinks", "--json", env=env)
    assert first.returncode == 0, first.stderr
    modes = git_modes(srv)
    assert "120000" not in modes.values() and set(modes.values()) == {"100644"}
    clone = srv.clone(REPO, tmp_path / "clone")
    for f in base.iterdir():
        assert not (clone / f.name).is_symlink() and (clone / f.name).read_bytes() == f.read_bytes(), f.name
    assert srv.is_pointer(REPO, "main", "model-00001-of-00002.safetensors")
    head = commits(srv)

    second, _ = vlhub_publish(model, [url], "--follow-symlinks", "--json", env=env)
    assert second.returncode == 0, second.stderr
    result = json.loads(second.stdout)["targets"][0]["result"]
    assert not result["changed"] and result["bytes_sent"] == 0 and commits(srv) == head
    assert snapshot(model) == before and snapshot(base) == before_base


def test_links_on_the_remote_are_replaced_by_files(srv: GitLfsServer, tmp_path: Path) -> None:
    """A remote holding mode-120000 links (an older publish) is repaired: the preflight plans them, the push fixes them."""
    model = make_model(tmp_path / "model")
    (model / "shared").mkdir()
    (model / "shared" / "preprocessor_config.json").write_text('{"image_size": 448}\n')
    (model / "preprocessor_config.json").symlink_to(Path("shared") / "preprocessor_config.json")  # inside: allowed
    env = {"VLHUB_GIT_TOKEN": CANARY, "VLHUB_GIT_USER": "user"}
    url = f"git:{srv.repo_url(REPO)}"
    srv.create_repo(REPO)
    work = tmp_path / "old"
    cenv = srv.client_env()
    subprocess.run(["git", "clone", "-q", srv.repo_url(REPO), str(work)], env=cenv, check=True, capture_output=True)
    (work / "preprocessor_config.json").symlink_to(Path("shared") / "preprocessor_config.json")
    for cmd in (["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "links"],
                ["push", "-q", "origin", "HEAD:main"]):
        subprocess.run(["git", "-C", str(work), *cmd], env=cenv, check=True, capture_output=True)
    assert git_modes(srv)["preprocessor_config.json"] == "120000"

    dry, _ = vlhub_publish(model, [url], "--dry-run", "--json", env=env)
    assert dry.returncode == 0, dry.stderr
    planned = {f["path"]: f for f in json.loads(dry.stdout)["targets"][0]["preflight"]["files"]}
    assert not planned["preprocessor_config.json"]["on_remote"]
    proc, _ = vlhub_publish(model, [url], "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert git_modes(srv)["preprocessor_config.json"] == "100644"
    assert srv.read_blob(REPO, "main", "preprocessor_config.json") == b'{"image_size": 448}\n'
    assert srv.read_blob(REPO, "main", "shared/preprocessor_config.json") == b'{"image_size": 448}\n'


def test_loops_are_refused_quickly(srv: GitLfsServer, hub: Any, tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    (model / "a").symlink_to(".")
    (model / "sub").mkdir()
    (model / "sub" / "loop").symlink_to(Path("..") / ".." / "model")
    (model / "self").symlink_to("self")
    before = snapshot(model)
    t = [Targets(n, srv, hub, tmp_path) for n in ("git", "hf", "modelscope")]
    for args in (("--dry-run",), (), ("--follow-symlinks",)):
        proc, took = vlhub_publish(model, [x.target for x in t], *args, env=t[0].env)
        assert took < 60 and proc.returncode == 2, proc.stderr
        errors = error_lines(proc)
        assert len(errors) == 3, proc.stderr
        for line in errors:
            assert "symbolic link loop" in line and "'a' -> '.'" in line and "'sub/loop' -> '../../model'" in line
            assert "'self' -> 'self'" in line and "Fix: remove the link" in line
        for x in t:
            x.nothing_sent()
    assert snapshot(model) == before


def test_named_pipes_are_never_opened(srv: GitLfsServer, hub: Any, tmp_path: Path) -> None:
    """A FIFO (also one named like a file the card reads) is refused by name; the run cannot block on it."""
    model = make_model(tmp_path / "model")
    os.mkfifo(model / "weights.fifo")
    os.mkfifo(model / "vlhub_provenance.json")
    before = snapshot(model)
    t = [Targets(n, srv, hub, tmp_path) for n in ("git", "hf", "modelscope")]
    for args in (("--dry-run",), ()):
        proc, took = vlhub_publish(model, [x.target for x in t], *args, env=t[0].env)
        assert took < 60 and proc.returncode == 2, proc.stderr
        errors = error_lines(proc)
        assert len(errors) == 3, proc.stderr
        for line in errors:
            assert "not a regular file" in line and "'weights.fifo' (named pipe)" in line
            assert "'vlhub_provenance.json' (named pipe)" in line and "Fix: remove it from the model folder" in line
        for x in t:
            x.nothing_sent()
    # nobody holds the pipe open for reading: a non-blocking writer finds no reader
    with pytest.raises(OSError):
        os.open(model / "weights.fifo", os.O_WRONLY | os.O_NONBLOCK)
    assert snapshot(model) == before


def test_broken_links_are_named(srv: GitLfsServer, hub: Any, tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    (model / "config.json").unlink()
    (model / "config.json").symlink_to(Path("..") / "base" / "config.json")
    before = snapshot(model)
    t = [Targets(n, srv, hub, tmp_path) for n in ("git", "hf", "modelscope")]
    proc, _ = vlhub_publish(model, [x.target for x in t], "--dry-run", env=t[0].env)
    assert proc.returncode == 2, proc.stderr
    errors = error_lines(proc)
    assert len(errors) == 3, proc.stderr
    for line in errors:
        assert "broken symbolic links" in line and "'config.json' -> '../base/config.json'" in line
        assert "Fix: restore the target" in line
        assert "config.json is missing" not in line  # one line for one cause
    for x in t:
        x.nothing_sent()
    assert snapshot(model) == before


def test_links_inside_the_folder_are_sent_as_content(srv: GitLfsServer, hub: Any, tmp_path: Path) -> None:
    """Links that stay inside the folder need no flag; every publisher sends the file, never the link."""
    model = make_model(tmp_path / "model")
    (model / "shared").mkdir()
    (model / "shared" / "preprocessor_config.json").write_text('{"image_size": 448}\n')
    (model / "preprocessor_config.json").symlink_to(Path("shared") / "preprocessor_config.json")
    (model / "tokenizer.json").symlink_to("preprocessor_config.json")  # a chain of links
    content = (model / "shared" / "preprocessor_config.json").read_bytes()
    t = [Targets(n, srv, hub, tmp_path) for n in ("git", "hf", "modelscope")]
    proc, _ = vlhub_publish(model, [x.target for x in t], "--json", env=t[0].env)
    assert proc.returncode == 0, proc.stderr
    for x in t:
        files = x.files()
        assert files["preprocessor_config.json"] == content and files["tokenizer.json"] == content, x.name
    assert set(git_modes(srv).values()) == {"100644"}
