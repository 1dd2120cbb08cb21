"""``vlhub convert`` on real xtuner InternVL checkpoints of the tiny model, built on the CPU.

One train-env call builds xtuner's model wrapper (``VlhubInternVL`` with LLM and ViT LoRA, random
non-zero LoRA weights) and saves it in both layouts xtuner writes: an mmengine ``iter_2.pth``
file, and a DeepSpeed ZeRO-2 ``iter_2.pth/`` folder written by the DeepSpeed engine itself (CPU
accelerator, gloo). Both are converted through the CLI and checked.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from conftest import ROOT, run_vlhub, train_python

from vlhub.core import stage
from vlhub.plugins.devtools.tiny_model import make_tiny_model
from vlhub.core.convert import template as get_template
from vlhub.plugins.templates.render import render

from fixtures.checkpoints import CONFIG

SAVE = r"""
import json, os, sys
import torch
sys.path.insert(0, sys.argv[2])
from mmengine.config import Config
from mmengine.runner.checkpoint import save_checkpoint, weights_to_cpu
from xtuner.registry import BUILDER

cfg = Config.fromfile(sys.argv[1])
model = BUILDER.build(cfg.model)
generator = torch.Generator().manual_seed(0)
with torch.no_grad():
    for name, param in model.named_parameters():
        if "lora_" in name:   # lora_B starts at zero: give the adapters a real, non-zero delta
            param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
save_checkpoint({"meta": {"iter": 2}, "state_dict": weights_to_cpu(model.state_dict())}, sys.argv[3])

import deepspeed
trainable = [p for p in model.parameters() if p.requires_grad]
engine, *_ = deepspeed.initialize(model=model, optimizer=torch.optim.AdamW(trainable, lr=1e-4), config={
    "train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1,
    "zero_optimization": {"stage": 2}, "bf16": {"enabled": True}})
folder, tag = os.path.split(sys.argv[4])
engine.save_checkpoint(folder, tag=tag, client_state={"meta": {"iter": 2}}, save_latest=False,
                       exclude_frozen_parameters=True)
print(json.dumps({"lora": sum("lora_" in n for n, _ in model.named_parameters())}))
"""

CHAT = r"""
import json, sys
import torch
from transformers import AutoModel, AutoTokenizer
out = sys.argv[1]
tokenizer = AutoTokenizer.from_pretrained(out, trust_remote_code=True)
model = AutoModel.from_pretrained(out, trust_remote_code=True, torch_dtype=torch.float32).eval()
size = model.config.force_image_size
pixels = torch.rand(1, 3, size, size)
answer = model.chat(tokenizer, pixels, "<image>\nWhat is this?", dict(max_new_tokens=4, do_sample=False))
messages = [{"role": "user", "content": "<image>\nWhat is this?"}]
prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
print(json.dumps({"answer": answer, "prompt": prompt, "bos": tokenizer.bos_token,
                  "end_id": tokenizer.convert_tokens_to_ids("<|end|>")}))
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stage(script: str, *args: str, extra: dict[str, str] | None = None, timeout: float = 300) -> dict[str, Any]:
    python = train_python()
    proc = subprocess.run([str(python), "-c", script, *args], capture_output=True, text=True, timeout=timeout,
                          env=stage.clean_env(extra, python))
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny model, a run-like folder (config + code/), and both checkpoint layouts."""
    root = tmp_path_factory.mktemp("convert")
    model = make_tiny_model(root / "tiny")
    run = root / "run"
    (run / "code").mkdir(parents=True)
    shutil.copy(ROOT / "plugins" / "workers" / "train_internvl.py", run / "code")
    config = run / "config.py"
    config.write_text(CONFIG.format(model=str(model)))
    (run / "work").mkdir()
    (run / "ds" / "work").mkdir(parents=True)
    file_ckpt, ds_ckpt = run / "work" / "iter_2.pth", run / "ds" / "work" / "iter_2.pth"
    shutil.copy(config, run / "work" / "config.py")      # mmengine keeps the config beside checkpoints
    shutil.copy(config, run / "ds" / "work" / "config.py")
    saved = _stage(SAVE, str(config), str(run / "code"), str(file_ckpt), str(ds_ckpt),
                   extra={"DS_ACCELERATOR": "cpu", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
                          "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"})
    assert saved["lora"] > 0
    return {"root": root, "model": model, "config": config, "file": file_ckpt, "ds": ds_ckpt}


def _convert(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return run_vlhub("convert", *args, "--json", env=env, timeout=600)


@pytest.fixture(scope="module")
def from_file(built: dict[str, Path]) -> dict[str, Any]:
    """The file checkpoint converted into a folder vlhub wrote before (so with --force: only such a folder,
    one holding vlhub's provenance file, is ever replaced)."""
    out = built["root"] / "out-file"
    out.mkdir()
    (out / "old.txt").write_text("keep me unless --force")
    (out / "vlhub_provenance.json").write_text("{}")
    refused = _convert(str(built["file"]), "--out", str(out))
    assert refused.returncode == 2 and "already exists" in refused.stderr and "--force" in refused.stderr
    assert (out / "old.txt").exists()
    proc = _convert(str(built["file"]), "--out", str(out), "--force")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"out": out, "result": json.loads(proc.stdout)}


