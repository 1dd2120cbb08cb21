"""SIGKILL at random points, then the same command again: the result is complete and byte-identical.

Each command is first run uninterrupted (the reference); then, per seed, it is started, killed with
its whole process group after a seeded random delay within the reference's duration, checked for
half-written output that looks complete, and rerun. ``SOURCE_DATE_EPOCH`` makes the timestamps in
prepared.json and vlhub_provenance.json reproducible, so whole trees can be compared byte for byte.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from conftest import run_vlhub, train_python
from fixtures.checkpoints import build_checkpoint
from fixtures.datasets import make_clot, make_foodieqa
from publish_helpers import MB, hub_server_class, make_model
from servers.git_lfs import GitLfsServer
from fixtures.fake_trainer import FAKE_XTUNER, TOTAL, show_run as _show, wait_for as _wait
from vlhub.core import data
from vlhub.plugins.devtools.tiny_model import make_tiny_model

SEEDS = (1, 2, 3)
TOKEN = "kill-token-3e9a"
EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}
_kills: dict[str, int] = {}


@pytest.fixture(scope="module", autouse=True)
def summary() -> Iterator[None]:
    yield
    print(f"\nkill recovery: {sum(_kills.values())} SIGKILL points "
          f"({', '.join(f'{k} {n}' for k, n in _kills.items())}), every rerun complete and byte-identical")


def tree(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file (content only)."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and ".git" not in p.relative_to(folder).parts}


def leftovers(out: Path) -> list[Path]:
    return [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def timed(args: list[str], env: dict[str, str]) -> float:
    start = time.monotonic()
    proc = run_vlhub(*args, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return time.monotonic() - start


def kill_at(args: list[str], env: dict[str, str], delay: float) -> None:
    """Start ``vlhub ARGS`` in its own process group and SIGKILL the whole group after ``delay`` s."""
    exe = Path(sys.executable).parent / "vlhub"
    proc = subprocess.Popen([str(exe), *args], env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    time.sleep(0.2)  # children of the group are reaped by init


def recover(name: str, args: list[str], env: dict[str, str], duration: float, check_killed: Callable[[], bool],
            check_done: Callable[[], None], seeds: tuple[int, ...] = SEEDS) -> None:
    """Per seed: kill at a random point, check what was left, rerun, check the result.

    ``check_killed`` returns whether the work had already completed; then the rerun may refuse
    to overwrite the complete output (exit 2), which is what the same command does after success.
    """
    for seed in seeds:
        kill_at(args, env, random.Random(seed).uniform(0.05, 0.95) * duration)
        _kills[name] = _kills.get(name, 0) + 1
        complete = check_killed()
        rerun = run_vlhub(*args, env=env, timeout=600)
        assert rerun.returncode == 0 or complete and "already exists" in rerun.stderr, \
            f"seed {seed}: {rerun.stderr[-3000:]}"
        check_done()


def test_data_prepare(tmp_path: Path) -> None:
    source = make_clot(tmp_path, count=400)
    out = tmp_path / "prepared"
    args = ["data", "prepare", "clot", "--source", str(source), "--out", str(out), "--val-fraction", "0.2"]
    duration = timed(args, EPOCH)
    reference = tree(out)
    shutil.rmtree(out)

    def killed() -> bool:  # nothing half-written looks complete: no folder, or the complete one
        assert not out.exists() or tree(out) == reference
        return out.exists()

    def done() -> None:
        assert tree(out) == reference and not leftovers(out)
        shutil.rmtree(out)

    recover("data prepare", args, EPOCH, duration, killed, done)


def test_leftovers_of_a_killed_atomic_dir_are_cleaned(tmp_path: Path) -> None:
    """A dead process's ``.OUT.partial-PID-*`` is removed; its ``.OUT.old-PID`` is put back when OUT is gone."""
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    source = make_clot(tmp_path)
    args = ["data", "prepare", "clot", "--source", str(source)]
    for out in (tmp_path / "a", tmp_path / "b"):
        run_vlhub(*args, "--out", str(out), check=True)
    partial = tmp_path / f".a.partial-{dead.pid}-x1y2"
    partial.mkdir()
    (partial / "train.json").write_text("[")
    os.replace(tmp_path / "b", tmp_path / f".b.old-{dead.pid}")   # killed between the two renames of --force
    reference = tree(tmp_path / f".b.old-{dead.pid}")
    run_vlhub(*args, "--out", str(tmp_path / "a"), "--force", check=True)
    run_vlhub(*args, "--out", str(tmp_path / "b"), "--force", check=True)
    assert not leftovers(tmp_path / "a") and not leftovers(tmp_path / "b")
    assert set(tree(tmp_path / "b")) == set(reference)


def test_convert(tmp_path: Path) -> None:
    ckpt = build_checkpoint(tmp_path / "ckpt", train_python())["checkpoint"]
    out = tmp_path / "model"
    args = ["convert", str(ckpt), "--out", str(out), "--no-verify"]
    duration = timed(args, EPOCH)
    reference = tree(out)
    shutil.rmtree(out)

    def killed() -> bool:
        assert not out.exists() or tree(out) == reference
        return out.exists()

    def done() -> None:
        assert tree(out) == reference and not leftovers(out)
        shutil.rmtree(out)

    recover("convert", args, EPOCH, duration, killed, done, seeds=SEEDS[:2])


