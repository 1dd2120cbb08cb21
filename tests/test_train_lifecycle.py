"""A training run's life with real processes: start detached, survive the launcher, stop, resume, finish.

``xtuner train`` cannot train on a CPU, so the run's command is replaced through the
documented ``launch_command`` setting by a small script that writes what xtuner writes
(mmengine log lines, sample outputs, DeepSpeed ``iter_N.pth/`` folders, ``last_checkpoint``).
Everything else is the real thing: planning in the train stage env, the detached
supervisor, ``vlhub runs`` / ``run show`` / ``run stop`` / ``train --resume`` as subprocesses.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil

from conftest import run_vlhub, train_python
from fixtures.fake_trainer import FAKE_XTUNER, TOTAL, show_run as _show, wait_for as _wait
from fixtures.datasets import make_foodieqa
from vlhub.core import data, runs
from vlhub.core.runs import load_run
from vlhub.plugins.devtools.tiny_model import make_tiny_model
from vlhub.plugins.trainers.run_files import read_metrics, read_samples

LAUNCHER = """
import json, sys, time
from pathlib import Path
from vlhub.core import train
run, plan = train.plan(Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3]))
run = train.launch(plan)
print(run.id, flush=True)
time.sleep(600)
"""


def test_detached_run_stop_resume_finish(tmp_path: Path) -> None:
    train_python()
    model = make_tiny_model(tmp_path / "tiny")
    data.prepare("foodieqa", make_foodieqa(tmp_path / "src"), tmp_path / "prepared")
    fake = tmp_path / "fake_xtuner.py"
    fake.write_text(FAKE_XTUNER)
    options = {"batch_size": 1, "grad_accum": 1, "save_steps": 2,
               "launch_command": f"{sys.executable} {fake} {{config}} {{work_dir}}"}

    # A launcher (think: the Streamlit server) plans and starts the run, then dies with its process group.
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(model), str(tmp_path / "prepared"),
                                 json.dumps(options)], stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert launcher.stdout is not None
    run_id = launcher.stdout.readline().strip()
    assert run_id, "the launcher printed no run id"
    run = load_run(run_id)
    assert run.data["plan"]["command"][:2] == [sys.executable, str(fake)]
    _wait(lambda: any(m["iter"] >= 3 for m in read_metrics(run.dir)), 30, "iteration 3")
    os.killpg(launcher.pid, signal.SIGKILL)
    launcher.wait()

    rows = json.loads(run_vlhub("runs", "--json", check=True).stdout)
    assert [(r["id"], r["status"]) for r in rows] == [(run_id, "running")]
    shown = _show(run_id)
    supervisor = psutil.Process(shown["pid"])
    trainer = psutil.Process(shown["train_pid"])
    assert supervisor.is_running() and trainer.is_running()
    # both are recorded with start time and command line, which prove them to be the run's
    for prefix in ("pid", "train_pid"):
        assert shown[f"{prefix}_cmdline"].startswith("sha256:") and shown[f"{prefix}_started"]
        assert runs.check_process(shown, prefix).state == runs.OWNED
    assert runs.check_process(shown, "train_pid").process.cmdline()[:2] == [sys.executable, str(fake)]
    assert os.getsid(supervisor.pid) != os.getsid(os.getpid())  # its own session: no SIGHUP from a terminal

    stopped = json.loads(run_vlhub("run", "stop", run_id, "--json", check=True).stdout)
    assert stopped["status"] == "stopped"
    assert stopped["checkpoints"] and max(stopped["checkpoints"]) < TOTAL
    assert not supervisor.is_running() and not trainer.is_running()
    assert _show(run_id)["status"] == "stopped"
    last = max(stopped["checkpoints"])

    resumed = json.loads(run_vlhub("train", "--resume", run_id, "--json", check=True).stdout)
    assert resumed["status"] == "running"
    assert resumed["resumed_from"].endswith(f"iter_{last}.pth")
    # Even the supervisor may die (OOM killer, kill -9): the training goes on and is still followed.
    _wait(lambda: load_run(run_id).data.get("train_pid") not in (None, shown["train_pid"]), 10, "the new trainer")
    os.kill(load_run(run_id).data["pid"], signal.SIGKILL)
    rows = json.loads(run_vlhub("runs", "--json", check=True).stdout)
    assert [(r["id"], r["status"]) for r in rows] == [(run_id, "running")]
    _wait(lambda: _show(run_id)["status"] != "running", 30, "the resumed run to end")  # judged from the log
    final = _show(run_id)
    assert final["status"] == "finished", final.get("error")
    assert final["plan"]["command"][-2:] == ["--resume", str(run.dir / "work" / f"iter_{last}.pth")]
    assert final["checkpoints"][-1] == TOTAL
    metrics = read_metrics(run.dir)
    assert [m["iter"] for m in metrics] == list(range(1, TOTAL + 1))
    assert metrics[-1]["loss"] == 6 - TOTAL / 10 and metrics[-1]["total"] == TOTAL
    assert read_samples(run.dir)[0] == {"iter": 2, "text": "<image>\nDescribe this image.\nA red bowl."}
    assert final["progress"]["iteration"] == TOTAL


def test_stop_and_resume_refuse_what_cannot_be_done(tmp_path: Path) -> None:
    train_python()
    model = make_tiny_model(tmp_path / "tiny")
    data.prepare("foodieqa", make_foodieqa(tmp_path / "src"), tmp_path / "prepared")
    planned = json.loads(run_vlhub("train", "--model", str(model), "--data", str(tmp_path / "prepared"),
                                   "--batch-size", "1", "--grad-accum", "1", "--dry-run", "--json",
                                   check=True).stdout)
    stop = run_vlhub("run", "stop", planned["run_id"])
    assert stop.returncode == 2 and "not running" in stop.stderr and len(stop.stderr.strip().splitlines()) == 1
    resume = run_vlhub("train", "--resume", planned["run_id"])
    assert resume.returncode == 2 and "no complete checkpoint" in resume.stderr
    if planned["dataset"]["environment"]["cuda_devices"]:
        return
    # Without a GPU a real launch is refused before anything starts.
    launch = run_vlhub("train", "--model", str(model), "--data", str(tmp_path / "prepared"),
                       "--batch-size", "1", "--grad-accum", "1")
    assert launch.returncode == 2 and "--gpus 1" in launch.stderr and "cannot train on the CPU" in launch.stderr
