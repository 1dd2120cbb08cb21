"""Publish plans once: one folder scan per target, a plan the publish executes, no module state; the
provenance file read through its owner module (v0.1 files and damaged fields included).

Real servers on 127.0.0.1 (git http-backend + LFS, the HF API stand-in driven by the real SDK), no mocks
of the engines: the scan is only counted.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import ROOT
from publish_helpers import MB, git_and_hub, make_model, write_random
from servers.git_lfs import GitLfsServer

CANARY = "canary-plan-3c0e71"
REPO = "tester/InternVL2-plan"


@pytest.fixture
def servers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[GitLfsServer, Any]]:
    from huggingface_hub import constants

    # the SDK reads HF_HUB_DISABLE_XET when first imported (maybe by an earlier test): publishes run in-process here
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    with git_and_hub(tmp_path, CANARY, monkeypatch) as both:
        yield both


def test_each_target_is_scanned_once_and_its_plan_executed(servers: tuple[GitLfsServer, Any], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from vlhub.core import publish
    from vlhub.core.publishing import folder
    from vlhub.core.types import PublishPlan

    git, hub = servers
    model = make_model(tmp_path / "model", {"model.safetensors": 2 * MB})
    scans: list[Path] = []
    real_scan = folder.scan

    def counted(path: Path, follow_symlinks: bool = False) -> Any:
        scans.append(Path(path))
        return real_scan(path, follow_symlinks)

    monkeypatch.setattr(folder, "scan", counted)
    targets = [f"git:{git.repo_url(REPO)}", f"hf:{REPO}", f"modelscope:{REPO}-ms"]
    report = publish.publish(model, targets, {"via": None})
    assert report.ok, [r.error for r in report.results]
    assert len(scans) == len(targets)  # one scan per target: the preflight's, executed as planned
    for result in report.results:
        assert isinstance(result.preflight, PublishPlan) and result.published is not None
        public = result.public()["preflight"]
        assert set(public) == {"target", "files", "bytes_to_send", "problems", "checks", "ok"}
    assert git.is_pointer(REPO, "main", "model.safetensors") and "model.safetensors" in hub.files(REPO)


def test_a_folder_changed_after_its_preflight_is_refused(servers: tuple[GitLfsServer, Any], tmp_path: Path) -> None:
    """The plan's files are checked again (size, mtime, inode, where links lead) before any byte is sent."""
    from vlhub.core import publish
    from vlhub.core.errors import BadInput

    git, hub = servers
    model = make_model(tmp_path / "model", {"model.safetensors": 2 * MB})
    options = {"dry_run": False}
    for target in (f"git:{git.repo_url(REPO)}", f"hf:{REPO}", f"modelscope:{REPO}-ms"):
        plan = publish.preflight(model, target, options)
        assert plan.ok, plan.problems
        write_random(model / "model.safetensors", 2 * MB)
        with pytest.raises(BadInput, match="changed since its preflight: 'model.safetensors' \\(modified\\)"):
            publish.execute(model, target, plan, options)
    assert git.ls_tree(REPO, "main") == [] and not hub.exists(REPO) and not hub.exists(f"{REPO}-ms")


def test_no_module_state_in_the_publishers() -> None:
    """No module-level dict, list or set that holds state (the old ``_SEEN``/``_READY``) in the engines or the
    built-ins."""
    found = []
    for path in sorted([*(ROOT / "core" / "publishing").glob("*.py"), *(ROOT / "plugins" / "publishers").glob("*.py"),
                        ROOT / "core" / "publish.py"]):
        for node in ast.parse(path.read_text()).body:
            value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
            mutable = isinstance(value, (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)) or (
                isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
                and value.func.id in ("dict", "list", "set", "defaultdict"))
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if value is not None else []
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            constant = all(n == "__all__" or (n.isupper() and not n.startswith("_")) for n in names)
            if mutable and not constant:  # public constants and __all__ are never written to
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []


