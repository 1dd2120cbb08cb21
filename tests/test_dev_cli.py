"""``vlhub dev tiny-model``: the CLI around the tiny InternVL2-format model generator."""
from __future__ import annotations

import json
import time
from pathlib import Path

from conftest import run_vlhub


def test_tiny_model_builds_a_loadable_folder_quickly(tmp_path: Path) -> None:
    out = tmp_path / "tiny"
    start = time.monotonic()
    proc = run_vlhub("dev", "tiny-model", str(out), "--json", check=True)
    assert time.monotonic() - start < 30
    report = json.loads(proc.stdout)
    assert report["path"] == str(out.resolve()) and report["size"] == "tiny"
    assert {"config.json", "model.safetensors", "tokenizer.json", "modeling_internvl_chat.py"} <= set(report["files"])
    cfg = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert cfg["llm_config"]["architectures"] == ["Phi3ForCausalLM"] and "auto_map" in cfg
    assert (out / "model.safetensors").stat().st_size > 100_000


def test_tiny_model_prints_the_path_and_needs_force_to_replace(tmp_path: Path) -> None:
    out = tmp_path / "tiny"
    proc = run_vlhub("dev", "tiny-model", str(out), check=True)
    assert proc.stdout.strip() == str(out.resolve())
    again = run_vlhub("dev", "tiny-model", str(out))
    assert again.returncode == 2 and "--force" in again.stderr and "Traceback" not in again.stderr
    assert run_vlhub("dev", "tiny-model", str(out), "--force", "--seed", "3").returncode == 0
    bad = run_vlhub("dev", "tiny-model", str(tmp_path / "x"), "--llm", "gpt2")
    assert bad.returncode == 2 and "gpt2" in bad.stderr
