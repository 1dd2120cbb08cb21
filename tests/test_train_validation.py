"""Validation during training, the best checkpoint and tracking.

The slow test trains for real on the CPU: ``xtuner train`` itself (its own entry point,
``xtuner.tools.train``) on vlhub's generated config, with DeepSpeed ZeRO-2 on DeepSpeed's CPU
accelerator (gloo) in place of the GPU. Only what a CPU forces is changed, through the documented
``--launch-command``: a DeepSpeed JSON with bf16 set (xtuner's ``auto`` asks CUDA) and gloo for
nccl. The validation loop, the metric, the hooks, TensorBoard, checkpoint saving and pruning are
the run's own. The fast tests check the default budget, the log records and the tracker choice.
"""
from __future__ import annotations

import json
import math
import socket
import subprocess
from pathlib import Path

import pytest

from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df
from streamlit.testing.v1 import AppTest

from conftest import ROOT, SHARED_ENVS, run_vlhub, train_python
from fixtures.datasets import make_foodieqa
from fixtures.fake_trainer import wait_for
from vlhub.core import convert, data, provenance, tracking, train_metrics, train_validation
from vlhub.core.errors import BadInput
from vlhub.core.runs import load_run
from vlhub.plugins.devtools.tiny_model import make_tiny_model
from vlhub.plugins.trainers import inputs, settings, validation, xtuner_config, xtuner_log
from vlhub.streamlit_app.text import catalogue

#: xtuner/configs/deepspeed/deepspeed_zero2.json with bf16 chosen (xtuner's "auto" asks torch.cpu, which cannot tell)
DS_CPU = {"gradient_accumulation_steps": "auto", "train_micro_batch_size_per_gpu": "auto",
          "gradient_clipping": "auto", "zero_allow_untested_optimizer": True, "zero_force_ds_cpu_optimizer": False,
          "zero_optimization": {"stage": 2, "overlap_comm": False}, "fp16": {"enabled": False},
          "bf16": {"enabled": True}}
