"""The ``swift`` trainer (ms-swift 4.x in the swift stage env) with the tiny Qwen2 / Qwen3 InternVL models.

Real processes throughout: ``vlhub train --trainer swift`` plans in the swift env (ms-swift's own template
encodes every record), a real LoRA run trains a few steps on the CPU, is stopped and resumed through the
run folder, and ``vlhub convert`` merges it with ms-swift's export into a folder the transformers chat
backend loads.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from conftest import run_vlhub
from fixtures.datasets import make_foodieqa
from vlhub.core import data, provenance, stage
from vlhub.core.chat import Conversation
from vlhub.core.runs import load_run
from vlhub.core.types import GenerationSettings
from vlhub.plugins.devtools.tiny_model import make_tiny_model
from vlhub.plugins.trainers import swift_data, swift_models
from vlhub.plugins.trainers.run_files import read_metrics


def swift_python() -> Path:
    """The cached swift stage environment's Python; a clear failure (never a skip) when absent."""
    python = stage.python_for("swift")
    if python is None:
        pytest.fail("the swift stage environment is missing: run `make test` (scripts/setup.sh --test creates it), "
                    "or `.venv/bin/vlhub env create swift`")
    return python


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("swift-data")
    data.prepare("foodieqa", make_foodieqa(root / "src"), root / "prepared")
    return root / "prepared"


