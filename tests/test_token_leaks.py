"""Canary tokens for every hub, a full CLI pass and the launcher pages: the canaries appear nowhere.

Scanned: every file under VLHUB_HOME (run folders, logs, metrics, the publish stagings' git config,
and their git objects decompressed), the user's folders, the servers' repositories (objects
decompressed), stdout/stderr of every command, exception messages of API calls, every element the
launcher pages render, and the argv of every subprocess vlhub started. The argv are recorded by a
``sitecustomize`` on PYTHONPATH that wraps ``subprocess.Popen.__init__`` (the real processes still run).
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import ROOT, run_vlhub
from fixtures.datasets import make_clot
from publish_helpers import MB, hub_server_class, make_model
from servers.git_lfs import GitLfsServer
from servers.openai_api import OpenAITestServer

CANARIES = {name: f"canary-{name.lower().replace('_', '-')}-5f3e9a1c" for name in
            ("HF_TOKEN", "MODELSCOPE_API_TOKEN", "OPENXLAB_TOKEN", "VLHUB_GIT_TOKEN", "OPENAI_API_KEY")}
RECORDER = """\
import json, os, subprocess
_log, _init = os.environ.get("VLHUB_TEST_ARGV_LOG"), subprocess.Popen.__init__


def _recording_init(self, args, *rest, **kwargs):
    if _log:
        with open(_log, "a", encoding="utf-8") as out:
            argv = [args] if isinstance(args, (str, bytes, os.PathLike)) else args
            out.write(json.dumps([str(a) for a in argv]) + "\\n")
    _init(self, args, *rest, **kwargs)


