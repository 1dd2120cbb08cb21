"""`vlhub publish --to hf:... / modelscope:...` through the real SDKs (and --via git) against the tests' hub server."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import run_vlhub
from publish_helpers import MB, files_containing, hub_server_class, make_model, tree_digest, write_random

CANARY = "canary-hub-4e8d2b90"
USER = "tester"


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Any]:
    with hub_server_class()(tmp_path / "hub", token=CANARY, user=USER) as server:
        yield server


def publish(hub: Any, folder: Path, target: str, *args: str, tmp: Path) -> subprocess.CompletedProcess:
    env = {**hub.env(), "MODELSCOPE_CACHE": str(tmp / "ms-cache")}
    return run_vlhub("publish", str(folder), "--to", target, "--json", *args, env=env)


def result(proc: subprocess.CompletedProcess) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr
    target = json.loads(proc.stdout)["targets"][0]
    return target.get("result") or target


@pytest.mark.parametrize("hub_name, via", [("hf", "api"), ("modelscope", "api"), ("hf", "git"), ("modelscope", "git")])
def test_publish_to_hub(hub: Any, tmp_path: Path, isolated: Path, hub_name: str, via: str) -> None:
    repo = f"{USER}/InternVL2-{hub_name}-{via}"
    model = make_model(tmp_path / "model", {"model-00001-of-00002.safetensors": 12 * MB,
                                            "model-00002-of-00002.safetensors": MB})
    before = tree_digest(model)
    target, extra = f"{hub_name}:{repo}", ("--via", via)

    dry = publish(hub, model, target, "--dry-run", *extra, tmp=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert not hub.exists(repo) or hub.lfs_bytes_uploaded == 0

    first = result(publish(hub, model, target, *extra, tmp=tmp_path))
    assert first["changed"] and first["bytes_sent"] >= 13 * MB
    files = hub.files(repo)
    for f in model.iterdir():
        assert files[f.name] == f.read_bytes(), f.name
    assert hub.is_lfs(repo, "model-00001-of-00002.safetensors")
    assert b"pipeline_tag: image-text-to-text" in files["README.md"]
    if hub_name == "modelscope":
        assert json.loads(files["configuration.json"])["framework"] == "pytorch"
    commits = len(hub.commits(repo))

    uploaded = hub.lfs_bytes_uploaded
    second = result(publish(hub, model, target, *extra, tmp=tmp_path))
    assert not second["changed"] and second["bytes_sent"] == 0
    assert len(hub.commits(repo)) == commits and hub.lfs_bytes_uploaded == uploaded

    write_random(model / "model-00002-of-00002.safetensors", MB)
    third = result(publish(hub, model, target, *extra, tmp=tmp_path))
    assert third["files_sent"] == 1 and hub.lfs_bytes_uploaded - uploaded == MB
    assert hub.files(repo)["model-00002-of-00002.safetensors"] == (model / "model-00002-of-00002.safetensors").read_bytes()

    assert files_containing(isolated, CANARY) == []
    assert files_containing(model, CANARY) == []
    assert tree_digest(model)["config.json"] == before["config.json"]
    assert set(tree_digest(model)) == set(before)


def test_rejected_hub_tokens(hub: Any, tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    hub.reject_token = True
    for target, words in (("hf:tester/InternVL2-x", "Hugging Face token was rejected"),
                          ("modelscope:tester/InternVL2-x", "ModelScope token was rejected")):
        proc = publish(hub, model, target, tmp=tmp_path)
        assert proc.returncode == 2 and words in proc.stderr + proc.stdout
        assert CANARY not in proc.stderr + proc.stdout


def test_card_from_provenance_and_users_card_kept(hub: Any, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps({"id": "r1", "plan": {"settings": {"lr": 4e-5, "epochs": 1}}}))
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps({"iter": i, "loss": 2.0 / (i + 1)}) + "\n" for i in range(20)))
    model = make_model(tmp_path / "model")
    (model / "vlhub_provenance.json").write_text(json.dumps({
        "base_model": "OpenGVLab/InternVL2-2B", "run": {"id": "r1", "dir": str(run_dir)}, "datasets": ["lyttt/FoodieQA"],
        "license": "mit", "samples": [{"question": "What dish is this?", "answer": "Mapo tofu"}]}))
    result(publish(hub, model, "hf:tester/InternVL2-card", tmp=tmp_path))
    files = hub.files("tester/InternVL2-card")
    card = files["README.md"].decode()
    for words in ("base_model: OpenGVLab/InternVL2-2B", "lyttt/FoodieQA", "license: mit", "| lr | 4e-05 |",
                  "assets/loss.svg", "Mapo tofu"):
        assert words in card, words
    assert files["assets/loss.svg"].startswith(b"<svg")

    # a card written on the hub by the user is kept, unless --overwrite-card
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(endpoint=hub.url, token=CANARY)
    api.create_commit("tester/InternVL2-card", [CommitOperationAdd("README.md", b"# my own card\n")], commit_message="mine")
    result(publish(hub, model, "hf:tester/InternVL2-card", tmp=tmp_path))
    assert hub.files("tester/InternVL2-card")["README.md"] == b"# my own card\n"
    result(publish(hub, model, "hf:tester/InternVL2-card", "--overwrite-card", tmp=tmp_path))
    assert b"generated by vlhub" in hub.files("tester/InternVL2-card")["README.md"]
