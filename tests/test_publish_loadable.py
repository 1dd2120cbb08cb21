"""The folder must load as its files say: refused (exit 2) for every target before any byte is sent.

Through the real CLI against the tests' git + LFS server (and one ``hf:`` target against the hub
API server): each broken folder is refused with one problem line naming the file and the fix, the
remote gets no commit, and the user's folder is left as it was.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from conftest import run_vlhub
from publish_helpers import MB, hub_server_class, make_model, publish_git, tree_digest, write_random
from servers.git_lfs import GitLfsServer

CANARY = "canary-loadable-5a1c"
REPO = "org/InternVL2-loadable"
POINTER = (b"version https://git-lfs.github.com/spec/v1\n"
           b"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 2097152\n")
HTML = b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body>Not Found</body></html>\n"
INTERNVL_CONFIG = {"architectures": ["InternVLChatModel"], "model_type": "internvl_chat", "template": "internvl2_5",
                   "llm_config": {"architectures": ["Qwen2ForCausalLM"]}, "vision_config": {}}


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[GitLfsServer]:
    with GitLfsServer(tmp_path / "srv", token=CANARY) as server:
        yield server


def publish(folder: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    return publish_git(folder, url, CANARY, *args)


def commits(srv: GitLfsServer) -> int:
    out = subprocess.run(["git", "--git-dir", str(srv.repo_path(REPO)), "rev-list", "--count", "main"],
                         capture_output=True, text=True)
    return int(out.stdout.strip() or 0)


def _truncated(model: Path) -> None:
    shard = model / "model.safetensors"
    with open(shard, "r+b") as out:
        out.truncate(shard.stat().st_size - 1000)


def _header_past_eof(model: Path) -> None:
    (model / "model.safetensors").write_bytes((10 ** 9).to_bytes(8, "little") + b'{"w": {}}')


def _pointer(model: Path) -> None:
    (model / "model.safetensors").write_bytes(POINTER)


def _html_bin(model: Path) -> None:
    (model / "model.safetensors").unlink()
    (model / "pytorch_model.bin").write_bytes(HTML)


def _sharded(model: Path, on_disk: list[str], named: list[str]) -> None:
    (model / "model.safetensors").unlink()
    for name in on_disk:
        write_random(model / name, MB)
    index = {"metadata": {"total_size": MB * len(named)}, "weight_map": {f"t{i}": n for i, n in enumerate(named)}}
    (model / "model.safetensors.index.json").write_text(json.dumps(index))


def _missing_shard(model: Path) -> None:
    _sharded(model, ["model-00001-of-00002.safetensors"],
             ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"])


def _stray_shard(model: Path) -> None:
    _sharded(model, ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                     "model-00003-of-00003.safetensors"],
             ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"])


def _auto_map(model: Path) -> None:
    config = {**json.loads((model / "config.json").read_text()),
              "auto_map": {"AutoConfig": "configuration_internvl_chat.InternVLChatConfig",
                           "AutoModel": "modeling_internvl_chat.InternVLChatModel"}}
    (model / "config.json").write_text(json.dumps(config))
    (model / "configuration_internvl_chat.py").write_text("from .configuration_intern_vit import X\n")
    (model / "configuration_intern_vit.py").write_text("X = 1\n")


def _relative_import(model: Path) -> None:
    _auto_map(model)
    (model / "modeling_internvl_chat.py").write_text("import torch\nfrom .modeling_intern_vit import InternVisionModel\n")


def _no_architectures(model: Path) -> None:
    (model / "config.json").write_text(json.dumps({"model_type": "internvl_chat"}))


def _broken_yaml(model: Path) -> None:
    (model / "README.md").write_text("---\nlicense: mit\ntags:\n  - a\n  bad: [unclosed\n---\n\n# My model\n")


BROKEN: list[tuple[str, Callable[[Path], None], list[str]]] = [
    ("truncated-safetensors", _truncated, ["model.safetensors", "truncated", "Fix:"]),
    ("header-past-eof", _header_past_eof, ["model.safetensors", "header length", "runs past the end", "Fix:"]),
    ("lfs-pointer", _pointer, ["model.safetensors is a Git LFS pointer", "git lfs pull"]),
    ("html-bin", _html_bin, ["pytorch_model.bin is an HTML page", "Fix: download the real file again"]),
    ("index-missing-shard", _missing_shard, ["model.safetensors.index.json names shards that are not in the folder",
                                             "model-00002-of-00002.safetensors", "Fix: copy the missing shards in"]),
    ("shard-not-in-index", _stray_shard, ["model-00003-of-00003.safetensors: not named in "
                                          "model.safetensors.index.json", "Fix: remove it"]),
    ("auto-map-missing-py", _auto_map, ["config.json auto_map AutoModel", "needs modeling_internvl_chat.py",
                                        "Fix: copy modeling_internvl_chat.py"]),
    ("relative-import-missing", _relative_import, ["modeling_internvl_chat.py (from .modeling_intern_vit import",
                                                   "needs modeling_intern_vit.py", "Fix: copy"]),
    ("no-architectures", _no_architectures, ["config.json has no 'architectures'", "Fix: add it"]),
    ("readme-broken-yaml", _broken_yaml, ["README.md line 5", "YAML metadata does not parse", "Fix: correct the YAML"]),
]


@pytest.mark.parametrize("name, breaks, expect", BROKEN, ids=[b[0] for b in BROKEN])
@pytest.mark.parametrize("dry", [True, False], ids=["dry-run", "publish"])
def test_a_folder_that_would_not_load_is_refused_before_any_byte(srv: GitLfsServer, tmp_path: Path, name: str,
                                                                 breaks: Callable[[Path], None], expect: list[str],
                                                                 dry: bool) -> None:
    if not dry and name not in ("truncated-safetensors", "auto-map-missing-py", "readme-broken-yaml"):
        pytest.skip("the real publish is checked on a few cases (same preflight)")
    model = make_model(tmp_path / "model")
    breaks(model)
    before = tree_digest(model)
    proc = publish(model, srv.repo_url(REPO), *(["--dry-run"] if dry else []))
    assert proc.returncode == 2, proc.stderr[-2000:]
    for fragment in expect:
        assert fragment in proc.stderr, (fragment, proc.stderr[-2000:])
    assert commits(srv) == 0
    assert srv.lfs_bytes_uploaded == 0
    assert not [r for r in srv.requests if r.kind == "receive-pack"]
    assert tree_digest(model) == before


def test_each_problem_is_one_line_in_json(srv: GitLfsServer, tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    _pointer(model)
    _broken_yaml(model)
    proc = publish(model, srv.repo_url(REPO), "--dry-run", "--json")
    assert proc.returncode == 2, proc.stderr
    problems = json.loads(proc.stdout)["targets"][0]["preflight"]["problems"]
    assert any(p.startswith("model.safetensors is a Git LFS pointer") and "Fix:" in p for p in problems), problems
    assert any(p.startswith("README.md line 5:") and "Fix:" in p for p in problems), problems
    assert all("\n" not in p for p in problems)


def test_a_good_sharded_folder_with_remote_code_passes(srv: GitLfsServer, tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    _sharded(model, ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"],
             ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"])
    _relative_import(model)
    (model / "modeling_intern_vit.py").write_text("InternVisionModel = None\n")
    (model / "README.md").write_text("---\nlicense: mit\ntags:\n  - internvl\n---\n\n# My model\n")
    proc = publish(model, srv.repo_url(REPO), "--dry-run")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "WARNING" not in proc.stderr


def _catalog() -> dict[str, Any]:
    from vlhub.core import plugins

    return dict(plugins.registry("chat_templates"))


def _internvl(model: Path, template: str) -> None:
    (model / "config.json").write_text(json.dumps(INTERNVL_CONFIG))
    (model / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))


def test_a_template_mismatch_is_a_warning_and_can_be_silenced(srv: GitLfsServer, tmp_path: Path) -> None:
    catalog = _catalog()
    matched = [n for n, t in catalog.items() if t.matches(INTERNVL_CONFIG)]
    assert matched[0] == "internvl2_5", matched
    model = make_model(tmp_path / "model")
    _internvl(model, "{{ messages }}")
    before = tree_digest(model)
    proc = publish(model, srv.repo_url(REPO), "--dry-run")
    assert proc.returncode == 0, proc.stderr[-2000:]
    warning = [line for line in proc.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warning) == 1, proc.stderr
    assert "tokenizer_config.json carries a different template" in warning[0]
    assert "'internvl2_5'" in warning[0] and "--allow-template-mismatch" in warning[0]

    other = catalog["internlm2-chat"].jinja
    _internvl(model, other)
    proc = publish(model, srv.repo_url(REPO), "--dry-run")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "the catalog's 'internlm2-chat' template, not the catalog's 'internvl2_5' template" in proc.stderr

    quiet = publish(model, srv.repo_url(REPO), "--dry-run", "--allow-template-mismatch")
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert "WARNING" not in quiet.stderr

    _internvl(model, catalog["internvl2_5"].jinja)
    same = publish(model, srv.repo_url(REPO), "--dry-run")
    assert same.returncode == 0 and "WARNING" not in same.stderr, same.stderr[-2000:]
    assert commits(srv) == 0


def test_no_catalog_template_for_the_config_says_nothing(srv: GitLfsServer, tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")  # its config matches no catalog template
    proc = publish(model, srv.repo_url(REPO), "--dry-run")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "WARNING" not in proc.stderr


def test_hf_target_is_refused_before_any_byte(tmp_path: Path) -> None:
    with hub_server_class()(tmp_path / "hub", token=CANARY, user="tester") as hub:
        model = make_model(tmp_path / "model")
        _truncated(model)
        before = tree_digest(model)
        proc = run_vlhub("publish", str(model), "--to", "hf:tester/InternVL2-loadable", "--json",
                         env={**hub.env(), "MODELSCOPE_CACHE": str(tmp_path / "ms-cache")})
        assert proc.returncode == 2, proc.stderr[-2000:]
        problems = json.loads(proc.stdout)["targets"][0]["preflight"]["problems"]
        assert any(p.startswith("model.safetensors:") and "truncated" in p and "Fix:" in p for p in problems), problems
        assert not hub.exists("tester/InternVL2-loadable")
        assert not [r for r in hub.requests if r[0] in ("POST", "PUT")]
        assert tree_digest(model) == before
