"""The xtuner trainer's record check and vlhub's dataset subclass, on the tiny model (CPU, train env).

Several images per record and a per-record system prompt pass the check and go through
``VlhubInternVLDataset`` into a real batch and a forward pass; over-long records are reported
with index and overflow (an error with ``--strict``); records xtuner cannot train stop
``vlhub train --dry-run`` (exit 2) with their index and reason; ``vlhub data validate/prepare
--trainer`` run the same check.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conftest import ROOT, run_vlhub, train_python
from fixtures.datasets import make_foodieqa, write_image, write_json
from vlhub.core import data, stage, train
from vlhub.core.cli import cli
from vlhub.core.home import runs_dir
from vlhub.plugins.devtools.tiny_model import make_tiny_model

#: (width, height) -> tiles when an image is alone (max 6 + thumbnail) / one of 3 (max 2 + thumbnail)
SIZES = {"wide.jpg": (300, 100), "square.jpg": (224, 224), "tall.jpg": (50, 400), "photo.jpg": (64, 48)}
TILE_TOKENS = 64  # the tiny model: 224-pixel tiles, 14-pixel patches, downsampled by 0.5
DEFAULT_SYSTEM = "You are an AI assistant whose name is Phi-3."


def _turns(*texts: str) -> list[dict[str, str]]:
    return [{"from": "human" if i % 2 == 0 else "gpt", "value": t} for i, t in enumerate(texts)]


GOOD = [
    {"image": "photo.jpg", "conversations": _turns("<image>\nWhat dish is this?", "Mapo tofu.")},
    {"image": ["wide.jpg", "square.jpg", "tall.jpg"],
     "conversations": _turns("Image-1: <image>\nImage-2: <image>\nImage-3: <image>\nWhich one is square?",
                             "The second.")},
    {"image": "square.jpg", "conversations": [{"from": "system", "value": "You are a strict food critic."},
                                              *_turns("<image>\nRate it.", "Seven of ten.")]},
    {"messages": [{"role": "system", "content": "Answer in one word."},
                  {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "tall.jpg"}},
                                               {"type": "text", "text": "What is it?"}]},
                  {"role": "assistant", "content": "Noodles."}]},
    {"conversations": _turns("Say hello.", "Hello.")},
]

BATCH = r"""
import copy, json, os, sys
sys.path.insert(0, sys.argv[1])
import torch
import torch.distributed as dist
from train_internvl import VlhubInternVL, VlhubInternVLDataset
from xtuner.dataset.collate_fns import default_collate_fn
from xtuner.utils import PROMPT_TEMPLATE

model, data, root = sys.argv[2:5]
ds = VlhubInternVLDataset(model, copy.deepcopy(PROMPT_TEMPLATE.phi3_chat), data, root, max_length=4096)
start = ds.tokenizer.convert_tokens_to_ids("<img>")
items = [ds.prepare_data(i) for i in range(len(ds))]
records = []
for rec, item, checked in zip(ds.data, items, [c for c in ds.checked if c["problem"] is None]):
    ids = item["input_ids"]
    runs, n = [], 0
    for t in ids:
        if t == ds.img_context_id:
            n += 1
        elif n:
            runs.append(n)
            n = 0
    text = ds.tokenizer.decode([t for t in ids if t != ds.img_context_id])
    records.append({"index": rec["index"], "tiles": int(item["pixel_values"].shape[0]) if rec["images"] else 0,
                    "runs": runs, "starts": ids.count(start), "tokens": len(ids), "check_tokens": checked["tokens"],
                    "check_tiles": checked["tiles"], "text": text,
                    "trained": sum(1 for x in item["labels"] if x >= 0), "check_trained": checked["trained"]})
batch = default_collate_fn(items)
os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
os.environ.setdefault("MASTER_PORT", str(29400 + os.getpid() % 500))
dist.init_process_group("gloo", rank=0, world_size=1)
net = VlhubInternVL(model, freeze_llm=True, freeze_visual_encoder=True)
with torch.no_grad():
    loss = net(batch["data"], mode="loss")["loss"]
pixels = batch["data"]["pixel_values"]
tiles = sum(int(p.shape[0]) for p in pixels) if isinstance(pixels, list) else int(pixels.shape[0] * pixels.shape[1])
context = int((batch["data"]["input_ids"] == ds.img_context_id).sum())
print("RESULT " + json.dumps({"records": records, "patch_token": ds.patch_token, "loss": float(loss),
                              "batch_tiles": tiles, "batch_context": context}))