SCALARS = """
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1]); acc.Reload()
print(json.dumps({tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}))
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------ the default budget
def test_default_validation_costs_at_most_a_tenth_and_lines_up_with_checkpoints() -> None:
    # 2000 iterations of 4 samples, checkpoints every 500, 300 val records, 80 items of 4 choices:
    # 100 records + 80 items x 4 = 420 passes a round; 10 % of 3 x 4 x 2000 = 2400 passes allow 5 rounds,
    # so every 500 (4 rounds) -- 250 would be 8 rounds, over the share
    chosen = train_validation.plan(2000, 4, 1, 500, 300, 80, 4.0)
    assert (chosen.every, chosen.items, chosen.mc_items, chosen.rounds) == (500, 100, 80, 4)
    assert chosen.share == round(4 * 420 / (3 * 4 * 2000), 4) <= train_validation.SHARE
    # eight GPUs share the items: the same budget validates 8x as often, on a divisor of --save-steps
    assert train_validation.plan(2000, 4, 8, 500, 300, 80, 4.0).every == 100
    # a run too short for even one item within 10 % validates not at all, and says how to force it
    off = train_validation.plan(6, 1, 1, 2, 2, 2, 4.0)
    assert not off.enabled and "--val-every" in off.note
    # given values are kept; the note warns when they cost more than the share
    given = train_validation.plan(6, 1, 1, 2, 2, 2, 4.0, every=2, items=2)
    assert (given.every, given.items, given.mc_items, given.rounds) == (2, 2, 2, 3)
    assert given.share == round(3 * (2 + 2 * 4) / (3 * 6), 4) and "over the default" in given.note
    with pytest.raises(BadInput) as refused:
        train_validation.plan(2000, 4, 1, 500, 300, 80, 4.0, every=300)
    assert "--val-every 300" in str(refused.value) and "--save-steps 500" in str(refused.value)
    assert not train_validation.plan(2000, 4, 1, 500, 0, 0, 0.0).enabled   # no validation split


def test_validation_log_lines_become_records_and_never_training_losses() -> None:
    lines = ["12/07 04:19:36 - mmengine - INFO - Iter(train) [2/6]  lr: 1.0000e-07  eta: 0:00:20  time: 4.5  "
             "data_time: 0.01  memory: 0  loss: 6.8125",
             "12/07 04:19:53 - mmengine - INFO - Iter(val) [4/4]    val_loss: 6.7812  val_acc: 0.0000  time: 3.8",
             "12/07 04:19:53 - mmengine - INFO - Validation at iteration 2: val_loss: 6.78125  val_acc: 0.5  "
             "val_items: 2  val_mc_items: 2",
             "[default0]:12/07 04:21:00 - mmengine - INFO - Validation at iteration 4: val_loss: 6.5  val_items: 2  "
             "val_mc_items: 0"]
    parser = xtuner_log.LogParser()
    parser.feed(lines)
    metrics, _ = parser.take()
    assert metrics[-1]["loss"] == 6.8125          # the training record comes last (the supervisor's progress)
    train, val = train_metrics.split_records(metrics)
    assert [m["iter"] for m in train] == [2] and parser.iteration == 2
    assert val == [{"iter": 2, "split": "val", "val_loss": 6.78125, "val_acc": 0.5, "val_items": 2,
                    "val_mc_items": 2, "logged": "12/07 04:19:53"},
                   {"iter": 4, "split": "val", "val_loss": 6.5, "val_items": 2, "val_mc_items": 0,
                    "logged": "12/07 04:21:00"}]
    assert all("loss" not in r for r in val)


# ------------------------------------------------------------------ the validation set, in the train env
MC_CHECK = r"""
import copy, json, sys
import torch
sys.path.insert(0, sys.argv[4])
from train_internvl import IGNORE_INDEX, VlhubValDataset, choice_scores, val_collate_fn
from xtuner.utils import PROMPT_TEMPLATE
model, prepared, image_root = sys.argv[1:4]
ds = VlhubValDataset(model, copy.deepcopy(PROMPT_TEMPLATE.phi3_chat), prepared + "/val.json", image_root,
                     prepared + "/val_mc.json", items=1, mc_items=2, max_length=4096)
items = []
for index in range(ds.loss_count, len(ds)):
    sample = ds[index]
    batch = val_collate_fn([sample])["data"]
    scored = [ds.tokenizer.decode([t for t in c["labels"] if t != IGNORE_INDEX]) for c in sample["choices"]]
    items.append({"answer": sample["answer"], "scored": scored, "kind": batch["vlhub_val"],
                  "batch": list(batch["input_ids"].shape), "pixels": list(batch["pixel_values"].shape)})
logp = torch.log_softmax(torch.randn(2, 4, 7, generator=torch.Generator().manual_seed(0)), -1)
labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 2, 3], [IGNORE_INDEX, 5, IGNORE_INDEX, IGNORE_INDEX]])
by_hand = [float(logp[0, 1, 2] + logp[0, 2, 3]), float(logp[1, 0, 5])]
print(json.dumps({"loss_items": ds.loss_count, "size": len(ds), "items": items,
                  "scores": choice_scores(logp, labels).tolist(), "by_hand": by_hand,
                  "loss_kind": val_collate_fn([ds[0]])["data"]["vlhub_val"]}))
