"""FoodieQA preparation: the tutorial's conversion, the by-dish split, validation, atomic output."""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from fixtures.datasets import FOODIEQA_BROKEN, make_foodieqa
from vlhub.core import data
from vlhub.core.cli import cli
from vlhub.core.errors import BadInput
from vlhub.core.prepared.validate import ValidationFailed


def tree_hash(root: Path) -> dict[str, str]:
    """Every entry under ``root``: file content hash, symlink target, or 'dir'."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = "link:" + os.readlink(path)
            elif path.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest() + f":{path.stat().st_mode:o}"
    return out


def tutorial_conversion(sivqa: list[dict]) -> list[dict]:
    """process_food.py from the InternVL2 tutorial, as published."""
    return [{"image": d["food_meta"]["food_file"],
             "conversations": [{"from": "human", "value": d["question"] + "\n<image>"},
                               {"from": "gpt", "value": d["choices"][int(d["answer"])] + "，图中的菜是"
                                + d["food_meta"]["food_name"]}]} for d in sivqa]


def load(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))


def test_default_conversion_is_the_tutorials(tmp_path: Path) -> None:
    root = make_foodieqa(tmp_path / "src")
    result = data.prepare("foodieqa", root, tmp_path / "out")
    records = load(tmp_path / "out/train.json") + load(tmp_path / "out/val.json")
    expected = tutorial_conversion(load(root / "sivqa_tidy.json"))
    by_id = {r["id"]: {k: v for k, v in r.items() if k != "id"} for r in records}
    assert by_id == {f"sivqa-{i}": rec for i, rec in enumerate(expected)}
    assert result.dropped == 0 and sum(result.records.values()) == len(expected)
    assert result.image_root == root.resolve()


def test_split_by_dish_keeps_images_and_dishes_apart(tmp_path: Path) -> None:
    root = make_foodieqa(tmp_path / "src")
    data.prepare("foodieqa", root, tmp_path / "out", {"subsets": "sivqa,textqa,mivqa", "val_fraction": "0.3"})
    train, val = load(tmp_path / "out/train.json"), load(tmp_path / "out/val.json")
    assert train and val

    def images(records: list[dict]) -> set[str]:
        return {p for r in records for p in ([r["image"]] if isinstance(r.get("image"), str) else r.get("image", []))}

    assert not images(train) & images(val)
    sivqa = load(root / "sivqa_tidy.json")
    dish = {f"sivqa-{i}": d["food_meta"]["food_name"] for i, d in enumerate(sivqa)}
    assert not {dish[r["id"]] for r in train if r["id"] in dish} & {dish[r["id"]] for r in val if r["id"] in dish}
    # the duplicate photo of one dish stays with that dish
    assert ("images/000.jpg" in images(val)) == ("images/000_copy.jpg" in images(val))
    manifest = load(tmp_path / "out/prepared.json")
    report = load(tmp_path / "out/report.json")
    assert manifest["records"] == {"train": len(train), "val": len(val)}
    assert report["left_out_straddling_splits"] == manifest["left_out"]
    assert len(train) + len(val) + manifest["left_out"] == len(sivqa) + 4 + 4


def test_val_mc_keeps_choices_and_answer_index(tmp_path: Path) -> None:
    root = make_foodieqa(tmp_path / "src")
    data.prepare("foodieqa", root, tmp_path / "out", {"val_fraction": 0.4, "seed": 3})
    val, mc = load(tmp_path / "out/val.json"), load(tmp_path / "out/val_mc.json")
    assert [m["id"] for m in mc] == [r["id"] for r in val]
    sivqa = load(root / "sivqa_tidy.json")
    for item, record in zip(mc, val):
        source = sivqa[int(item["id"].split("-")[1])]
        assert item["choices"] == source["choices"] and item["answer"] == int(source["answer"])
        assert item["image"] == record["image"] and item["prompt"] == record["conversations"][0]["value"]
        assert record["conversations"][1]["value"].startswith(item["choices"][item["answer"]])


def test_answer_template_and_choices_options(tmp_path: Path) -> None:
    root = make_foodieqa(tmp_path / "src")
    data.prepare("foodieqa", root, tmp_path / "out", {"answer_template": "答案：{letter}（{answer}）",
                                                      "with_choices": "true", "val_fraction": "0"})
    first = load(tmp_path / "out/train.json")[0]
    source = load(root / "sivqa_tidy.json")[0]
    letter = "ABCD"[int(source["answer"])]
    assert first["conversations"][1]["value"] == f"答案：{letter}（{source['choices'][int(source['answer'])]}）"
    assert first["conversations"][0]["value"] == (source["question"] + "\n" + "\n".join(
        f"{'ABCD'[i]}. {c}" for i, c in enumerate(source["choices"])) + "\n<image>")
    assert not (tmp_path / "out/val.json").exists()
    with pytest.raises(BadInput, match="not a valid template"):
        data.prepare("foodieqa", root, tmp_path / "out2", {"answer_template": "{nope}"})


def test_every_broken_record_is_reported_with_its_index(tmp_path: Path) -> None:
    root = make_foodieqa(tmp_path / "src", broken=True)
    result = data.prepare("foodieqa", root, tmp_path / "out")
    found = {p.index: p.reason for p in result.problems}
    assert set(found) == set(FOODIEQA_BROKEN)
    for index, words in FOODIEQA_BROKEN.items():
        assert words in found[index], (index, found[index])
    assert all(p.field.startswith("sivqa_tidy.json: ") for p in result.problems)
    report = load(tmp_path / "out/report.json")
    assert report["dropped"] == len(FOODIEQA_BROKEN) == result.dropped
    assert [p["index"] for p in report["problems"]] == sorted(FOODIEQA_BROKEN)
    kept = {r["id"] for r in load(tmp_path / "out/train.json") + load(tmp_path / "out/val.json")}
    assert not kept & {f"sivqa-{i}" for i in FOODIEQA_BROKEN}


def test_strict_fails_and_writes_nothing(tmp_path: Path) -> None:
    root = make_foodieqa(tmp_path / "src", broken=True)
    with pytest.raises(ValidationFailed) as info:
        data.prepare("foodieqa", root, tmp_path / "out", strict=True)
    assert info.value.exit_code == 1 and "record 17" in info.value.one_line()
    assert not (tmp_path / "out").exists()
    result = CliRunner().invoke(cli, ["data", "prepare", "foodieqa", "--source", str(root),
                                      "--out", str(tmp_path / "out"), "--strict", "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["dropped"] == len(FOODIEQA_BROKEN)
    assert "record 18 (sivqa_tidy.json: image)" in result.stderr and "truncated" in result.stderr
    assert not (tmp_path / "out").exists()


def test_source_is_byte_identical_after_prepare(tmp_path: Path) -> None:
    root = make_foodieqa(tmp_path / "src", broken=True)
    before = tree_hash(tmp_path / "src")
    result = CliRunner().invoke(cli, ["data", "prepare", "foodieqa", "--source", str(root),
                                      "--out", str(tmp_path / "out"), "--opt", "subsets=sivqa,mivqa,textqa"])
    assert result.exit_code == 0, result.output
    assert tree_hash(tmp_path / "src") == before
    assert "8 dropped" in result.stderr


def test_cli_json_and_stats(tmp_path: Path) -> None:
    root = make_foodieqa(tmp_path / "src")
    runner = CliRunner()
    result = runner.invoke(cli, ["data", "prepare", "foodieqa", "--source", str(root), "--out", str(tmp_path / "out"),
                                 "--subsets", "sivqa,textqa", "--val-fraction", "0.25", "--json"])
    assert result.exit_code == 0, result.output
    prepared = json.loads(result.stdout)
    assert prepared["records"]["train"] + prepared["records"]["val"] == 17 + 4
    stats = runner.invoke(cli, ["data", "stats", str(tmp_path / "out"), "--json"])
    assert stats.exit_code == 0, stats.output
    report = json.loads(stats.stdout)
    assert report["records_total"] == 21 and report["records"] == prepared["records"]
    assert report["images"] == 9 and report["text_only_records"] == 4
    assert report["duplicate_images"]["examples"] == [["images/000.jpg", "images/000_copy.jpg"]]
    assert report["categories"]["main_region"]["川"] == 5 and report["categories"]["subset"] == {"sivqa": 17, "textqa": 4}
    assert report["answer_length"]["count"] == 21
    manifest = load(tmp_path / "out/prepared.json")
    assert manifest["source"] == str(root.resolve()) and manifest["image_root"] == str(root.resolve())
    assert Path(manifest["files"]["val_mc"]).is_file()


def test_interrupted_prepare_leaves_no_folder(tmp_path: Path) -> None:
    root = make_foodieqa(tmp_path / "src")

    def stop_while_writing(event) -> None:  # noqa: ANN001 - a Progress
        if event.task == "write" and event.done >= 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        data.prepare("foodieqa", root, tmp_path / "out", progress=stop_while_writing)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]
    with pytest.raises(BadInput, match="not a prepared dataset folder"):
        data.stats(tmp_path / "out")


def test_bad_sources_are_bad_input(tmp_path: Path) -> None:
    root = make_foodieqa(tmp_path / "src")
    runner = CliRunner()
    zipped = tmp_path / "zipped"
    zipped.mkdir()
    with zipfile.ZipFile(zipped / "FoodieQA.zip", "w") as zf:
        zf.write(root / "sivqa_tidy.json", "FoodieQA/sivqa_tidy.json")
    cases = [
        (["--source", str(zipped)], "FoodieQA.zip is not extracted"),
        (["--source", str(root), "--opt", "subsets=sivqa,nope"], "unknown subset(s) nope"),
        (["--source", str(root), "--opt", "val_fraction=abc"], "not a valid float"),
        (["--source", str(root), "--out", str(root / "inside")], "overlaps the source folder"),
        (["--source", str(tmp_path / "missing")], "does not exist"),
    ]
    for args, words in cases:
        if "--out" not in args:
            args = [*args, "--out", str(tmp_path / "out")]
        result = runner.invoke(cli, ["data", "prepare", "foodieqa", *args])
        assert result.exit_code == 2, (args, result.output)
        assert words in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    (root / "textqa_tidy.json").write_bytes("[{\"question\": \"鱼\"}]".encode("gbk"))
    result = runner.invoke(cli, ["data", "prepare", "foodieqa", "--source", str(root), "--out", str(tmp_path / "o"),
                                 "--subsets", "textqa"])
    assert result.exit_code == 2 and "textqa_tidy.json: not UTF-8" in result.stderr


def test_force_replaces_a_previous_prepare(tmp_path: Path) -> None:
    root = make_foodieqa(tmp_path / "src")
    data.prepare("foodieqa", root, tmp_path / "out", {"val_fraction": 0})
    with pytest.raises(BadInput, match="already exists"):
        data.prepare("foodieqa", root, tmp_path / "out")
    data.prepare("foodieqa", root, tmp_path / "out", {"val_fraction": 0.3}, force=True)
    assert load(tmp_path / "out/prepared.json")["options"]["val_fraction"] == 0.3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]