"""


def _folder(tmp_path: Path, records: list[Any]) -> Path:
    """A training JSON file with its images beside it; returns the file."""
    folder = tmp_path / "data"
    for n, (name, size) in enumerate(SIZES.items()):
        write_image(folder / name, n, size)
    return write_json(folder / "train.json", records)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny")


def test_several_images_and_system_prompts_pass_the_check_and_train(model: Path, tmp_path: Path) -> None:
    python = train_python()
    file = _folder(tmp_path, GOOD)
    report = train.check_records(model, file, {"max_length": 4096})
    assert report["trainer"] == "xtuner" and report["problems"] == [] and report["problem_count"] == 0
    assert (report["records"], report["kept"], report["with_image"]) == (5, 5, 4)
    assert (report["multi_image"], report["max_images"], report["system_prompts"]) == (1, 3, 2)
    assert report["over_max_length"] == 0 and report["over_max_length_worst"] is None

    proc = subprocess.run([str(python), "-c", BATCH, str(ROOT / "plugins" / "workers"), str(model), str(file),
                           str(file.parent)], capture_output=True, text=True, timeout=600,
                          env=stage.clean_env(None, python))
    assert proc.returncode == 0, proc.stderr[-3000:]
    # xtuner's forward prints "warning: ..." when the image tokens do not match the tiles' embeddings
    assert "warning:" not in proc.stdout, proc.stdout[-2000:]
    out = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert out["patch_token"] == TILE_TOKENS
    rows = {r["index"]: r for r in out["records"]}
    for row in rows.values():  # the check's exact counts are the batch's
        assert row["tokens"] == row["check_tokens"] and row["trained"] == row["check_trained"] > 0
        assert row["runs"] == [n * TILE_TOKENS for n in row["check_tiles"]]
        assert row["tiles"] == sum(row["check_tiles"]) and row["starts"] == len(row["check_tiles"])
    multi = rows[1]  # 3 images, in order, each at most max(1, 6 // 3) = 2 tiles + thumbnail
    assert multi["check_tiles"] == [3, 1, 3] and multi["tiles"] == 7
    assert "Image-1: <img></img>\nImage-2: <img></img>\nImage-3: <img></img>\nWhich one is square?" in multi["text"]
    assert rows[0]["check_tiles"] == [7] and "<img></img>\nWhat dish is this?" in rows[0]["text"]
    assert DEFAULT_SYSTEM in rows[0]["text"] and DEFAULT_SYSTEM in multi["text"]
    for index, system in ((2, "You are a strict food critic."), (3, "Answer in one word.")):
        assert f"<|system|>\n{system}<|end|>" in rows[index]["text"] and DEFAULT_SYSTEM not in rows[index]["text"]
    assert "<img></img>\nWhat is it?" in rows[3]["text"] and rows[3]["text"].rstrip().endswith("Noodles.<|end|>")
    assert rows[4]["tiles"] == 0 and rows[4]["runs"] == []
    assert out["batch_context"] == sum(sum(r["runs"]) for r in rows.values())
    assert out["batch_tiles"] >= sum(r["tiles"] for r in rows.values()) and out["loss"] == out["loss"]  # not NaN


LONG = {"image": "square.jpg", "conversations": _turns("<image>\nDescribe it at length.", "word " * 600)}


def _dry_run(model: Path, file: Path, *flags: str) -> Any:
    return CliRunner().invoke(cli, ["train", "--model", str(model), "--data", str(file), "--dry-run",
                                    "--batch-size", "1", "--grad-accum", "1", *flags])


def _one_line(result: Any, runs: int = 0) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Fix: " in lines[0], lines
    assert len(list(runs_dir().iterdir())) == runs  # a refused plan leaves no run folder
    return lines[0]


def test_over_long_records_are_reported_with_index_and_overflow(model: Path, tmp_path: Path) -> None:
    train_python()
    file = _folder(tmp_path, [GOOD[0], GOOD[1], LONG, GOOD[2]])
    proc = run_vlhub("train", "--model", str(model), "--data", str(file), "--dry-run", "--batch-size", "1",
                     "--grad-accum", "1", "--max-length", "600", "--json", check=True)
    plan = json.loads(proc.stdout)
    ds = plan["dataset"]
    worst = ds["over_max_length_worst"]
    assert ds["over_max_length"] == 1 and worst["index"] == 2 and worst["over"] == worst["tokens"] - 600 > 0
    assert ds["check"]["over_max_length_records"] == [{"index": 2, "tokens": worst["tokens"]}]
    assert ds["samples"] == 4 and ds["check"]["problems"] == []
    assert (f"1 of 4 samples exceeds --max-length 600 and will be cut (worst: record 2, {worst['tokens']} tokens, "
            f"{worst['over']} over)") in plan["warnings"]
    assert all(e["tokens"] == min(e["check_tokens"], 600) for e in ds["exact"])  # after the cut

    line = _one_line(_dry_run(model, file, "--max-length", "600", "--strict"), runs=1)
    assert "1 of 4 samples exceeds --max-length 600" in line and "record(s) 2" in line
    assert f"raise --max-length to {worst['tokens']}" in line


BAD = [
    ({"conversations": _turns("<image>\nWhat is this?", "A dish.")}, "1 <image> placeholder(s) for 0 image(s)"),
    ({"messages": [{"role": "user", "content": "<image>\nHi"}, {"role": "assistant", "content": None}],
      "image": "photo.jpg"}, "turn 1 (gpt) has no text"),
    ({"image": "photo.jpg", "conversations": [*_turns("<image>\nWhat?", "A dish."),
                                              {"from": "system", "value": "Be brief."}, *_turns("And?", "Tofu.")]},
     "turn 2 is a system turn after the conversation started"),
    ({"image": "photo.jpg", "conversations": _turns("<image>\nWhat?", "It is <image>.")},
     "turn 1 (gpt) contains <image>"),
]


def test_records_xtuner_cannot_train_stop_the_dry_run_by_index(model: Path, tmp_path: Path) -> None:
    train_python()
    file = _folder(tmp_path, [GOOD[0], GOOD[1], *(record for record, _ in BAD), GOOD[4]])
    line = _one_line(_dry_run(model, file))
    assert f"4 of 7 records cannot be trained by xtuner (first: record 2 (conversations): {BAD[0][1]}" in line
    assert "also records 3, 4, 5" in line and "vlhub data validate" in line and "--trainer xtuner" in line

    # --max-length that would cut the image tokens of the 7-tile record 0 (448 image tokens)
    file = _folder(tmp_path, [GOOD[0], GOOD[4], GOOD[2]])
    line = _one_line(_dry_run(model, file, "--max-length", "300"))
    assert "1 of 3 records cannot be trained by xtuner (first: record 0 (image):" in line
    assert "--max-length 300 would cut image tokens" in line and "raise --max-length" in line


def test_data_validate_and_prepare_run_the_trainers_check(model: Path, tmp_path: Path) -> None:
    train_python()
    square = {"image": "square.jpg", "conversations": _turns("<image>\nWhat shape?", "Square.")}
    file = _folder(tmp_path, [GOOD[0], square, BAD[0][0], GOOD[4], LONG])
    proc = run_vlhub("data", "validate", str(file), "--images", str(file.parent), "--trainer", "xtuner",
                     "--model", str(model), "--max-length", "300", "--json", check=True)
    report = json.loads(proc.stdout)
    problems = {p["index"]: p for p in report["problems"]}
    assert sorted(problems) == [0, 2]
    assert "placeholder" in problems[2]["reason"]  # vlhub's own validation found it first
    assert problems[0]["field"] == "xtuner: image"
    assert "--max-length 300 would cut image tokens" in problems[0]["reason"]
    assert (report["checked"], report["usable"], report["dropped"]) == (5, 3, 2)
    assert report["trainer"]["over_max_length_worst"]["index"] == 4

    strict = run_vlhub("data", "validate", str(file), "--images", str(file.parent), "--trainer", "xtuner",
                       "--model", str(model), "--max-length", "300", "--strict")
    assert strict.returncode == 1 and "record 0" in strict.stderr

    missing = CliRunner().invoke(cli, ["data", "validate", str(file), "--images", str(file.parent),
                                       "--trainer", "xtuner"])
    assert missing.exit_code == 2 and "--trainer xtuner needs --model" in missing.stderr

    out = tmp_path / "prepared"
    proc = run_vlhub("data", "prepare", "foodieqa", "--source", str(make_foodieqa(tmp_path / "src")), "--out",
                     str(out), "--trainer", "xtuner", "--model", str(model), "--json", check=True)
    prepared = json.loads(proc.stdout)
    check = prepared["trainer"]
    assert check["trainer"] == "xtuner" and check["problems"] == []
    assert check["records"] == check["kept"] == prepared["records"]["train"]
    assert Path(check["file"]) == (out / "train.json").resolve()
    assert os.path.isfile(out / "prepared.json")