subprocess.Popen.__init__ = _recording_init
"""


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated: Path) -> Iterator[dict[str, Any]]:
    """Servers accepting the canaries, the canaries in the environment, the argv recorder on PYTHONPATH."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(RECORDER)
    argv_log = tmp_path / "argv.jsonl"
    server = hub_server_class()
    with GitLfsServer(tmp_path / "git", token=CANARIES["VLHUB_GIT_TOKEN"]) as git, \
            GitLfsServer(tmp_path / "oxl", token=CANARIES["OPENXLAB_TOKEN"], user="owner") as oxl, \
            server(tmp_path / "hf", token=CANARIES["HF_TOKEN"], user="tester") as hf, \
            server(tmp_path / "ms", token=CANARIES["MODELSCOPE_API_TOKEN"], user="tester") as ms, \
            OpenAITestServer(models=("base",), api_key=CANARIES["OPENAI_API_KEY"]) as openai:
        env = {**hf.env(), "MODELSCOPE_ENDPOINT": ms.url, **CANARIES, "OPENXLAB_GIT_URL": oxl.url,
               "MODELSCOPE_CACHE": str(tmp_path / "ms-cache"), "VLHUB_TEST_ARGV_LOG": str(argv_log),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        yield {"git": git, "oxl": oxl, "hf": hf, "ms": ms, "openai": openai, "argv_log": argv_log, "home": isolated,
               "servers": [tmp_path / "git", tmp_path / "oxl", tmp_path / "hf", tmp_path / "ms"]}


def _objects(git_dir: Path) -> bytes:
    """Every object of a repository, decompressed (a token in a commit or blob would show here)."""
    proc = subprocess.run(["git", "--git-dir", str(git_dir), "cat-file", "--batch-all-objects", "--batch"],
                          capture_output=True)
    return proc.stdout


def _scan_files(roots: list[Path]) -> tuple[int, dict[str, list[str]]]:
    """Files scanned, and canary name -> files that contain it (git objects read decompressed)."""
    hits: dict[str, list[str]] = {}
    count = 0
    for root in roots:
        for dirpath, dirs, names in os.walk(root):
            folder = Path(dirpath)
            blobs = []
            if (folder / "objects").is_dir() and (folder / "HEAD").is_file():
                blobs.append((str(folder) + " (objects)", _objects(folder)))
            for name in names:
                path = folder / name
                if path.is_file() and not path.is_symlink() and path.stat().st_size < 64 * MB:
                    blobs.append((str(path), path.read_bytes()))
            for where, body in blobs:
                count += 1
                for key, canary in CANARIES.items():
                    if canary.encode() in body:
                        hits.setdefault(key, []).append(where)
    return count, hits


def _outputs_leak(texts: list[str]) -> dict[str, int]:
    return {key: sum(canary in t for t in texts) for key, canary in CANARIES.items() if any(canary in t for t in texts)}


def test_full_cli_pass_leaks_no_token(world: dict[str, Any], tmp_path: Path) -> None:
    model = make_model(tmp_path / "model", {"model.safetensors": 3 * MB})
    clot = make_clot(tmp_path / "data")
    prepared = tmp_path / "prepared"
    git, oxl, openai = world["git"], world["oxl"], world["openai"]
    commands = [
        ["doctor"], ["doctor", "--json"], ["plugins", "--json"], ["env", "check", "--json"], ["data", "list"],
        ["data", "prepare", "clot", "--source", str(clot), "--out", str(prepared), "--json"],
        ["data", "validate", str(clot / "ex_cn.json"), "--images", str(clot), "--json"],
        ["data", "stats", str(prepared), "--json"],
        ["publish", str(model), "--to", f"git:{git.repo_url('org/InternVL2-leak')}", "--json"],
        ["publish", str(model), "--to", "openxlab:owner/InternVL2-leak", "--json"],
        ["publish", str(model), "--to", "hf:tester/InternVL2-leak", "--json"],
        ["publish", str(model), "--to", "hf:tester/InternVL2-leak-git", "--via", "git", "--json"],
        ["publish", str(model), "--to", "modelscope:tester/InternVL2-leak", "--json"],
        ["publish", str(model), "--to", "modelscope:tester/InternVL2-leak-git", "--via", "git", "--json"],
        ["publish", str(model), "--to", f"git:{oxl.repo_url('org/InternVL2-refused')}"],       # wrong token: refused
        ["publish", str(model), "--to", "git:http://user:" + CANARIES["VLHUB_GIT_TOKEN"] + "@127.0.0.1:9/o/n.git"],
        ["--debug", "publish", str(model), "--to", f"git:{oxl.repo_url('org/InternVL2-debug')}"],
        ["chat", "--backend", "openai", "--base-url", openai.base_url, "--model", "base", "-m", "hello",
         "--json", "--export", str(tmp_path / "chat.json")],
        ["chat", "--backend", "openai", "--base-url", openai.base_url, "--model", "nosuch", "-m", "hello"],
        ["--debug", "chat", "--backend", "openai", "--base-url", openai.base_url, "--model", "nosuch", "-m", "x"],
        ["runs", "--json"],
    ]
    texts, codes = [], []
    for args in commands:
        proc = run_vlhub(*args, timeout=300)
        texts += [proc.stdout, proc.stderr]
        codes.append(proc.returncode)
    assert codes[:14] == [0] * 14 and all(codes[14:17]) and codes[17] == 0, list(zip(codes, commands))
    for run in json.loads(texts[-2]):
        proc = run_vlhub("run", "show", run["id"], "--json", check=True)
        texts.append(proc.stdout)

    # API calls that fail: their exception messages carry no token
    from vlhub.core import publish
    from vlhub.core.chat import Conversation

    report = publish.publish(model, [f"git:{oxl.repo_url('org/InternVL2-api')}",
                                     "git:https://u:" + CANARIES["OPENXLAB_TOKEN"] + "@127.0.0.1:9/o/n.git"], {})
    texts += [json.dumps(report.public()), *(r.error for r in report.results)]
    with pytest.raises(Exception) as caught:
        with Conversation("nosuch", backend="openai", options={"base_url": openai.base_url}) as chat:
            chat.answer("hello", [])
    texts.append(str(caught.value))

    argv = world["argv_log"].read_text().splitlines()
    assert len(argv) > 20, "the recorder saw too few subprocesses"
    scanned, hits = _scan_files([world["home"], tmp_path / "model", tmp_path / "data", prepared, *world["servers"]])
    print(f"\ntoken leaks: {len(CANARIES)} canaries, {len(commands)} CLI commands, {scanned} files and object stores "
          f"scanned, {len(argv)} subprocess argv, {len(texts)} outputs/messages: 0 hits")
    assert hits == {}
    assert _outputs_leak(texts) == {}
    assert _outputs_leak(argv) == {}


def _rendered(at: Any) -> str:
    """Every element the page rendered, as protobuf text."""
    out, stack = [], [at._tree]
    while stack:
        node = stack.pop()
        if getattr(node, "proto", None) is not None:
            out.append(str(node.proto))
        stack.extend(getattr(node, "children", {}).values())
    return "\n".join(out)


def test_launcher_pages_leak_no_token(world: dict[str, Any]) -> None:
    from streamlit.testing.v1 import AppTest

    pages = sorted(p for p in (ROOT / "streamlit_app" / "views").glob("*.py") if p.name != "__init__.py")
    shown = []
    for page in pages:
        at = AppTest.from_file(str(page), default_timeout=60)
        at.run()
        assert not at.exception, (page.name, at.exception)
        shown.append(_rendered(at))
    scanned, hits = _scan_files([world["home"]])
    print(f"\ntoken leaks (launcher): {len(pages)} pages rendered, {scanned} files scanned: 0 hits")
    assert _outputs_leak(shown) == {} and hits == {}
