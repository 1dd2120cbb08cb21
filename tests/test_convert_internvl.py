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
import re
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

from vlhub.core import runs, stage
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


# ------------------------------------------------------------------ checkpoints xtuner's loader cannot read: refused up front
def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): (_sha256(p) if p.is_file() else "dir") for p in sorted(root.rglob("*"))}


def _work(built: dict[str, Path], root: Path, *steps: int, config: str | None = None) -> Path:
    """A work folder like xtuner's: copies of the DeepSpeed ZeRO-2 checkpoint as iter_N.pth/, config.py beside."""
    work = root / "work_dirs" / "food"
    work.mkdir(parents=True)
    for step in steps:
        shutil.copytree(built["ds"], work / f"iter_{step}.pth")
    (work / "config.py").write_text(config or built["config"].read_text())
    (work / "last_checkpoint").write_text(str(work / f"iter_{steps[-1]}.pth"))
    return work


def _refused(root: Path, args: list[str], code: int, *needles: str, env: dict[str, str] | None = None) -> str:
    """Run ``vlhub convert ARGS --out root/out`` in ``root``: one Error line with every needle and a fix, no
    traceback, no exception class name, nothing written and nothing changed under ``root``."""
    before = _tree(root)
    proc = run_vlhub("convert", *args, "--out", str(root / "out"), cwd=root, timeout=300, env=env)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code, proc.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Fix: " in lines[0], proc.stderr[-3000:]
    assert all(n in lines[0] for n in needles), lines[0]
    assert "Traceback" not in proc.stderr and "env check" not in lines[0]
    assert not re.search(r"\b[A-Z][A-Za-z0-9]*(Error|Exception)\b", lines[0]), lines[0]
    assert not (root / "out").exists() and _tree(root) == before
    return lines[0]


def test_deepspeed_folder_without_optimizer_states_names_them(built: dict[str, Path], tmp_path: Path) -> None:
    work = _work(built, tmp_path, 2)
    (work / "iter_2.pth" / "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt").unlink()
    line = _refused(tmp_path, [str(work / "iter_2.pth")], 2, "iter_2.pth/ (ZeRO-2, 1 rank) lacks its optimizer states",
                    "missing bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt", "Fix: copy the missing files back")
    assert "earlier complete checkpoint" not in line


def test_deepspeed_folder_suggests_the_newest_complete_checkpoint(built: dict[str, Path], tmp_path: Path) -> None:
    work = _work(built, tmp_path, 1, 2)
    (work / "iter_2.pth" / "mp_rank_00_model_states.pt").unlink()
    _refused(tmp_path, [str(work / "iter_2.pth")], 2, "lacks files xtuner's loader reads: missing mp_rank_00_model_states.pt",
             f"or convert an earlier complete checkpoint: vlhub convert {work / 'iter_1.pth'}")


def test_deepspeed_run_by_id_with_a_rank_missing(built: dict[str, Path], tmp_path: Path) -> None:
    """A run's last checkpoint (by run id) written by 2 ranks, rank 1's optimizer states left on another machine."""
    home = tmp_path / "home"
    run_dir = home / "runs" / "20261124-000000-train-rank"
    work = run_dir / "work"
    shutil.copytree(built["ds"], work / "iter_2.pth")
    state = work / "iter_2.pth" / "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt"
    _set_partition_count(state, [2])     # what rank 0 of a 2-rank run records
    (work / "last_checkpoint").write_text(str(work / "iter_2.pth"))
    # still running: its recorded process (this test's own, alive) keeps `refresh` from marking the run lost
    (run_dir / "run.json").write_text(json.dumps({"id": run_dir.name, "kind": "train", "status": "running",
                                                  "config": str(built["config"]), **runs.process_record(os.getpid())}))
    _refused(tmp_path, [run_dir.name], 2, "(ZeRO-2, 2 ranks)", "missing bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt",
             f"if run {run_dir.name} is still saving this checkpoint, wait for it", env={"VLHUB_HOME": str(home)})