"""


def test_validation_set_scores_each_choice_on_its_own_tokens(tmp_path: Path) -> None:
    python = train_python()
    model = make_tiny_model(tmp_path / "tiny")
    prepared = data.prepare("foodieqa", make_foodieqa(tmp_path / "src"), tmp_path / "prepared")
    out = subprocess.run([str(python), "-c", MC_CHECK, str(model), str(tmp_path / "prepared"),
                          str(prepared.image_root), str(ROOT / "plugins" / "workers")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["loss_items"] == 1 and found["size"] == 3 and found["loss_kind"] == {"kind": "loss"}
    mc = json.loads((tmp_path / "prepared" / "val_mc.json").read_text(encoding="utf-8"))
    for item, got in zip(mc, found["items"]):
        # FoodieQA items carry the training question as their prompt: each choice's own text is what is scored
        assert [text.strip() for text in got["scored"]] == item["choices"]
        assert got["kind"] == {"kind": "mc", "answer": item["answer"]}
        assert got["batch"][0] == got["pixels"][0] == len(item["choices"])   # one sequence per choice
    assert found["scores"] == pytest.approx(found["by_hand"], rel=1e-5)


# ------------------------------------------------------------------ trackers
def test_trackers_default_to_tensorboard_and_add_logged_in_services(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    installed = {"tensorboard": True, "wandb": True, "swanlab": False}
    for name in ("WANDB_API_KEY", "SWANLAB_API_KEY", "NETRC", "WANDB_BASE_URL", "SWANLAB_ROOT", "SWANLAB_SAVE_DIR"):
        monkeypatch.delenv(name, raising=False)
    assert tracking.choose([], installed) == ["tensorboard"]          # W&B installed but no key
    netrc = Path.home() / ".netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password abcdef0123456789\n")
    netrc.chmod(0o600)
    assert tracking.choose([], installed) == ["tensorboard", "wandb"]   # `wandb login`'s store
    assert tracking.choose(["none"], installed) == []
    monkeypatch.setenv("SWANLAB_API_KEY", "sw-abcdef0123456789")
    with pytest.raises(BadInput) as missing:                              # asked for, not installed
        tracking.choose(["swanlab"], installed, python="/env/bin/python")
    assert "swanlab" in str(missing.value) and "/env/bin/python -m pip install swanlab" in str(missing.value)
    netrc.unlink()
    with pytest.raises(BadInput) as no_key:
        tracking.choose(["wandb"], installed)
    assert "WANDB_API_KEY" in str(no_key.value) and "wandb login" in str(no_key.value)
    with pytest.raises(BadInput):
        tracking.choose(["mlflow"], installed)
    store = tmp_path / "swan"
    store.mkdir()
    (store / ".netrc").write_text("machine api.swanlab.cn\n  login web\n  password swan0123456789\n")
    monkeypatch.setenv("SWANLAB_ROOT", str(store))
    assert tracking.swanlab_login_store() == "swan0123456789"


def test_config_sends_numbers_to_each_chosen_tracker_and_validates_only_when_planned(tmp_path: Path) -> None:
    model = inputs.check_model(make_tiny_model(tmp_path / "tiny"))
    data.prepare("foodieqa", make_foodieqa(tmp_path / "src"), tmp_path / "prepared")
    prepared = inputs.check_data(tmp_path / "prepared")
    s = settings.parse({"batch_size": 1, "grad_accum": 1, "save_steps": 2, "max_iters": 6, "val_every": 2,
                        "save_limit": 1})
    found = validation.find(tmp_path / "prepared")
    assert (found.records, found.mc_items, found.mean_choices) == (2, 2, 4.0)
    chosen = validation.plan(s, found, 6)
    run_dir = tmp_path / "runs" / "20261207-000000-train-abcd"
    text = xtuner_config.render(s, model, prepared, model.template, run_dir, chosen, found,
                                ["tensorboard", "wandb", "swanlab"])
    assert f"dict(type=TensorboardVisBackend, save_dir='{run_dir / 'tensorboard'}')" in text
    assert "dict(type=WandbVisBackend, init_kwargs=dict(project='vlhub', name='20261207-000000-train-abcd'))" in text
    assert "from swanlab.integration.mmengine import SwanlabVisBackend" in text
    assert "val_interval=val_interval" in text and "val_interval = 2" in text and "val_mc_items = 2" in text
    assert f"marker='{run_dir / 'best_checkpoint.json'}'" in text and "max_keep_ckpts=-1" in text
    quiet = xtuner_config.render(s, model, prepared, model.template, run_dir, validation.plan(
        settings.parse({"batch_size": 1, "grad_accum": 1, "val_every": 0}), found, 6), found, [])
    assert "Tensorboard" not in quiet and "val_dataloader" not in quiet and "val_interval=" not in quiet
    assert "dict(type=LocalVisBackend)" in quiet and "metric=None" in quiet   # --save-limit still applies
    with pytest.raises(BadInput) as refused:   # accuracy needs multiple-choice items
        validation.plan(settings.parse({"best_metric": "val_acc"}), validation.ValidationData(
            found.val, None, 2, 0, 0.0), 6, tmp_path / "prepared")
    assert "--best-metric val_acc" in str(refused.value) and "val_mc.json" in str(refused.value)


# ------------------------------------------------------------------ a real CPU run
@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One real 6-iteration run: validation every 2 iterations on 2 records + 2 multiple-choice items,
    a checkpoint every 2 iterations, --save-limit 1, TensorBoard."""
    python = train_python()
    root = tmp_path_factory.mktemp("valrun")
    model = make_tiny_model(root / "tiny")
    data.prepare("foodieqa", make_foodieqa(root / "src"), root / "prepared")
    ds_json = root / "ds_cpu.json"
    ds_json.write_text(json.dumps(DS_CPU))
    launch = (f"{python} -m xtuner.tools.train {{config}} --work-dir {{work_dir}} --deepspeed {ds_json} "
              "--cfg-options env_cfg.dist_cfg.backend=gloo")
    env = {"DS_ACCELERATOR": "cpu", "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
           # DeepSpeed's CPU accelerator compiles its shared-memory op once; keep it across test homes
           "TORCH_EXTENSIONS_DIR": str(SHARED_ENVS.parent / "torch_extensions"),
           "VLHUB_HOME": str(root / "home")}   # a module's run: its own vlhub home, named in every call
    started = run_vlhub("train", "--model", str(model), "--data", str(root / "prepared"), "--batch-size", "1",
                        "--grad-accum", "1", "--max-iters", "6", "--save-steps", "2", "--save-limit", "1",
                        "--val-every", "2", "--val-items", "2", "--log-interval", "1", "--lr", "1e-7",
                        "--workers", "0", "--launch-command", launch, env=env, check=True)
    run_id = started.stderr.split("started run ")[1].split()[0]
    wait_for(lambda: _show(run_id, env)["status"] not in ("running", "planned"), 900, "the CPU run to end")
    return {"run": load_run(root / "home" / "runs" / run_id), "said": started.stderr, "python": python,
            "root": root, "env": env}


