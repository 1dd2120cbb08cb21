"""Generated xtuner configs and launch commands, checked with the real xtuner, mmengine and torchrun."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import train_python
from fixtures.datasets import make_foodieqa
from vlhub.core import data, stage
from vlhub.core.errors import BadInput
from vlhub.core.worker import run_worker
from vlhub.plugins.devtools.tiny_model import make_tiny_model
from vlhub.plugins.trainers import inputs, launch_spec, settings, xtuner_config
from vlhub.plugins.workers import script

COMBINATIONS = [(m, d) for m in settings.METHODS for d in settings.DEEPSPEED
                if (m, d) != ("qlora", "zero3_offload")]


def _inputs(tmp_path: Path) -> tuple[inputs.ModelInfo, inputs.DataInfo]:
    model = make_tiny_model(tmp_path / "tiny")
    data.prepare("foodieqa", make_foodieqa(tmp_path / "src"), tmp_path / "prepared")
    return inputs.check_model(model), inputs.check_data(tmp_path / "prepared")


def test_every_method_and_deepspeed_choice_loads_with_mmengine(tmp_path: Path) -> None:
    python = train_python()
    model, prepared = _inputs(tmp_path)
    code = tmp_path / "code"
    code.mkdir()
    (code / "train_internvl.py").write_bytes(script("train_internvl").read_bytes())
    configs, commands = [], {}
    for method, deepspeed in COMBINATIONS:
        s = settings.parse({"method": method, "deepspeed": deepspeed, "vit_lora_r": 8 if deepspeed == "zero3" else 0,
                            "max_iters": 30 if deepspeed == "zero1" else None, "batch_size": 1, "grad_accum": 1,
                            "eval_image": str(prepared.image_root / "images/000.jpg")})
        config = tmp_path / f"{method}_{deepspeed}.py"
        config.write_text(xtuner_config.render(s, model, prepared, model.template, "test"))
        configs.append(str(config))
        commands[str(config)] = launch_spec.command(s, python.parent / "xtuner", config, tmp_path / "w", tmp_path)
    report = run_worker("train", script("train_inspect"), configs, extra_env={"PYTHONPATH": str(code)})
    loaded = {c["config"]: c for c in report["configs"]}
    assert sorted(loaded) == sorted(configs)
    for (method, deepspeed), config in zip(COMBINATIONS, configs):
        assert loaded[config]["model"] == "VlhubInternVL" and loaded[config]["dataset"] == "VlhubInternVLDataset"
        assert loaded[config]["llm_lora"] == (method != "full")
        assert loaded[config]["quantization_llm"] == (method == "qlora")
        argv = commands[config]
        assert argv[:5] == [str(python.parent / "xtuner"), "train", config, "--work-dir", str(tmp_path / "w")]
        if deepspeed == "none":
            assert "--deepspeed" not in argv
        else:
            assert argv[5:] == ["--deepspeed", f"deepspeed_{deepspeed}"]
            assert f"deepspeed_{deepspeed}" in report["environment"]["deepspeed_configs"]
    text = Path(configs[0]).read_text()
    assert "os.environ" not in text and f"model_path = '{model.path}'" in text


def test_qlora_cannot_offload() -> None:
    with pytest.raises(BadInput, match="--deepspeed zero3_offload"):
        settings.parse({"method": "qlora", "deepspeed": "zero3_offload"})


# A torchrun stand-in for xtuner's entry point: torch's own torchrun argument parser, which
# reads the PET_* variables, applied to the argv xtuner builds; it prints instead of launching.
TORCHRUN = """#!{python}
import json, sys
from torch.distributed.run import get_args_parser
args = get_args_parser().parse_args(sys.argv[1:])
print("TORCHRUN " + json.dumps({{"argv": sys.argv[1:], "nnodes": args.nnodes, "node_rank": args.node_rank,
      "nproc_per_node": args.nproc_per_node, "master_addr": args.master_addr, "master_port": args.master_port,
      "log_dir": args.log_dir, "tee": args.tee, "script_args": args.training_script_args}}))
