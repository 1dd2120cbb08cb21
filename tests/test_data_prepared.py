"""The prepared-folder format: its version, folders written by vlhub 0.1 still read, newer ones refused."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import run_vlhub
from fixtures.datasets import make_foodieqa, write_image
from vlhub.core import data
from vlhub.core.cli import cli
from vlhub.core.errors import BadInput
from vlhub.core.prepared.format import FORMAT_VERSION, load_manifest
from vlhub.plugins.devtools.tiny_model import make_tiny_model
from vlhub.plugins.trainers import inputs

#: every key vlhub 0.1 wrote into prepared.json (no format_version)
V0_1_KEYS = {"format", "dataset", "source", "image_root", "files", "records", "dropped", "left_out", "options",
             "vlhub_version", "created"}


def _record(n: int, dish: str) -> dict:
    return {"id": f"sivqa-{n}", "image": f"images/{n:03d}.jpg",
            "conversations": [{"from": "human", "value": "图片中的食物是哪个地区的特色美食？\n<image>"},
                              {"from": "gpt", "value": f"川，图中的菜是{dish}"}]}


def _records_file(path: Path, records: list[dict]) -> None:
    """A record list the way vlhub 0.1 wrote it: one record per line."""
    lines = ",\n".join(json.dumps(r, ensure_ascii=False) for r in records)
    path.write_text(f"[\n{lines}\n]\n" if records else "[]\n", encoding="utf-8")


def make_v0_1_folder(tmp_path: Path) -> Path:
    """A prepared folder exactly as vlhub 0.1's ``vlhub data prepare foodieqa`` left it."""
    source = tmp_path / "src" / "FoodieQA"
    for n in range(6):
        write_image(source / f"images/{n:03d}.jpg", n)
    out = tmp_path / "prepared-v0.1"
    out.mkdir()
    train = [_record(n, "麻婆豆腐" if n % 2 else "回锅肉") for n in range(5)]
    val = [_record(5, "白切鸡")]
    mc = [{"id": "sivqa-5", "subset": "sivqa", "image": "images/005.jpg", "question": "图片中的食物是哪个地区的特色美食？",
           "choices": ["粤", "川", "湘", "浙"], "answer": 0, "prompt": val[0]["conversations"][0]["value"],
           "food_name": "白切鸡"}]
    _records_file(out / "train.json", train)
    _records_file(out / "val.json", val)
    _records_file(out / "val_mc.json", mc)
    report = {"checked": 7, "usable": 6, "dropped": 1, "left_out_straddling_splits": 0,
              "problems": [{"index": 6, "field": "sivqa_tidy.json: image", "reason": "image not found: images/x.jpg"}]}
    stats = {"records": {"train": 5, "val": 1}, "records_total": 6, "images": 6, "image_bytes": 12345,
             "image_formats": {"JPEG": 6}, "multi_image_records": 0, "text_only_records": 0,
             "turns": {"total": 12, "max_per_record": 2, "mean_per_record": 2.0},
             "answer_length": {"count": 6, "min": 8, "median": 8, "p90": 8, "max": 8, "mean": 8.0,
                               "histogram": {"<=16": 6, "17-32": 0, "33-64": 0, "65-128": 0, "129-256": 0,
                                             "257-512": 0, ">512": 0}},
             "categories": {"subset": {"sivqa": 6}}, "duplicate_images": {"groups": 0, "images": 0, "examples": []}}
    manifest = {"format": "vlhub.prepared/1", "dataset": "foodieqa", "source": str(source),
                "image_root": str(source),
                "files": {"train": str(out / "train.json"), "val": str(out / "val.json"),
                          "val_mc": str(out / "val_mc.json")},
                "records": {"train": 5, "val": 1}, "dropped": 1, "left_out": 0,
                "options": {"subsets": "sivqa", "answer_template": "{answer}，图中的菜是{food_name}",
                            "mivqa_template": "图{letter}", "textqa_template": "{answer}", "with_choices": False,
                            "val_fraction": 0.1, "seed": 0},
                "vlhub_version": "0.1.0", "created": "2026-11-24T10:00:00+0800"}
    assert set(manifest) == V0_1_KEYS
    for name, content in (("report.json", report), ("stats.json", stats), ("prepared.json", manifest)):
        (out / name).write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out


