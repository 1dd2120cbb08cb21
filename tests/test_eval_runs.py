"""`vlhub eval` writes eval runs: eval.json with per-item answers, accuracy with a Wilson 95 % interval,
per-category accuracy (FoodieQA's food_type / main_region), fixed / broken items for two models, and an
open-ended score (exact match + chrF) for CLoT data. The backend is the OpenAI stand-in server, whose
answers each test scripts per model.
"""
from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any, Callable

import pytest

from conftest import run_vlhub
from fixtures.datasets import DISHES, make_clot, make_foodieqa
from servers.openai_api import OpenAITestServer, last_user_text
from vlhub.core import data as dataapi
from vlhub.core import eval as evalapi
from vlhub.core.chat import Conversation
from vlhub.core.errors import BadInput
from vlhub.core.runs import load_run

MODEL_KEYS = {"model", "backend", "n", "correct", "accuracy", "ci95", "total", "categories", "items"}
TOP_KEYS = {"format", "run_id", "data", "file", "dataset", "task", "limit", "n", "categories", "notes", "results"}


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def wilson_by_hand(k: int, n: int) -> tuple[float, float]:
    """The Wilson score interval, written out from the textbook formula (z = 1.959964)."""
    z = 1.959963984540054
    p = k / n
    low = (p + z**2 / (2 * n) - z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))) / (1 + z**2 / n)
    high = (p + z**2 / (2 * n) + z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))) / (1 + z**2 / n)
    return max(0.0, low), min(1.0, high)


def asked(messages: list[dict[str, Any]]) -> tuple[str, str]:
    """(the question's text, the sha256 of its image or "") of the last user turn the server got."""
    content = [m for m in messages if m.get("role") == "user"][-1]["content"]
    urls = [p["image_url"]["url"] for p in content if p.get("type") == "image_url"] if isinstance(content, list) else []
    image = hashlib.sha256(base64.b64decode(urls[0].split(",", 1)[1])).hexdigest() if urls else ""
    return last_user_text(messages).strip(), image


def image_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def scripted(table: dict[tuple[str, str], dict[str, str]]) -> Callable[[str, list[dict[str, Any]]], str]:
    """An answer function: the reply each model gives to each (question, image)."""
    return lambda model, messages: table[asked(messages)][model]


# ------------------------------------------------------------------ multiple choice (FoodieQA)
def _right(model: str, item: dict[str, Any]) -> bool:
    """Which items each model answers right: base knows 川 and the cuisine questions; tuned all but meat
    dishes and the text-only questions (so the fine-tune both fixes and breaks some)."""
    dish = DISHES.get(item["food_name"])
    if model == "base":
        return bool(dish and dish[1] == "川") or item["question"].endswith("菜系？")
    return not (dish and dish[0] == "meat") and item["subset"] != "textqa"


def _mc_replies(folder: Path, root: Path) -> dict[tuple[str, str], dict[str, str]]:
    """(question, image) -> {model: reply}: the right choice's text, or another choice's."""
    table = {}
    for item in load(folder / "val_mc.json"):
        image = image_sha(root / item["image"]) if item.get("image") else ""
        right, wrong = item["choices"][item["answer"]], item["choices"][item["answer"] - 1]
        table[(item["question"], image)] = {m: right if _right(m, item) else wrong for m in ("base", "tuned")}
    return table


@pytest.fixture
def foodieqa(tmp_path: Path) -> tuple[Path, Path]:
    """A prepared FoodieQA folder (sivqa with categories, textqa without) and its source root."""
    root = make_foodieqa(tmp_path / "src")
    dataapi.prepare("foodieqa", root, tmp_path / "prepared", {"subsets": "sivqa,textqa", "val_fraction": 0.5,
                                                                "seed": 1})
    return tmp_path / "prepared", root


def test_val_mc_items_carry_the_dish_categories(foodieqa: tuple[Path, Path]) -> None:
    items = load(foodieqa[0] / "val_mc.json")
    assert {i["subset"] for i in items} == {"sivqa", "textqa"}
    for item in items:
        if item["subset"] == "sivqa":
            assert item["categories"] == dict(zip(("food_type", "main_region"), DISHES[item["food_name"]]))
        else:  # textqa questions have no food_meta: nothing to break them down by
            assert item["categories"] == {}