def test_pages_and_core_do_not_import_the_built_in_publishers() -> None:
    for path in [ROOT / "streamlit_app" / "views" / "publish.py", *(ROOT / "core").rglob("*.py")]:
        tree = ast.parse(path.read_text())
        names = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        names += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        if path.parent.name == "publishing" or path.name in ("publish.py", "provenance.py"):
            assert not [n for n in names if n.startswith("vlhub.plugins")], path


def test_card_preview_comes_from_the_core(tmp_path: Path) -> None:
    from vlhub.core import publish

    model = make_model(tmp_path / "model")
    text, generated = publish.card_preview(model, "git:https://example.invalid/org/InternVL2-card.git")
    assert generated and "generated by vlhub" in text and "# InternVL2-card" in text
    text, generated = publish.card_preview(model)
    assert generated and f"# {model.name}" in text
    (model / "README.md").write_text("# mine\n")
    assert publish.card_preview(model, "hf:org/x") == ("# mine\n", False)


V01 = {"format": "vlhub-provenance/1", "vlhub_version": "0.1.0", "created": "2026-11-01T00:00:00+00:00",
       "converter": "internvl-official", "base_model": "OpenGVLab/InternVL2-2B",
       "run": {"id": "r1", "dir": "/runs/r1"}, "checkpoint": {"path": "/c/iter_2.pth", "layout": "file", "step": 2},
       "config": "/c/config.py", "model_type": "InternVL_V1_5",
       "template": {"name": "internvl2-phi3", "xtuner_template": "phi3_chat", "lmdeploy_name": None,
                    "stop_token_ids": [32007]},
       "remote_code_copied": [], "stage_versions": {}, "verified": {"ok": True},
       "files": {"config.json": {"size": 2, "sha256": "ab"}}}


def test_provenance_reads_v01_files_damaged_fields_and_writes_a_format_version(tmp_path: Path) -> None:
    from vlhub.core import provenance
    from vlhub.core.errors import BadInput

    folder = tmp_path / "m"
    folder.mkdir()
    assert not provenance.read(folder).exists
    (folder / provenance.PROVENANCE).write_text(json.dumps(V01))
    p = provenance.read(folder)
    assert p.exists and p.format_version == 1 and p.converter == "internvl-official"
    assert p.base_model_id == "OpenGVLab/InternVL2-2B" and p.run is not None and p.run.dir == "/runs/r1"
    assert p.template["name"] == "internvl2-phi3" and p.files["config.json"]["size"] == 2

    damaged = {"base_model": ["not", "a", "string"], "run": "r1", "run_dir": "/runs/old", "datasets": "x",
               "samples": [{"question": "q?", "answer": 3}, "junk"], "license": 7, "format_version": "2"}
    (folder / provenance.PROVENANCE).write_text(json.dumps(damaged))
    p = provenance.read(folder)
    assert (p.base_model, p.datasets, p.license, p.format_version) == ("", [], "", 1)
    assert p.run is not None and p.run.dir == "/runs/old"  # v0.1's documented top-level run_dir
    assert [(s.question, s.answer) for s in p.samples] == [("q?", "")]

    (folder / provenance.PROVENANCE).write_text('{"base_model": ')
    with pytest.raises(BadInput, match="vlhub_provenance.json is damaged: not valid JSON"):
        provenance.read(folder)
    (folder / provenance.PROVENANCE).write_text("[]")
    with pytest.raises(BadInput, match="vlhub_provenance.json is damaged: a JSON object was expected"):
        provenance.read(folder)

    (folder / provenance.PROVENANCE).unlink()
    (folder / "config.json").write_text("{}")
    path = provenance.write(folder, {"converter": "x", "base_model": "/abs/base", "run": None})
    p = provenance.read(folder)
    assert json.loads(path.read_text())["format_version"] == provenance.FORMAT_VERSION == p.format_version
    assert p.base_model == "/abs/base" and p.base_model_id == "" and set(p.files) == {"config.json"}