def _set_partition_count(state: Path, count: list[int]) -> None:
    """Rewrite an optimizer-states file as rank 0 of a run of ``max(count)`` ranks records it."""
    script = ("import sys, json, torch\n"
              "d = torch.load(sys.argv[1], weights_only=False)\n"
              "d['optimizer_state_dict']['partition_count'] = json.loads(sys.argv[2])\n"
              "torch.save(d, sys.argv[1])\n")
    proc = subprocess.run([str(train_python()), "-c", script, str(state), json.dumps(count)], capture_output=True,
                          text=True, timeout=120, env=stage.clean_env(None, train_python()))
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_a_file_inside_the_checkpoint_folder_points_at_the_folder(built: dict[str, Path], tmp_path: Path) -> None:
    work = _work(built, tmp_path, 2)
    _refused(tmp_path, [str(work / "iter_2.pth" / "mp_rank_00_model_states.pt")], 2,
             "is a file inside the DeepSpeed checkpoint folder", "Fix: pass the folder iter_2.pth/, not a file inside it")


def test_a_work_folder_lists_its_checkpoints(built: dict[str, Path], tmp_path: Path) -> None:
    work = _work(built, tmp_path, 1, 2)
    _refused(tmp_path, ["work_dirs/food"], 2, "work_dirs/food is a training work folder, not a checkpoint",
             "iter_1.pth/, iter_2.pth/ (last: iter_2.pth)", "Fix: pass one checkpoint, e.g. the last: "
             "vlhub convert work_dirs/food/iter_2.pth")
    _refused(tmp_path, ["work_dirs/food/iter_2.pth:"], 2, "but work_dirs/food/iter_2.pth does", "stray ':'")
    assert work.is_dir()


def test_a_base_model_that_is_not_here_is_named_with_the_config_line(built: dict[str, Path], tmp_path: Path) -> None:
    text = built["config"].read_text().replace(repr(str(built["model"])), "'/data/models/InternVL2-2B'")
    work = _work(built, tmp_path, 2, config=text)
    line = _refused(tmp_path, [str(work / "iter_2.pth")], 2, f"{work / 'config.py'}: the base model folder "
                    "/data/models/InternVL2-2B (line ", "does not exist here", "--config")
    assert "model_path = '/data/models/InternVL2-2B'" in line
    hub = _work(built, tmp_path / "hub", 2, config=built["config"].read_text().replace(
        repr(str(built["model"])), "'OpenGVLab/InternVL2-2B'"))
    _refused(tmp_path / "hub", [str(hub / "iter_2.pth")], 2, "OpenGVLab/InternVL2-2B", "is a hub id",
             "huggingface-cli download OpenGVLab/InternVL2-2B")


def test_a_damaged_state_file_is_named(built: dict[str, Path], tmp_path: Path) -> None:
    work = _work(built, tmp_path, 2)
    state = work / "iter_2.pth" / "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])   # a copy cut short
    _refused(tmp_path, [str(work / "iter_2.pth")], 2, f"{state} is damaged or not a DeepSpeed state file",
             "Fix: copy the file again")


def test_the_check_asks_for_what_xtuners_loader_reads_and_no_more(built: dict[str, Path], tmp_path: Path) -> None:
    """Folders the check passes load with xtuner's ``guess_load_checkpoint``; folders it refuses do not."""
    from vlhub.core.errors import BadInput
    from vlhub.plugins.converters.deepspeed import check_folder

    folders = {}
    for name, drop in (("complete", None), ("no-optim", "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt"),
                       ("no-model", "mp_rank_00_model_states.pt"), ("extra-rank", None)):
        folder = tmp_path / name / "iter_2.pth"
        shutil.copytree(built["ds"], folder)
        if drop:
            (folder / drop).unlink()
        folders[name] = folder
    shutil.copy(folders["extra-rank"] / "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt",
                folders["extra-rank"] / "bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt")   # left from another run
    (folders["complete"].parent / "latest").unlink(missing_ok=True)   # DeepSpeed's `latest` is not read
    verdicts = {}
    for name, folder in folders.items():
        try:
            check_folder(folder, strict=True)
            verdicts[name] = True
        except BadInput as exc:
            verdicts[name] = False
            assert "extra" not in name or "holds 2 *_optim_states.pt files for 1 rank(s)" in exc.message
    load = ("import json, sys\nfrom xtuner.model.utils import guess_load_checkpoint\nout = {}\n"
            "for path in sys.argv[1:]:\n    try:\n        guess_load_checkpoint(path); out[path] = True\n"
            "    except Exception:\n        out[path] = False\nprint(json.dumps(out))\n")
    loaded = _stage(load, *(str(f) for f in folders.values()))
    assert verdicts == {name: loaded[str(f)] for name, f in folders.items()} == \
        {"complete": True, "no-optim": False, "no-model": False, "extra-rank": False}