def test_eval_run_files_schema_categories_and_fixed_broken(foodieqa: tuple[Path, Path]) -> None:
    folder, root = foodieqa
    items = load(folder / "val_mc.json")
    with OpenAITestServer(models=("base", "tuned"), answer=scripted(_mc_replies(folder, root))) as srv:
        shown = run_vlhub("eval", "base", "tuned", "--data", str(folder), "--base-url", srv.base_url)
        as_json = run_vlhub("eval", "base", "tuned", "--data", str(folder), "--base-url", srv.base_url, "--json")
    assert shown.returncode == 0, shown.stderr
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)

    # the run folder: run.json (kind eval, done, a summary) and eval.json (what --json printed)
    run = load_run(report["run_id"])
    assert run.kind == "eval" and run.status == "done"
    assert Path(run.data["eval_json"]) == run.path("eval.json") and load(run.path("eval.json")) == report
    assert evalapi.load_eval(report["run_id"]) == report  # the function the Chat page calls
    assert "items" not in run.data["result"]["results"][0] and run.data["result"]["fixed"] == report["fixed"]

    # the schema
    assert set(report) == TOP_KEYS | {"fixed", "broken"}
    assert report["format"] == "vlhub.eval/1" and report["task"] == "multiple-choice"
    assert report["dataset"] == "foodieqa" and report["file"] == str(folder / "val_mc.json")
    assert report["n"] == len(items) and report["limit"] is None and report["notes"] == []
    assert report["categories"] == ["food_type", "main_region"]
    base, tuned = report["results"]
    for model, result in (("base", base), ("tuned", tuned)):
        assert set(result) == MODEL_KEYS | {"unanswered"} and result["model"] == model
        assert result["backend"] == "openai" and result["n"] == result["total"] == len(items)
        assert result["unanswered"] == 0
        rows = result["items"]
        assert [r["index"] for r in rows] == list(range(len(items)))
        for row, item in zip(rows, items):
            expected = {"index": row["index"], "id": item["id"], "question": item["question"],
                        "choices": item["choices"], "answer": item["answer"], **item["categories"]}
            assert {k: row[k] for k in expected} == expected
            assert row["correct"] == _right(model, item) == (row["picked"] == item["answer"])
            assert row["reply"] == item["choices"][row["picked"]]

        # overall and per category, counted here by hand
        right = [_right(model, item) for item in items]
        assert (result["correct"], result["accuracy"]) == (sum(right), sum(right) / len(items))
        assert result["ci95"] == pytest.approx(wilson_by_hand(sum(right), len(items)), abs=1e-12)
        by_hand: dict[str, dict[str, list[bool]]] = {}
        for item, ok in zip(items, right):
            for field, value in item["categories"].items():
                by_hand.setdefault(field, {}).setdefault(value, []).append(ok)
        assert set(result["categories"]) == {"food_type", "main_region"}
        for field, values in by_hand.items():
            got = result["categories"][field]
            assert set(got) == set(values)
            for value, oks in values.items():
                assert (got[value]["n"], got[value]["correct"]) == (len(oks), sum(oks)), (field, value)
                assert got[value]["accuracy"] == sum(oks) / len(oks)
                assert got[value]["ci95"] == pytest.approx(wilson_by_hand(sum(oks), len(oks)), abs=1e-12)
        sivqa = sum(1 for i in items if i["subset"] == "sivqa")
        assert sum(v["n"] for v in result["categories"]["food_type"].values()) == sivqa < len(items)

    # fixed / broken: by hand from the two scripts
    fixed = [n for n, item in enumerate(items) if not _right("base", item) and _right("tuned", item)]
    broken = [n for n, item in enumerate(items) if _right("base", item) and not _right("tuned", item)]
    assert fixed and broken
    assert (report["fixed"], report["broken"]) == (fixed, broken)

    # the printed tables, the fixed / broken lines and the run id
    out = shown.stdout
    header = out.splitlines()[0].split()
    assert header[:5] == ["model", "backend", "n", "correct", "accuracy"] and "CI" in header
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert f"{base['correct'] / len(items):.1%}" in lines["base"]
    assert f"[{tuned['ci95'][0]:.1%}, {tuned['ci95'][1]:.1%}]" in lines["tuned"]
    seafood = tuned["categories"]["food_type"]["seafood"]
    assert re.search(rf"food_type\s+seafood\s+{seafood['n']}\s", out)
    assert f"fixed by tuned (wrong with base): {len(fixed)} - items {', '.join(map(str, fixed))}" in out
    assert f"broken by tuned (right with base): {len(broken)}" in out
    run_id = re.search(r"recorded as run (\S+)", shown.stderr).group(1)
    assert load_run(run_id).kind == "eval" and run_id != report["run_id"]


