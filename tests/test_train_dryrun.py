"""``vlhub train --dry-run`` on the tiny model and prepared FoodieQA data, and bad settings."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import run_vlhub, train_python
from fixtures.datasets import make_foodieqa, write_json
from vlhub.core import data
from vlhub.core.cli import cli
from vlhub.core.home import runs_dir
from vlhub.plugins.devtools.tiny_model import make_tiny_model


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    model = make_tiny_model(tmp_path / "tiny")
    data.prepare("foodieqa", make_foodieqa(tmp_path / "src"), tmp_path / "prepared")
    return model, tmp_path / "prepared"


def test_dry_run_reports_config_command_dataset_and_a_cpu_step(inputs: tuple[Path, Path]) -> None:
    python = train_python()
    model, prepared = inputs
    proc = run_vlhub("train", "--model", str(model), "--data", str(prepared), "--batch-size", "2", "--grad-accum",
                     "2", "--epochs", "2", "--dry-run", "--check-step", "--json", check=True)
    plan = json.loads(proc.stdout)
    train_records = json.loads((prepared / "train.json").read_text(encoding="utf-8"))
    config = Path(plan["config"])
    assert config.is_file() and config.parent == Path(plan["run_dir"])
    assert plan["command"] == [str(python.parent / "xtuner"), "train", str(config), "--work-dir",
                               str(config.parent / "work"), "--deepspeed", "deepspeed_zero2"]
    ds = plan["dataset"]
    assert ds["samples"] == len(train_records) and ds["missing_images"] == 0 and ds["over_max_length"] == 0
    assert 0 < ds["tokens"]["min"] <= ds["tokens"]["median"] <= ds["tokens"]["max"] < 4096
    assert ds["iterations"] == 2 * -(-len(train_records) // 2)
    assert all(e["trained_tokens"] > 0 and e["image_tiles"] >= 1 for e in ds["exact"])
    step = ds["step"]  # our model class built on the CPU: LoRA, no flash-attn, one real backward pass
    assert step["attention"] == "sdpa" and step["loss"] > 0 and step["parameters_with_grad"] > 0
    assert step["sample"].startswith("<image>\nDescribe this image.\n")
    assert plan["settings"]["template"] == "phi3_chat" and plan["status"] == "planned"
    loaded = subprocess.run([str(python), "-c", "import sys; from mmengine.config import Config; "
                             "print(Config.fromfile(sys.argv[1]).data_path)", str(config)],
                            capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == str(prepared / "train.json")
    runs = json.loads(run_vlhub("runs", "--json", check=True).stdout)
    assert [(r["id"], r["status"]) for r in runs] == [(plan["run_id"], "planned")]


def _break_model(model: Path, what: str) -> None:
    if what == "tokenizer":
        (model / "tokenizer.json").unlink()
    else:
        config = json.loads((model / "config.json").read_text())
        config["llm_config"]["architectures"] = ["Qwen2ForCausalLM"]
        (model / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("args, words", [
    (["--batch-size", "x"], "--batch-size 'x' is not a valid whole number"),
    (["--method", "dora"], "--method 'dora' is not one of lora, qlora, full"),
    (["--deepspeed", "zero4"], "--deepspeed 'zero4' is not one of"),
    (["--lr", "0"], "--lr 0 trains nothing"),
    (["--nnodes", "2"], "--nnodes > 1 needs the rank-0 machine's address"),
    (["--eval-prompt", "What dish?"], "--eval-prompt needs --eval-image"),
    (["--method", "qlora", "--deepspeed", "zero3_offload"], "cannot offload 4-bit weights"),
    (["--template", "internlm2_chat"], "--template internlm2_chat does not fit the model"),
    (["--batch-size", "8", "--grad-accum", "4"], "--batch-size 8 x --grad-accum 4 x 1 GPU(s) = 32 samples"),
    (["--max-length", "32"], "--max-length 32 cannot hold one image"),
    (["--model-break", "tokenizer"], "missing tokenizer.model or tokenizer.json"),
    (["--model-break", "arch"], "its LLM is Qwen2ForCausalLM"),
    (["--data-break", "no-images"], "none of the 15 records has an image"),
    (["--data-break", "image-root"], "no image found under"),
])
def test_bad_settings_are_one_line_naming_the_flag(inputs: tuple[Path, Path], tmp_path: Path, args: list[str],
                                                    words: str) -> None:
    model, prepared = inputs
    if args[0] == "--model-break":
        model = Path(shutil.copytree(model, tmp_path / "broken-model"))
        _break_model(model, args[1])
        args = []
    elif args[0] == "--data-break":
        records = json.loads((prepared / "train.json").read_text(encoding="utf-8"))
        if args[1] == "no-images":
            write_json(prepared / "train.json", [{k: v for k, v in r.items() if k != "image"} for r in records])
            args = []
        else:
            args = ["--image-root", str(tmp_path)]
    result = CliRunner().invoke(cli, ["train", "--model", str(model), "--data", str(prepared), "--dry-run",
                                      "--batch-size", "1", "--grad-accum", "1", *args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Fix: " in lines[0], lines
    assert words in lines[0]
    assert not list(runs_dir().iterdir())  # a refused plan leaves no run folder


def test_a_refused_start_leaves_no_planned_run(inputs: tuple[Path, Path]) -> None:
    """No GPU here: `vlhub train` (not a dry run) is refused at launch, in one line, and leaves no run folder."""
    model, prepared = inputs
    proc = run_vlhub("train", "--model", str(model), "--data", str(prepared), "--batch-size", "1")
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "Fix:" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert [p for p in runs_dir().iterdir() if p.is_dir()] == []