def same_name(files: dict[str, bytes], repo: str) -> dict[str, bytes]:
    """The hub's files with the repository name in the generated card made neutral."""
    return {k: v.replace(repo.encode(), b"REPO").replace(repo.split("/")[1].encode(), b"NAME")
            for k, v in files.items()}


def _model(tmp_path: Path) -> Path:
    return make_model(tmp_path / "model", {f"model-0000{i}-of-00003.safetensors": 6 * MB for i in (1, 2, 3)})


def test_publish_git(tmp_path: Path) -> None:
    model = _model(tmp_path)
    env = {"VLHUB_GIT_TOKEN": TOKEN}
    with GitLfsServer(tmp_path / "ref", token=TOKEN) as ref, GitLfsServer(tmp_path / "srv", token=TOKEN) as srv:
        duration = timed(["publish", str(model), "--to", f"git:{ref.repo_url('org/InternVL2-k')}"], env)
        reference = tree(ref.clone("org/InternVL2-k", tmp_path / "ref-clone"))
        args = ["publish", str(model), "--to", f"git:{srv.repo_url('org/InternVL2-k')}"]

        def killed() -> bool:  # the branch is either absent or points at the complete tree
            files = srv.ls_tree("org/InternVL2-k", "main")
            assert files in ([], ref.ls_tree("org/InternVL2-k", "main"))
            return False

        def done() -> None:
            clone = srv.clone("org/InternVL2-k", tmp_path / f"clone-{_kills['publish git']}")
            got = tree(clone)
            assert got == reference and all(got[f.name] == tree(model)[f.name] for f in model.iterdir())
            subprocess.run(["git", "--git-dir", str(srv.repo_path("org/InternVL2-k")), "update-ref", "-d",
                            "refs/heads/main"], check=True)   # next seed publishes from scratch again

        recover("publish git", args, env, duration, killed, done)


def test_publish_hub(tmp_path: Path) -> None:
    model = _model(tmp_path)
    server = hub_server_class()
    with server(tmp_path / "ref", token=TOKEN, user="tester") as ref, \
            server(tmp_path / "hub", token=TOKEN, user="tester") as hub:
        duration = timed(["publish", str(model), "--to", "hf:tester/InternVL2-k"],
                         {**ref.env(), "MODELSCOPE_CACHE": str(tmp_path / "ms")})
        reference = same_name(ref.files("tester/InternVL2-k"), "tester/InternVL2-k")
        env = {**hub.env(), "MODELSCOPE_CACHE": str(tmp_path / "ms")}
        repos: list[str] = []

        def args() -> list[str]:
            repos.append(f"tester/InternVL2-k{len(repos)}")
            return ["publish", str(model), "--to", f"hf:{repos[-1]}"]

        for seed in SEEDS:  # a fresh repository per seed: the hub keeps no history to roll back
            target = args()
            kill_at(target, env, random.Random(seed).uniform(0.05, 0.95) * duration)
            _kills["publish hf"] = _kills.get("publish hf", 0) + 1
            if hub.exists(repos[-1]):  # the hub's initial commit, or everything: one commit carries all files
                files = same_name(hub.files(repos[-1]), repos[-1])
                assert set(files) == {".gitattributes"} or files == reference
            rerun = run_vlhub(*target, env=env, timeout=600)
            assert rerun.returncode == 0, rerun.stderr[-3000:]
            assert same_name(hub.files(repos[-1]), repos[-1]) == reference


def test_training_killed_then_resumed(tmp_path: Path) -> None:
    train_python()
    model = make_tiny_model(tmp_path / "tiny")
    data.prepare("foodieqa", make_foodieqa(tmp_path / "src"), tmp_path / "prepared")
    fake = tmp_path / "fake_xtuner.py"
    fake.write_text(FAKE_XTUNER)
    started = json.loads(run_vlhub(
        "train", "--model", str(model), "--data", str(tmp_path / "prepared"), "--batch-size", "1",
        "--grad-accum", "1", "--save-steps", "2", "--launch-command",
        f"{sys.executable} {fake} {{config}} {{work_dir}}", "--json", check=True).stdout)
    run_id = started["run_id"]
    _wait(lambda: (_show(run_id).get("progress") or {}).get("iteration", 0) >= 3, 60, "iteration 3")
    trainer = _show(run_id)["train_pid"]
    os.kill(trainer, signal.SIGKILL)
    _kills["train"] = 1
    _wait(lambda: _show(run_id)["status"] != "running", 30, "the run to be judged")
    rows = {r["id"]: r["status"] for r in json.loads(run_vlhub("runs", "--json", check=True).stdout)}
    assert rows[run_id] == "failed"
    shown = _show(run_id)
    last = max(shown["checkpoints"])
    assert 2 <= last < TOTAL
    resumed = json.loads(run_vlhub("train", "--resume", run_id, "--json", check=True).stdout)
    assert resumed["resumed_from"].endswith(f"iter_{last}.pth")
    _wait(lambda: _show(run_id)["status"] != "running", 60, "the resumed run to end")
    final = _show(run_id)
    assert final["status"] == "finished" and final["checkpoints"][-1] == TOTAL