def test_prepare_writes_the_current_version_and_every_v0_1_key(tmp_path: Path) -> None:
    data.prepare("foodieqa", make_foodieqa(tmp_path / "src"), tmp_path / "out")
    manifest = json.loads((tmp_path / "out/prepared.json").read_text(encoding="utf-8"))
    assert manifest["format"] == "vlhub.prepared/1" and manifest["format_version"] == FORMAT_VERSION == 2
    assert set(manifest) == V0_1_KEYS | {"format_version"}  # what a vlhub 0.1 reader needs is all there
    assert load_manifest(tmp_path / "out").format_version == 2


def test_a_v0_1_folder_still_reads(tmp_path: Path) -> None:
    folder = make_v0_1_folder(tmp_path)
    manifest = load_manifest(folder)
    assert manifest.format_version == 1 and manifest.dataset == "foodieqa" and manifest.left_out == 0
    assert manifest.files["train"] == folder / "train.json" and manifest.image_root == tmp_path / "src/FoodieQA"
    runner = CliRunner()
    stats = runner.invoke(cli, ["data", "stats", str(folder), "--json", "--preview", "2"])
    assert stats.exit_code == 0, stats.output
    report = json.loads(stats.stdout)
    assert report["format_version"] == 1 and report["records"] == {"train": 5, "val": 1} and report["dropped"] == 1
    assert [row["images"] for row in report["preview"]] == [[str(tmp_path / f"src/FoodieQA/images/{n:03d}.jpg")]
                                                            for n in range(2)]
    text = runner.invoke(cli, ["data", "stats", str(folder), "--preview", "1"])
    assert text.exit_code == 0 and "foodieqa: 6 records (train 5, val 1), 6 images, 1 dropped" in text.stdout
    assert [row["id"] for row in data.preview(folder, "val_mc")] == ["sivqa-5"]
    found = inputs.check_data(folder)  # what `vlhub train` reads first
    assert found.file == folder / "train.json" and found.image_root == tmp_path / "src/FoodieQA"
    assert (found.records, found.with_image, found.missing_images) == (5, 5, [])


def test_train_dry_run_reads_a_v0_1_folder(tmp_path: Path) -> None:
    folder = make_v0_1_folder(tmp_path)
    model = make_tiny_model(tmp_path / "tiny")
    proc = run_vlhub("train", "--model", str(model), "--data", str(folder), "--batch-size", "1", "--grad-accum",
                     "1", "--dry-run", "--json", check=True)
    plan = json.loads(proc.stdout)
    assert plan["dataset"]["samples"] == 5 and plan["dataset"]["missing_images"] == 0


@pytest.mark.parametrize("change, words", [
    ({"format_version": 3}, "was prepared by a newer vlhub (format version 3; this one reads 1 to 2)"),
    ({"format_version": "2"}, "format_version '2' is not a version number"),
    ({"files": ["train.json"]}, "'files' is a JSON array, expected a JSON object"),
    ({"image_root": None}, "'image_root' is a JSON null, expected a JSON string"),
    ({"format": "something/9"}, "is not a prepared dataset folder"),
])
def test_newer_or_damaged_manifests_are_one_line(tmp_path: Path, change: dict, words: str) -> None:
    folder = make_v0_1_folder(tmp_path)
    manifest = json.loads((folder / "prepared.json").read_text(encoding="utf-8"))
    (folder / "prepared.json").write_text(json.dumps({**manifest, **change}), encoding="utf-8")
    with pytest.raises(BadInput, match="Fix: ") as info:
        data.stats(folder)
    assert words in info.value.one_line()
    result = CliRunner().invoke(cli, ["data", "stats", str(folder)])
    assert result.exit_code == 2 and words in result.stderr and len(result.stderr.strip().splitlines()) == 1
