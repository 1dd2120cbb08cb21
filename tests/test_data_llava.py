"""CLoT and LLaVA-style JSON: validation failures by index, sampling, messages conversion, `vlhub data validate`."""
from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from fixtures.datasets import CLOT_BROKEN, make_clot, write_image, write_json, write_non_utf8_json
from vlhub.core import data
from vlhub.core.cli import cli


def load(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))


def test_clot_reports_each_broken_record(tmp_path: Path) -> None:
    root = make_clot(tmp_path / "src", broken=True)
    result = data.prepare("clot", root, tmp_path / "out")
    found = {p.index: p.reason for p in result.problems}
    assert set(found) == set(CLOT_BROKEN)
    for index, words in CLOT_BROKEN.items():
        assert words in found[index], (index, found[index])
    train = load(tmp_path / "out/train.json")
    assert len(train) == 12 and result.records == {"train": 12}
    source = load(root / "ex_cn.json")
    assert [{k: v for k, v in r.items() if k != "id"} for r in train] == source[:12]


def test_clot_sample_is_seeded_and_split_by_image(tmp_path: Path) -> None:
    root = make_clot(tmp_path / "src", count=20)
    first = data.prepare("clot", root, tmp_path / "a", {"sample": "8", "seed": "1", "val_fraction": "0.25"})
    again = data.prepare("clot", root, tmp_path / "b", {"sample": 8, "seed": 1, "val_fraction": 0.25})
    assert first.records == again.records and sum(first.records.values()) == 8 and first.records["val"] >= 2
    assert load(tmp_path / "a/train.json") == load(tmp_path / "b/train.json")
    train, val = load(tmp_path / "a/train.json"), load(tmp_path / "a/val.json")
    assert not {r["image"] for r in train} & {r["image"] for r in val}
    assert not (tmp_path / "a/val_mc.json").exists()


def test_messages_and_jsonl_become_llava(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_image(src / "imgs/a.png", 1, fmt="PNG")
    write_image(src / "imgs/b.jpg", 2)
    rows = [
        {"messages": [{"role": "system", "content": "be brief"},
                      {"role": "user", "content": [{"type": "image", "image": "imgs/a.png"},
                                                   {"type": "text", "text": "这是什么？"}]},
                      {"role": "assistant", "content": "一只猫"}]},
        {"id": "x2", "image": "imgs/b.jpg", "messages": [{"role": "user", "content": "<image>\n描述"},
                                                         {"role": "assistant", "content": "一条狗"},
                                                         {"role": "user", "content": "颜色？"},
                                                         {"role": "assistant", "content": "黄色"}]},
        {"messages": [{"role": "user", "content": "只有文字"}, {"role": "assistant", "content": "好"}]},
        {"messages": [{"role": "user", "content": "没有回答"}]},
        {"prompt": "neither shape"},
    ]
    (src / "chat.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n",
                                    encoding="utf-8")
    result = data.prepare("llava-json", src / "chat.jsonl", tmp_path / "out", {"system": "drop"})
    assert load(tmp_path / "out/train.json") == [
        {"id": "0", "image": "imgs/a.png",
         "conversations": [{"from": "human", "value": "<image>\n这是什么？"}, {"from": "gpt", "value": "一只猫"}]},
        {"id": "x2", "image": "imgs/b.jpg",
         "conversations": [{"from": "human", "value": "<image>\n描述"}, {"from": "gpt", "value": "一条狗"},
                           {"from": "human", "value": "颜色？"}, {"from": "gpt", "value": "黄色"}]},
        {"id": "2", "conversations": [{"from": "human", "value": "只有文字"}, {"from": "gpt", "value": "好"}]},
    ]
    assert [(p.index, p.reason) for p in result.problems] == [
        (3, "the last turn is from human: it has no gpt answer"),
        (4, "no 'conversations' or 'messages' field")]
    stats = data.stats(tmp_path / "out")
    assert stats["images"] == 2 and stats["text_only_records"] == 1 and stats["turns"]["total"] == 8
    assert stats["image_formats"] == {"PNG": 1, "JPEG": 1}
    # by default a first system turn is the record's own system prompt (kept, in both shapes) ...
    default = data.prepare("llava-json", src / "chat.jsonl", tmp_path / "out2")
    first = load(tmp_path / "out2/train.json")[0]
    assert first["conversations"][0]["from"] == "system" and [p.index for p in default.problems] == [3, 4]
    # ... and with system=reject a record with a system turn is reported, not silently dropped
    rejected = data.prepare("llava-json", src / "chat.jsonl", tmp_path / "out3", {"system": "reject"})
    assert rejected.problems[0].index == 0 and rejected.problems[0].field == "chat.jsonl: messages[0]"
    assert "turn 0 is a system turn" in rejected.problems[0].reason and "--opt system=drop" in rejected.problems[0].reason


def test_validate_cli(tmp_path: Path) -> None:
    root = make_clot(tmp_path / "src", broken=True)
    runner = CliRunner()
    ok = runner.invoke(cli, ["data", "validate", str(root / "ex_cn.json"), "--images", str(root), "--json"])
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.stdout)
    assert report["checked"] == 12 + len(CLOT_BROKEN) and report["usable"] == 12
    assert {p["index"] for p in report["problems"]} == set(CLOT_BROKEN)
    assert report["stats"]["records_total"] == 12 and report["stats"]["images"] == 12
    strict = runner.invoke(cli, ["data", "validate", str(root / "ex_cn.json"), "--images", str(root), "--strict"])
    assert strict.exit_code == 1
    assert "record 17" in strict.stderr and "2 <image> placeholder(s) for 1 image(s)" in strict.stderr
    assert strict.stderr.strip().splitlines()[-1].startswith("Error: 9 of 21 records failed validation")


def test_unreadable_json_is_bad_input_naming_the_file(tmp_path: Path) -> None:
    write_image(tmp_path / "a.jpg", 5)
    records = [{"image": "a.jpg", "conversations": [{"from": "human", "value": "<image>\n菜名？"},
                                                    {"from": "gpt", "value": "鱼香肉丝"}]}]
    gbk = write_non_utf8_json(tmp_path / "gbk.json", records)
    broken = tmp_path / "broken.json"
    broken.write_text('[{"image": "a.jpg",', encoding="utf-8")
    runner = CliRunner()
    for path, words in ((gbk, "not UTF-8"), (broken, "not valid JSON"), (write_json(tmp_path / "o.json", {"a": 1}),
                                                                         "expected a list of records")):
        result = runner.invoke(cli, ["data", "validate", str(path), "--images", str(tmp_path)])
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith(f"Error: {path}: {words}") and "Fix:" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    good = runner.invoke(cli, ["data", "validate", str(write_json(tmp_path / "ok.json", records)),
                               "--images", str(tmp_path), "--strict"])
    assert good.exit_code == 0 and "1 usable, 0 bad" in good.stderr