def _wait(predicate, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")


@pytest.mark.parametrize("llm, hf, model_type, template", [
    ("qwen2", False, "internvl_chat", "internvl2_5"), ("qwen3", False, "internvl_chat", "internvl3_5"),
    ("phi3", False, "internvl_chat", "internvl2_phi3"), ("qwen2", True, "internvl", "internvl_hf"),
])
def test_models_map_to_ms_swift_types_and_templates(tmp_path: Path, llm: str, hf: bool, model_type: str,
                                                    template: str) -> None:
    model = make_tiny_model(tmp_path / "tiny", llm=llm, hf=hf)
    found = swift_models.identify(model)
    assert (found.model_type, found.template, found.native) == (model_type, template, hf)
    assert found.image_size == 224 and found.tile_tokens == 64
    config = json.loads((model / "config.json").read_text())
    config["template"] = "Hermes-2"
    (model / "config.json").write_text(json.dumps(config))
    assert not swift_models.accepts(model) or hf
    if not hf:
        with pytest.raises(Exception, match="ms-swift has no InternVL template for template='Hermes-2'"):
            swift_models.identify(model)


def test_prepared_records_become_messages_with_absolute_images(prepared: Path, tmp_path: Path) -> None:
    records = json.loads((prepared / "train.json").read_text(encoding="utf-8"))
    root = Path(json.loads((prepared / "prepared.json").read_text())["image_root"])
    records[0]["conversations"].insert(0, {"from": "system", "value": "You are a cook."})
    records.append({"image": records[1]["image"], "conversations": [{"from": "human", "value": "<image>\nHi"}]})
    done = swift_data.convert_records(records, root, tmp_path / "train.jsonl")
    lines = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert done.kept == len(records) - 1 == len(lines) and done.system_prompts == 1
    assert done.problems == [{"index": len(records) - 1, "field": "conversations",
                              "reason": "no assistant (gpt) turn to train on", "kind": "record"}]
    first = lines[0]
    assert [m["role"] for m in first["messages"]] == ["system", "user", "assistant"]
    assert first["messages"][1]["content"] == records[0]["conversations"][1]["value"]
    assert first["images"] == [str(root / records[0]["image"])] and Path(first["images"][0]).is_file()


def test_xtuner_refuses_a_qwen_model_naming_the_swift_trainer(prepared: Path, tmp_path: Path) -> None:
    model = make_tiny_model(tmp_path / "tiny", llm="qwen2")
    proc = run_vlhub("train", "--model", str(model), "--data", str(prepared), "--dry-run")
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "its LLM is Qwen2ForCausalLM" in lines[0] and "--trainer swift" in lines[0]
    help_text = run_vlhub("train", "--help", check=True).stdout
    assert "swift: ms-swift" in " ".join(help_text.split()) and "InternVL3.5 (Qwen3)" in " ".join(help_text.split())


@pytest.mark.parametrize("llm, template, system", [
    ("qwen2", "internvl2_5", "你是书生·万象"), ("qwen3", "internvl3_5", "你是书生·万象"),
])
def test_dry_run_encodes_every_record_with_ms_swift(prepared: Path, tmp_path: Path, llm: str, template: str,
                                                     system: str) -> None:
    python = swift_python()
    model = make_tiny_model(tmp_path / "tiny", llm=llm)
    proc = run_vlhub("train", "--trainer", "swift", "--model", str(model), "--data", str(prepared),
                     "--batch-size", "2", "--grad-accum", "2", "--max-length", "2048", "--dry-run", "--json",
                     timeout=600)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    records = json.loads((prepared / "train.json").read_text(encoding="utf-8"))
    run_dir = Path(plan["run_dir"])
    assert plan["command"][:3] == [str(python), "-m", "swift.cli.sft"] and plan["status"] == "planned"
    args = json.loads(Path(plan["config"]).read_text(encoding="utf-8"))
    assert plan["config"] == str(run_dir / "swift_args.json")
    assert (args["model_type"], args["template"], args["tuner_type"]) == ("internvl_chat", template, "lora")
    assert args["system"].startswith(system) and args["output_dir"] == str(run_dir / "work")
    assert plan["env"]["INPUT_SIZE"] == "224" and plan["env"]["MAX_NUM"] == "6"
    ds = plan["dataset"]
    assert ds["samples"] == len(records) and ds["problem_count"] == 0 and ds["over_max_length"] == 0
    assert 64 < ds["tokens"]["min"] <= ds["tokens"]["max"] < 2048 and ds["trained_tokens_min"] > 0
    assert all(n >= 64 for n in ds["image_tokens"])  # one tile at least: 64 <IMG_CONTEXT> per 224px tile
    assert ds["prompt"].startswith(f"<|im_start|>system\n{system}") and "<|im_start|>assistant\n" in ds["prompt"]
    assert ds["iterations"] == -(-len(records) // 2) // 2
    assert len((run_dir / "data" / "train.jsonl").read_text(encoding="utf-8").splitlines()) == len(records)


def test_bad_settings_are_one_line_naming_the_flag(prepared: Path, tmp_path: Path) -> None:
    model = make_tiny_model(tmp_path / "tiny", llm="qwen2")
    for args, words in ((["--method", "qlora"], "--method 'qlora' is not one of lora, full"),
                        (["--batch-size", "8", "--grad-accum", "4"], "= 32 samples per optimizer step"),
                        (["--freeze-llm"], "--freeze-llm with --freeze-vit leaves LoRA nothing to adapt")):
        proc = run_vlhub("train", "--trainer", "swift", "--model", str(model), "--data", str(prepared), "--dry-run",
                         *args)
        assert proc.returncode == 2 and words in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, \
            proc.stderr


def test_tiny_lora_run_stops_resumes_and_merges_into_a_folder_chat_loads(prepared: Path, tmp_path: Path) -> None:
    swift_python()
    model = make_tiny_model(tmp_path / "tiny", llm="qwen2")
    proc = run_vlhub("train", "--trainer", "swift", "--model", str(model), "--data", str(prepared),
                     "--deepspeed", "none", "--batch-size", "1", "--grad-accum", "1", "--max-iters", "8",
                     "--save-steps", "2", "--save-limit", "-1", "--log-interval", "1", "--lr", "1e-3",
                     "--lora-r", "8", "--lora-alpha", "16", "--workers", "0", "--max-length", "2048", "--json",
                     timeout=600)
    assert proc.returncode == 0, proc.stderr
    run_id = json.loads(proc.stdout)["run_id"]
    run_dir = load_run(run_id).dir
    work = run_dir / "work"
    _wait(lambda: (work / "checkpoint-2" / "trainer_state.json").is_file()
          or load_run(run_id).status not in ("running", "planned"), 400, "the first checkpoint")
    assert load_run(run_id).status == "running", load_run(run_id).data.get("error")
    stopped = json.loads(run_vlhub("run", "stop", run_id, "--json", check=True).stdout)
    assert stopped["status"] == "stopped" and 2 in stopped["checkpoints"]
    before = read_metrics(run_dir)
    assert before and before[0]["iter"] == 1 and before[0]["total"] == 8 and before[0]["loss"] > 0

    resumed = json.loads(run_vlhub("train", "--resume", run_id, "--json", check=True).stdout)
    assert resumed["resumed_from"].startswith(str(work / "checkpoint-"))
    _wait(lambda: load_run(run_id).status not in ("running", "planned", "stopping"), 400, "the resumed run to end")
    run = load_run(run_id)
    assert run.status == "finished", run.data.get("error")
    metrics = read_metrics(run_dir)
    assert [m["iter"] for m in metrics] == list(range(1, 9)) and all(m["loss"] > 0 and "lr" in m for m in metrics)
    assert run.data["progress"]["iter"] == 8 and (work / "checkpoint-8" / "adapter_model.safetensors").is_file()

    out = tmp_path / "merged"
    proc = run_vlhub("convert", run_id, "--out", str(out), "--json", timeout=600)
    assert proc.returncode == 0, proc.stderr
    record = provenance.read(out)
    assert record.converter == "swift-merge" and record.raw["checkpoint"]["step"] == 8
    weights = record.raw["verified"]["weights"]["llm"]
    assert weights["ok"] and weights["checked"] and all(r["max_delta"] > 0 for r in weights["checked"])
    assert not any(out.glob("optimizer.pt")) and (out / "modeling_internvl_chat.py").is_file()
    tokenizer_config = json.loads((out / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert "<|im_start|>" in tokenizer_config["chat_template"]
    with Conversation(str(out), "transformers", settings=GenerationSettings(temperature=0.0, max_new_tokens=4)) as chat:
        answer = chat.answer("What dish is this?", [Path(json.loads(
            (run_dir / "data" / "train.jsonl").read_text(encoding="utf-8").splitlines()[0])["images"][0])])
    assert isinstance(answer, str) and chat.session.last["images"] == 1


def test_train_page_offers_the_trainers_that_accept_the_model(tmp_path: Path) -> None:
    from streamlit.testing.v1 import AppTest

    from conftest import ROOT

    qwen, phi3 = make_tiny_model(tmp_path / "qwen", llm="qwen2"), make_tiny_model(tmp_path / "phi3", llm="phi3")
    at = AppTest.from_file(str(ROOT / "streamlit_app" / "views" / "train.py"), default_timeout=60)
    at.session_state["lang"] = "en"
    at.run()
    assert list(at.selectbox(key="train.trainer").options) == ["xtuner", "swift"]  # no model yet: every trainer
    at.text_input(key="train.model").set_value(str(qwen)).run()
    assert list(at.selectbox(key="train.trainer").options) == ["swift"]
    assert at.selectbox(key="train.trainer").value == "swift" and not at.exception
    at.text_input(key="train.model").set_value(str(phi3)).run()
    assert list(at.selectbox(key="train.trainer").options) == ["xtuner", "swift"]