def _show(run_id: str, env: dict[str, str]) -> dict:
    return json.loads(run_vlhub("run", "show", run_id, "--json", env=env, check=True).stdout)


def test_cpu_run_logs_validation_keeps_the_best_checkpoint_and_writes_tensorboard(cpu_run: dict) -> None:
    run = cpu_run["run"]
    shown = _show(run.id, cpu_run["env"])
    assert shown["status"] == "finished", (shown.get("error"), (run.dir / "train.log").read_text()[-3000:])
    assert f"tensorboard --logdir {run.dir / 'tensorboard'}" in cpu_run["said"]
    train, val = train_metrics.read_metrics(run.dir)
    assert [m["iter"] for m in train] == [1, 2, 3, 4, 5, 6]
    # validation after iterations 2, 4 and 6, on the 2 records and 2 items asked for
    assert [v["iter"] for v in val] == [2, 4, 6]
    for record in val:
        assert record["val_items"] == 2 and record["val_mc_items"] == 2
        assert math.isfinite(record["val_loss"]) and record["val_loss"] > 0
        assert record["val_acc"] in (0.0, 0.5, 1.0)
    # the best by val_loss (ties keep the earlier one); lr 1e-7 leaves the bf16 loss as it was, so it is not the last
    best_iter = min(val, key=lambda v: (v["val_loss"], v["iter"]))["iter"]
    marker = train_metrics.read_best(run.dir)
    assert marker["metric"] == "val_loss" and marker["iter"] == best_iter and best_iter != 6
    assert marker["checkpoint"] == f"work/iter_{best_iter}.pth"
    # --save-limit 1 keeps the newest checkpoint and the best one, nothing else
    on_disk = sorted(int(p.name[5:-4]) for p in (run.dir / "work").glob("iter_*.pth"))
    assert on_disk == sorted({best_iter, 6})
    log = (run.dir / "train.log").read_text()
    assert "Removed checkpoint iter_4.pth" in log or best_iter == 4
    # TensorBoard event files in the run folder, with the training loss and the validation numbers
    scalars = json.loads(subprocess.run([str(cpu_run["python"]), "-c", SCALARS, str(run.dir / "tensorboard")],
                                        capture_output=True, text=True, check=True, timeout=120).stdout)
    assert [step for step, _ in scalars["val_loss"]] == [2, 4, 6]
    assert [round(v, 4) for _, v in scalars["val_loss"]] == [round(v["val_loss"], 4) for v in val]
    assert len(scalars["loss"]) == 6 and "val_acc" in scalars


