"""Reading xtuner/mmengine logs (real lines from seed 001), checkpoints and per-rank errors."""
from __future__ import annotations

import json
from pathlib import Path

from vlhub.plugins.trainers.checkpoints import last_complete, list_checkpoints
from vlhub.plugins.trainers.run_files import LOG, RANKS, WORK, outcome, rank_errors
from vlhub.plugins.trainers.xtuner_log import parse_file, parse_iter

# Copied from seeds/001 (an `xtuner train ... --deepspeed deepspeed_zero2` console), one long sample shortened.
SEED_LOG = """\
06/13 19:40:55 - mmengine - INFO - Iter(train) [100/768]  lr: 1.9491e-04  eta: 0:03:38  time: 0.3184  data_time: 0.0065  memory: 5661  loss: 0.0544
06/13 19:40:55 - mmengine - INFO - after_train_iter in EvaluateChatHook.
06/13 19:41:34 - mmengine - INFO - Sample output:
<s><|im_start|>user
请你介绍一下你自己<|im_end|>
<|im_start|>assistant
我是小菜鸡的小助手小菜鸡的小助手小菜鸡的小

06/13 19:41:34 - mmengine - INFO - Sample output:
<s><|im_start|>user
你是谁<|im_end|>
<|im_start|>assistant
我是小菜鸡的小助手<|im_end|>

06/13 19:41:35 - mmengine - INFO - Saving checkpoint at 100 iterations
[2024-06-13 19:41:40,075] [INFO] [torch_checkpoint_engine.py:33:commit] [Torch] Checkpoint iter_100.pth is ready now!
06/13 19:41:43 - mmengine - INFO - Iter(train) [110/768]  lr: 1.9350e-04  eta: 0:08:04  time: 4.8321  data_time: 4.5121  memory: 5661  loss: 0.0584
06/13 19:41:46 - mmengine - INFO - Iter(train) [120/768]  lr: 1.9192e-04  eta: 0:07:34  time: 0.3171  data_time: 0.0063  memory: 5661  loss: 0.0415
"""


def test_iter_line_becomes_a_metrics_record() -> None:
    line = SEED_LOG.splitlines()[0]
    assert parse_iter(line) == {"iter": 100, "total": 768, "lr": 1.9491e-04, "eta": "0:03:38", "time": 0.3184,
                                "data_time": 0.0065, "memory": 5661, "loss": 0.0544, "logged": "06/13 19:40:55"}
    assert parse_iter("[default0]:" + line)["loss"] == 0.0544  # torchrun --tee prefix
    assert parse_iter("06/13 19:41:35 - mmengine - INFO - Saving checkpoint at 100 iterations") is None


def test_whole_log_metrics_samples_saves(tmp_path: Path) -> None:
    (tmp_path / "x.log").write_text(SEED_LOG, encoding="utf-8")
    parser = parse_file(tmp_path / "x.log")
    metrics, samples = parser.take()
    assert [m["iter"] for m in metrics] == [100, 110, 120]
    assert [m["loss"] for m in metrics] == [0.0544, 0.0584, 0.0415]
    assert len(samples) == 2 and all(s["iter"] == 100 for s in samples)
    assert samples[1]["text"] == "<s><|im_start|>user\n你是谁<|im_end|>\n<|im_start|>assistant\n我是小菜鸡的小助手<|im_end|>"
    assert parser.summary() == {"iteration": 120, "total": 768, "saves": [100], "error": None}
    assert not parser.finished


def test_incremental_feeding_matches_whole_file(tmp_path: Path) -> None:
    from vlhub.plugins.trainers.xtuner_log import LogParser

    parser = LogParser()
    lines = SEED_LOG.splitlines(keepends=True)
    got_metrics, got_samples = [], []
    for start in range(0, len(lines), 3):
        parser.feed(lines[start:start + 3])
        metrics, samples = parser.take()
        got_metrics += metrics
        got_samples += samples
    parser.flush()
    got_samples += parser.take()[1]
    (tmp_path / "x.log").write_text(SEED_LOG, encoding="utf-8")
    whole = parse_file(tmp_path / "x.log").take()
    assert (got_metrics, got_samples) == whole


def _deepspeed_checkpoint(work: Path, step: int, ranks: int = 1) -> Path:
    folder = work / f"iter_{step}.pth"
    folder.mkdir(parents=True)
    (folder / "mp_rank_00_model_states.pt").write_bytes(b"m" * 10)
    for rank in range(ranks):
        (folder / f"bf16_zero_pp_rank_{rank}_mp_rank_00_optim_states.pt").write_bytes(b"o" * 5)
    return folder


def test_checkpoints_files_and_deepspeed_folders(tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work).mkdir()
    (work / "iter_50.pth").write_bytes(b"x" * 7)                 # plain torch file (no DeepSpeed)
    _deepspeed_checkpoint(work, 100, ranks=2)
    (work / "iter_150.pth").mkdir()                               # a save cut short: no model states
    (work / "last_checkpoint").write_text(str(work / "iter_100.pth"))
    found = {c.step: c for c in list_checkpoints(work)}
    assert sorted(found) == [50, 100, 150]
    assert (found[50].kind, found[50].complete, found[50].size) == ("file", True, 7)
    assert (found[100].kind, found[100].complete, found[100].size) == ("deepspeed", True, 20)
    assert not found[150].complete
    assert last_complete(work).step == 100
    _deepspeed_checkpoint(work, 200)                             # written, but not yet recorded by mmengine
    assert last_complete(work).step == 100


def test_outcome_finished_failed_stopped(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _deepspeed_checkpoint(run / WORK, 4)
    (run / WORK / "last_checkpoint").write_text(str(run / WORK / "iter_4.pth"))
    head = "06/13 19:41:4{i} - mmengine - INFO - Iter(train) [{i}/4]  lr: 1.0e-04  eta: 0:00:01  time: 0.3  loss: 1.{i}\n"
    lines = "".join(head.format(i=i) for i in range(1, 5))
    (run / LOG).write_text(lines + "06/13 19:41:49 - mmengine - INFO - Saving checkpoint at 4 iterations\n")
    assert outcome(run, stopping=False)["status"] == "finished"
    assert outcome(run, stopping=True)["status"] == "stopped"

    crash = ("Traceback (most recent call last):\n  File \"train.py\", line 1, in <module>\n"
             "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n")
    (run / LOG).write_text(lines + crash)
    failed = outcome(run, stopping=False)
    assert failed["status"] == "failed"
    assert failed["error"] == "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert failed["log_tail"][-1].startswith("torch.OutOfMemoryError")
    (run / LOG).write_text(lines)  # the process vanished without a word
    assert "without saving its final checkpoint" in outcome(run, stopping=False)["error"]


def test_errors_of_every_rank(tmp_path: Path) -> None:
    attempt = tmp_path / RANKS / "none_abc123" / "attempt_0"
    for rank in (0, 1):
        (attempt / str(rank)).mkdir(parents=True)
        (attempt / str(rank) / "stdout.log").write_text("")
    (attempt / "0" / "stderr.log").write_text("")
    (attempt / "1" / "stderr.log").write_text("Traceback (most recent call last):\n"
                                               "RuntimeError: NCCL error in: init.cpp:42, unhandled system error\n")
    assert rank_errors(tmp_path) == ["rank 1: RuntimeError: NCCL error in: init.cpp:42, unhandled system error"]
    (attempt / "1" / "error.json").write_text(json.dumps(
        {"message": {"message": "ValueError: bad batch", "extraInfo": {"timestamp": "1"}}}))
    assert rank_errors(tmp_path) == ["rank 1: ValueError: bad batch"]