@pytest.mark.parametrize(("k", "n", "low", "high"), [
    (8, 10, 0.4902, 0.9433), (0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (1, 2, 0.0945, 0.9055),
    (45, 100, 0.3561, 0.5476),
])
def test_wilson_interval_matches_the_formula_and_published_values(k: int, n: int, low: float, high: float) -> None:
    got = evalapi.wilson(k, n)
    assert got == pytest.approx(wilson_by_hand(k, n), abs=1e-12)
    assert got == pytest.approx([low, high], abs=5e-5)  # the values tables of the Wilson interval give
    assert evalapi.wilson(0, 0) == [0.0, 1.0]


def test_an_old_val_mc_without_categories_still_evaluates(foodieqa: tuple[Path, Path], tmp_path: Path) -> None:
    folder, root = foodieqa
    items = load(folder / "val_mc.json")
    old = [{k: v for k, v in item.items() if k != "categories"} for item in items]  # as vlhub wrote it before
    (folder / "val_mc.json").write_text(json.dumps(old, ensure_ascii=False), encoding="utf-8")
    with OpenAITestServer(models=("base", "tuned"), answer=scripted(_mc_replies(folder, root))) as srv:
        proc = run_vlhub("eval", "base", "tuned", "--data", str(folder), "--base-url", srv.base_url, "--limit", "4")
        assert proc.returncode == 0, proc.stderr
        report = evalapi.load_eval(re.search(r"recorded as run (\S+)", proc.stderr).group(1))
        assert report["n"] == 4 and report["limit"] == 4 and report["categories"] == []
        assert [r["categories"] for r in report["results"]] == [{}, {}]
        assert [r["correct"] for r in report["results"]] == [sum(_right(m, i) for i in items[:4])
                                                              for m in ("base", "tuned")]
        assert set(report["results"][0]["items"][0]) == {"index", "id", "question", "choices", "answer", "reply",
                                                         "picked", "correct"}
        assert len(report["notes"]) == 1 and "carry no categories" in report["notes"][0]
        assert "vlhub data prepare ... --force" in report["notes"][0]
        assert "note: " in proc.stderr and "--force" in proc.stderr and "category" not in proc.stdout

        # preparing it again fills them
        dataapi.prepare("foodieqa", root, folder, {"subsets": "sivqa,textqa", "val_fraction": 0.5, "seed": 1},
                        force=True)
        with Conversation("base", "openai", {"base_url": srv.base_url}) as convo:
            again = evalapi.evaluate_models([convo], folder, limit=4)
    assert again["categories"] == ["food_type", "main_region"] and again["notes"] == []
    assert "fixed" not in again and "broken" not in again  # one model: nothing to compare
    assert again["results"][0]["categories"]["main_region"]


# ------------------------------------------------------------------ open-ended (CLoT)
def test_clot_is_scored_by_exact_match_and_chrf(tmp_path: Path) -> None:
    from sacrebleu.metrics import CHRF

    root = make_clot(tmp_path / "src", count=12)
    folder = tmp_path / "clot"
    with pytest.raises(BadInput, match="no validation split") as no_split:
        dataapi.prepare("clot", root, folder, {})
        evalapi.load_set(folder)
    assert "val_fraction" in no_split.value.hint
    dataapi.prepare("clot", root, folder, {"val_fraction": 0.5, "seed": 2}, force=True)
    records = load(folder / "val.json")
    assert len(records) >= 4 and not (folder / "val_mc.json").exists()

    replies: dict[tuple[str, str], dict[str, str]] = {}
    for n, record in enumerate(records):
        question = record["conversations"][0]["value"].replace("<image>\n", "")
        reference = record["conversations"][1]["value"]
        # base never knows; tuned: the reference (once with a full stop and spaces), or half of it
        tuned = reference if n % 2 == 0 else reference[: len(reference) // 2]
        tuned = f" {tuned}。" if n == 0 else tuned
        replies[(question, image_sha(root / record["image"]))] = {"base": "不知道", "tuned": tuned}
    with OpenAITestServer(models=("base", "tuned"), answer=scripted(replies)) as srv:
        proc = run_vlhub("eval", "base", "tuned", "--data", str(folder), "--base-url", srv.base_url, "--json")
        shown = run_vlhub("eval", "tuned", "--data", str(folder), "--base-url", srv.base_url)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert load(load_run(report["run_id"]).path("eval.json")) == report
    assert report["task"] == "open-ended" and report["dataset"] == "clot" and report["n"] == len(records)
    assert report["file"] == str(folder / "val.json") and report["categories"] == []
    assert report["chrf"]["signature"].startswith("nrefs:1|") and "nc:6" in report["chrf"]["signature"]

    chrf = CHRF()
    references = [r["conversations"][1]["value"] for r in records]
    base, tuned = report["results"]
    for result in (base, tuned):
        assert set(result) == MODEL_KEYS | {"chrf"} and result["categories"] == {}
        sent = [row["reply"] for row in result["items"]]
        assert [row["reference"] for row in result["items"]] == references
        assert result["chrf"] == pytest.approx(chrf.corpus_score(sent, [references]).score)
        for row in result["items"]:
            assert set(row) == {"index", "id", "question", "reference", "reply", "correct", "chrf"}
            assert row["chrf"] == pytest.approx(chrf.sentence_score(row["reply"], [row["reference"]]).score)
    exact = [n % 2 == 0 for n in range(len(records))]
    assert [row["correct"] for row in tuned["items"]] == exact and tuned["items"][0]["reply"].endswith("。")
    assert tuned["correct"] == sum(exact) and tuned["accuracy"] == sum(exact) / len(records)
    assert tuned["ci95"] == pytest.approx(wilson_by_hand(sum(exact), len(records)), abs=1e-12)
    assert (base["correct"], base["chrf"]) == (0, pytest.approx(0.0, abs=1.0))
    assert tuned["chrf"] > 50 > base["chrf"]
    assert report["fixed"] == [n for n in range(len(records)) if exact[n]] and report["broken"] == []

    assert shown.returncode == 0, shown.stderr
    header, row = shown.stdout.splitlines()[:2]
    assert header.split()[:5] == ["model", "backend", "n", "exact", "exact"] and header.split()[-1] == "chrF"
    assert row.split()[-1] == f"{tuned['chrf']:.1f}" and "fixed" not in shown.stdout