def test_convert_takes_the_best_checkpoint_by_default(cpu_run: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    run = cpu_run["run"]
    monkeypatch.setenv("VLHUB_HOME", cpu_run["env"]["VLHUB_HOME"])
    best = train_metrics.read_best(run.dir)
    assert convert.run_checkpoint(run.id, "last") == (run.id, {"chosen": "last"})
    path, why = convert.run_checkpoint(run.id, str(best["iter"]))
    assert path == run.dir / "work" / f"iter_{best['iter']}.pth" and why == {"chosen": "iter", "iter": best["iter"]}
    gone = next(i for i in (2, 4) if i != best["iter"])
    refused = run_vlhub("convert", run.id, "--out", str(cpu_run["root"] / "x"), "--checkpoint", str(gone),
                        env=cpu_run["env"])
    assert refused.returncode == 2 and f"iteration {gone}" in refused.stderr and "--checkpoint" in refused.stderr
    out = cpu_run["root"] / "converted"
    proc = run_vlhub("convert", run.id, "--out", str(out), "--no-verify", "--json", env=cpu_run["env"], timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    recorded = provenance.read(out).checkpoint
    assert recorded["step"] == best["iter"] and recorded["path"] == best["path"]
    assert recorded["chosen"] == "best" and recorded["metric"] == "val_loss" and recorded["value"] == best["value"]


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_train_page_draws_validation_beside_the_loss_and_names_the_tensorboard_folder(
        cpu_run: dict, monkeypatch: pytest.MonkeyPatch, lang: str) -> None:
    from test_pages_zh import leaks

    monkeypatch.setenv("VLHUB_HOME", cpu_run["env"]["VLHUB_HOME"])
    run, text = cpu_run["run"], catalogue(lang)
    at = AppTest.from_file(str(ROOT / "streamlit_app" / "views" / "train.py"), default_timeout=60)
    at.session_state["lang"] = lang
    at.query_params["run"] = run.id
    at.run()
    assert not at.exception, at.exception
    frames = [convert_arrow_bytes_to_pandas_df(d.data.data) for c in at.get("vega_lite_chart") for d in c.proto.datasets]
    loss = next(f for f in frames if text["train.curve"] in f.columns)
    drawn = loss[loss[text["train.curve"]] == text["train.val_loss"]]
    _, val = train_metrics.read_metrics(run.dir)
    assert list(drawn["iter"]) == [2, 4, 6]
    assert list(drawn[text["train.loss"]]) == [v["val_loss"] for v in val]
    assert set(loss[text["train.curve"]]) == {text["train.loss_raw"], text["train.loss_smoothed"], text["train.val_loss"]}
    assert any(text["train.val_acc"] in f.columns for f in frames)
    best = train_metrics.read_best(run.dir)
    assert any(f"iter_{best['iter']}.pth" in c.value for c in at.caption)
    assert any(str(run.dir / "tensorboard") in c.value for c in at.caption)
    assert f"tensorboard --logdir {run.dir / 'tensorboard'}" in [c.value for c in at.code]
    table = next(d.value for d in at.dataframe if text["train.best"] in d.value.columns)
    assert dict(zip(table[text["train.step"]], table[text["train.best"]])) == {s: s == best["iter"] for s in
                                                                            table[text["train.step"]]}
    if lang == "zh":
        assert not leaks(at, "train"), leaks(at, "train")