"""


@pytest.mark.parametrize("flags", [{"gpus": 2}, {"gpus": 2, "nnodes": 2, "node_rank": 1, "master_addr": "10.1.2.3",
                                                   "master_port": 29611}])
def test_multi_gpu_and_multi_machine_launch(tmp_path: Path, flags: dict) -> None:
    python = train_python()
    s = settings.parse(flags)
    run_dir = tmp_path / "run"
    env = launch_spec.environment(s, run_dir / "code", run_dir)
    assert env["NPROC_PER_NODE"] == "2" and env["NNODES"] == str(s.nnodes)
    assert env["NODE_RANK"] == str(s.node_rank) and env["ADDR"] == s.master_addr and env["PORT"] == str(s.master_port)
    assert env["NCCL_NVLS_ENABLE"] == "0" and env["TORCH_SYMM_MEM_DISABLE_MULTICAST"] == "1"
    assert env["NVSHMEM_DISABLE_NVLS"] == "1"
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "torchrun").write_text(TORCHRUN.format(python=python))
    (fake_bin / "torchrun").chmod(0o755)
    argv = launch_spec.command(s, python.parent / "xtuner", tmp_path / "cfg.py", run_dir / "work", run_dir)
    full_env = stage.clean_env(env, python)
    full_env["PATH"] = f"{fake_bin}{os.pathsep}{full_env['PATH']}"
    out = subprocess.run(argv, env=full_env, capture_output=True, text=True, timeout=120).stdout
    got = json.loads(next(line for line in out.splitlines() if line.startswith("TORCHRUN "))[9:])
    assert (got["nnodes"], got["node_rank"], got["nproc_per_node"]) == (str(s.nnodes), s.node_rank, "2")
    assert (got["master_addr"], got["master_port"]) == (s.master_addr, s.master_port)
    assert got["log_dir"] == str(run_dir / "ranks") and got["tee"] == "3"
    assert got["script_args"][:5] == [str(tmp_path / "cfg.py"), "--work-dir", str(run_dir / "work"),
                                      "--deepspeed", "deepspeed_zero2"]
    assert got["script_args"][-2:] == ["--launcher", "pytorch"]


def test_one_gpu_launch_needs_no_torchrun(tmp_path: Path) -> None:
    env = launch_spec.environment(settings.parse({}), tmp_path / "code", tmp_path)
    assert not {"NPROC_PER_NODE", "NNODES", "PET_LOG_DIR"} & set(env)
    assert env["PYTHONPATH"] == str(tmp_path / "code")


CHECKPOINT_LOAD = """
import argparse, sys, torch
path = sys.argv[1]
if sys.argv[2] == "save":
    torch.save({"meta": {"seed": 7, "cfg": argparse.Namespace(lr=1e-3)}, "state_dict": {}}, path)
else:
    print(torch.load(path, map_location="cpu")["meta"]["seed"])  # as xtuner's get_seed_from_checkpoint does
"""


def test_launch_env_lets_torch_2_6_load_the_runs_own_checkpoints(tmp_path: Path) -> None:
    """torch >= 2.6 defaults to weights_only=True: xtuner's resume (`torch.load` without the argument on a
    checkpoint holding mmengine objects) failed on the GPU machine until the launch env set torch's switch."""
    from conftest import t5_python

    python = t5_python()  # a torch >= 2.6 interpreter (the train env here still has 2.5)
    env = launch_spec.environment(settings.parse({}), tmp_path / "code", tmp_path)
    assert env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] == "1"
    ckpt = tmp_path / "iter_2.pth"
    subprocess.run([str(python), "-c", CHECKPOINT_LOAD, str(ckpt), "save"], check=True, env=stage.clean_env())
    bare = subprocess.run([str(python), "-c", CHECKPOINT_LOAD, str(ckpt), "load"], capture_output=True, text=True,
                          env=stage.clean_env())
    assert bare.returncode != 0 and "Weights only load failed" in bare.stderr
    launched = subprocess.run([str(python), "-c", CHECKPOINT_LOAD, str(ckpt), "load"], capture_output=True,
                              text=True, env=stage.clean_env(env, python))
    assert launched.returncode == 0 and launched.stdout.strip() == "7", launched.stderr[-500:]