@pytest.fixture(scope="module")
def from_run(built: dict[str, Path]) -> dict[str, Any]:
    """A run id whose work folder holds the DeepSpeed checkpoint, converted by id."""
    home = built["root"] / "home"
    run_dir = home / "runs" / "20261124-000000-train-abcd"
    run_dir.mkdir(parents=True)
    shutil.copytree(built["ds"], run_dir / "work" / "iter_2.pth")
    (run_dir / "work" / "last_checkpoint").write_text(str(run_dir / "work" / "iter_2.pth"))
    (run_dir / "run.json").write_text(json.dumps({"id": run_dir.name, "kind": "train",
                                                  "config": str(built["config"])}))
    out = built["root"] / "out-run"
    proc = _convert(run_dir.name, "--out", str(out), env={"VLHUB_HOME": str(home)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"out": out, "result": json.loads(proc.stdout), "run_dir": run_dir}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_folder(out: Path, result: dict[str, Any]) -> dict[str, Any]:
    verified = result["verified"]
    assert verified["ok"] is True
    for part in ("llm", "vit"):
        rows = verified["weights"][part]["checked"]
        assert rows and all(r["ok"] for r in rows)
        assert all(r["max_delta"] > 10 * r["tolerance"] for r in rows), rows   # the check can tell merged from base
    assert verified["chat"]["new_tokens"] > 0 and verified["chat"]["tiles"] >= 1
    provenance = json.loads((out / "vlhub_provenance.json").read_text())
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {"vlhub_provenance.json"}
    assert set(provenance["files"]) == on_disk
    assert all(provenance["files"][name]["sha256"] == _sha256(out / name) for name in on_disk)
    assert provenance["template"]["name"] == "internvl2-phi3"
    assert {"modeling_internvl_chat.py", "conversation.py", "generation_config.json"} <= on_disk
    assert not list(out.parent.glob(f".{out.name}.partial-*"))
    return provenance


def test_file_checkpoint_converts_verifies_and_records_provenance(built: dict[str, Path],
                                                                  from_file: dict[str, Any]) -> None:
    out = from_file["out"]
    provenance = _check_folder(out, from_file["result"])
    assert not (out / "old.txt").exists()
    assert provenance["checkpoint"] == {"path": str(built["file"]), "layout": "file", "step": 2}
    assert provenance["base_model"] == str(built["model"]) and provenance["run"] is None
    template = get_template("internvl2-phi3")
    assert json.loads((out / "tokenizer_config.json").read_text())["chat_template"] == template.jinja


def test_deepspeed_checkpoint_of_a_run_converts(from_run: dict[str, Any]) -> None:
    provenance = _check_folder(from_run["out"], from_run["result"])
    assert provenance["checkpoint"]["layout"] == "deepspeed"
    assert provenance["run"]["id"] == from_run["run_dir"].name


def test_transformers_loads_and_chats_with_the_folder(from_file: dict[str, Any]) -> None:
    out = from_file["out"]
    seen = _stage(CHAT, str(out))
    assert isinstance(seen["answer"], str)
    messages = [{"role": "user", "content": "<image>\nWhat is this?"}]
    assert seen["prompt"] == render(get_template("internvl2-phi3").jinja, messages, add_generation_prompt=True,
                                    bos_token=seen["bos"])
    assert seen["end_id"] in json.loads((out / "generation_config.json").read_text())["eos_token_id"]


def test_interrupted_conversion_leaves_no_folder_at_the_target(built: dict[str, Path]) -> None:
    out = built["root"] / "out-killed"
    exe = Path(sys.executable).parent / "vlhub"
    proc = subprocess.Popen([str(exe), "convert", str(built["file"]), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            partial = list(out.parent.glob(f".{out.name}.partial-*/config.json"))
            if partial:      # the worker is writing the folder: stop everything now
                break
            time.sleep(0.2)
        assert proc.poll() is None, "conversion ended before it could be interrupted"
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGKILL)
        for child in children:
            child.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not out.exists()


def test_a_path_that_is_not_a_checkpoint_is_a_one_line_error(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("hello")
    proc = run_vlhub("convert", str(bogus), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not a checkpoint" in lines[0] and "iter_N.pth" in lines[0]
    empty = tmp_path / "iter_5.pth"
    empty.mkdir()
    proc = run_vlhub("convert", str(empty), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "model_states.pt" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_output_inside_the_checkpoint_folder_is_refused(built: dict[str, Path]) -> None:
    inside = built["ds"] / "converted"
    proc = run_vlhub("convert", str(built["ds"]), "--out", str(inside))
    assert proc.returncode == 2 and "inside" in proc.stderr
    assert not inside.exists()
