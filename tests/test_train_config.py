"""Generated xtuner configs and one-GPU launch commands, checked with the real xtuner and mmengine (several
GPUs: test_train_distributed.py)."""
from __future__ import annotations

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
        commands[str(config)] = launch_spec.command(s, python, config, tmp_path / "w", tmp_path)
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
