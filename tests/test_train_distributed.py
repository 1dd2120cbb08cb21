"""Several GPUs as users launch them (issue 19), on the CPU: torch's own launcher with the gloo backend.

The train stage environment used here is built the way the GPU machine's is (``bench/gpu_env.sh``): a venv
without its own ``torchrun`` script that reaches torch through a ``.pth`` file. A foreign ``torchrun``
first on ``PATH`` is what xtuner 0.2.0's entry point would run there; vlhub must launch with the
environment's own Python instead, flag the foreign script in ``vlhub env check``, give every launch its
own rendezvous port, pass ``--devices`` as ``CUDA_VISIBLE_DEVICES`` and report the failed rank's error.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from conftest import ROOT, run_vlhub, train_python
from vlhub.core import stage, train
from vlhub.core.errors import BadInput
from vlhub.core.lifecycle import ACTIVE
from vlhub.core.runs import load_run, new_run
from vlhub.core.types import TrainPlan
from vlhub.plugins.trainers import distributed, launch_spec, run_files, settings

# Every rank prints what it was given, then rank 1 fails the way the test asks.
WORKER = """
import os, sys
import torch.distributed as dist
dist.init_process_group("gloo")
rank = dist.get_rank()
print(f"RANK {rank}/{dist.get_world_size()} port={os.environ['MASTER_PORT']} "
      f"cuda={os.environ.get('CUDA_VISIBLE_DEVICES')} python={sys.executable}", flush=True)
if rank == 1 and sys.argv[1] == "raise":
    raise ValueError("rank 1 cannot read batch 7")
if rank == 1 and sys.argv[1] == "kill":
    os.kill(os.getpid(), 9)
dist.barrier()
"""
# What xtuner's entry point would run from PATH: another interpreter's torchrun (it leaves a mark).
FOREIGN_TORCHRUN = ("#!{python}\nimport pathlib, sys\npathlib.Path(sys.argv[0] + '.ran').write_text('ran')\n"
                    "sys.exit(3)\n")


@pytest.fixture(scope="module")
def bare_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with no torchrun of its own that sees the train env's packages through a .pth file."""
    python = train_python()
    folder = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([str(python), "-m", "venv", "--without-pip", str(folder)], check=True, timeout=120)
    own = folder / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    shared = subprocess.run([str(python), "-c", purelib], capture_output=True, text=True, check=True).stdout.strip()
    site = subprocess.run([str(own), "-c", purelib], capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "zz_train_sites.pth").write_text(shared + "\n")
    assert not (folder / "bin" / "torchrun").exists()
    return own


@pytest.fixture
def foreign_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``torchrun`` of this test's own interpreter (no torch, no xtuner) first on PATH."""
    bin_dir = tmp_path / "foreign-bin"
    bin_dir.mkdir()
    script = bin_dir / "torchrun"
    script.write_text(FOREIGN_TORCHRUN.format(python=sys.executable))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin")
    return script


def use_env(python: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLHUB_ENVS_DIR", str(tmp_path / "envs"))
    stage.adopt("train", str(python))


# ------------------------------------------------------------------ --devices and --gpus
def test_devices_set_the_gpu_count_and_cuda_visible_devices() -> None:
    s = settings.parse({"devices": " 1 , 0 "})
    assert (s.gpus, s.devices) == (2, "1,0")  # --gpus follows --devices
    assert s.topology.devices == (1, 0) and s.topology.distributed
    env = launch_spec.environment(s, Path("/r/code"), Path("/r"))
    assert env["CUDA_VISIBLE_DEVICES"] == "1,0" and env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert settings.parse({"devices": "3"}).gpus == 1 and settings.parse({"devices": "0,1", "gpus": "2"}).gpus == 2
    assert "CUDA_VISIBLE_DEVICES" not in launch_spec.environment(settings.parse({"gpus": 2}), Path("/c"), Path("/r"))
    refused = {"0,0": "--devices 0,0: GPU 0 is named twice", "a,1": "--devices 'a,1' is not a list of GPU indices",
               "-1": "--devices '-1' is not a list", "0,": "--devices '0,' is not a list"}
    for text, message in refused.items():
        with pytest.raises(BadInput, match=message):
            settings.parse({"devices": text})
    with pytest.raises(BadInput, match=r"--gpus 3 does not match --devices 0,1 \(2 GPU\(s\)\).*use --gpus 2"):
        settings.parse({"devices": "0,1", "gpus": 3})
    with pytest.raises(BadInput, match="there is no GPU 2; the train environment sees 2 CUDA GPU"):
        distributed.check_devices(settings.parse({"devices": "0,2"}).topology, 2)


def test_a_bad_devices_flag_is_one_line_exit_2(tmp_path: Path) -> None:
    proc = run_vlhub("train", "--model", str(tmp_path), "--data", str(tmp_path), "--gpus", "2", "--devices", "0,1,2")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == ["Error: --gpus 2 does not match --devices 0,1,2 (3 GPU(s)). "
                                                "Fix: drop --gpus (it follows --devices) or use --gpus 3"]


# ------------------------------------------------------------------ the launch command
PARSE = """
import json, sys
from torch.distributed.run import get_args_parser
for argv in json.load(sys.stdin):
    a = get_args_parser().parse_args(argv[3:])
    print(json.dumps([a.nnodes, a.node_rank, a.nproc_per_node, a.master_addr, a.master_port, a.log_dir, a.tee,
                      a.training_script, a.training_script_args]))
"""


def test_several_gpus_run_xtuners_train_script_under_the_envs_own_python(tmp_path: Path) -> None:
    python = train_python()
    one = settings.parse({"gpus": 2, "deepspeed": "zero3"})
    machines = settings.parse({"gpus": 2, "nnodes": 2, "node_rank": 1, "master_addr": "10.1.2.3"})
    fixed = settings.parse({"gpus": 2, "master_port": 29611})
    argvs = [launch_spec.command(s, python, tmp_path / "config.py", tmp_path / "work", tmp_path)
             for s in (one, machines, fixed)]
    script = launch_spec.train_script(python)
    assert script.parts[-3:] == ("xtuner", "tools", "train.py") and "def main()" in script.read_text()
    for argv in argvs:
        assert argv[:3] == [str(python), "-m", "torch.distributed.run"]  # never a torchrun from PATH
    out = subprocess.run([str(python), "-c", PARSE], input=json.dumps(argvs), capture_output=True, text=True,
                         timeout=120, env=stage.clean_env())
    assert out.returncode == 0, out.stderr[-2000:]
    got = [json.loads(line) for line in out.stdout.splitlines()]
    rest = [str(tmp_path / "config.py"), "--work-dir", str(tmp_path / "work")]
    assert got[0][:3] == ["1", 0, "2"] and got[0][3] == "127.0.0.1" and got[0][4] not in (29500, None)
    assert got[0][5:] == [str(tmp_path / "ranks"), "3", str(script),
                          [*rest, "--deepspeed", "deepspeed_zero3", "--launcher", "pytorch"]]
    assert got[1][:5] == ["2", 1, "2", "10.1.2.3", 29500]  # several machines agree on torch's default port
    assert got[2][4] == 29611  # a given port is kept
    single = launch_spec.command(settings.parse({}), python, tmp_path / "config.py", tmp_path / "work", tmp_path)
    assert single == [str(python.parent / "xtuner"), "train", *rest, "--deepspeed", "deepspeed_zero2"]


def test_each_start_records_its_own_port(tmp_path: Path) -> None:
    argv = ["python", "-m", "torch.distributed.run", "--master_port=1", "script.py"]
    first, second = new_run("train"), new_run("train")
    first_argv = distributed.assign_port(first, distributed.Topology(gpus=2), argv)
    first.update(status="running")
    second_argv = distributed.assign_port(second, distributed.Topology(gpus=2), argv)
    ports = load_run(first.id).data["master_port"], load_run(second.id).data["master_port"]
    assert ports[0] != ports[1] and distributed.DEFAULT_PORT not in ports
    assert first_argv[3] == f"--master_port={ports[0]}" and second_argv[3] == f"--master_port={ports[1]}"
    given = distributed.assign_port(second, distributed.Topology(gpus=2, master_port=29611), argv)
    assert given[3] == "--master_port=29611" and load_run(second.id).data["master_port"] == 29611


# ------------------------------------------------------------------ real launches: ports, devices, failed ranks
def planned_run(python: Path, worker: Path, mode: str, options: dict) -> TrainPlan:
    """A run planned as the xtuner trainer plans one, whose ranks run ``worker`` instead of xtuner's script."""
    s = settings.parse(options)
    run = new_run("train", trainer="xtuner")
    argv = [*distributed.launcher_argv(python, s.topology, distributed.DEFAULT_PORT, run.dir / run_files.RANKS),
            str(worker), mode]
    plan = TrainPlan(run.id, run.dir, run.dir / "config.py", argv, launch_spec.environment(s, run.dir, run.dir),
                     {"environment": {"cuda_devices": 2}}, s.public())  # the GPU machine's report
    run.update(status="planned")
    return plan


def wait_ended(run_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while (data := load_run(run_id).data)["status"] in ACTIVE:
        assert time.monotonic() < deadline, f"run {run_id} still {data['status']}"
        time.sleep(0.5)
    return data


def test_concurrent_runs_get_their_own_ports_and_a_dead_rank_is_the_error(
        bare_env: Path, foreign_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_env(bare_env, tmp_path, monkeypatch)
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    killed = train.launch(planned_run(bare_env, worker, "kill", {"devices": "1,0"}))
    raised = train.launch(planned_run(bare_env, worker, "raise", {"gpus": 2}))  # while the first one runs
    ports = killed.data["master_port"], raised.data["master_port"]
    assert ports[0] != ports[1] and distributed.DEFAULT_PORT not in ports
    results = {run.id: wait_ended(run.id) for run in (killed, raised)}
    assert not Path(f"{foreign_path}.ran").exists()  # the torchrun on PATH never ran

    for run, port, cuda in ((killed, ports[0], "1,0"), (raised, ports[1], "None")):
        assert results[run.id]["plan"]["command"][7] == f"--master_port={port}"
        seen = " ".join(Path(r["stdout"]).read_text() for r in run_files.rank_logs(run.dir))
        for rank in (0, 1):  # every rank met at this run's own port, with the env's own Python
            assert f"RANK {rank}/2 port={port} cuda={cuda} python={bare_env}" in seen, seen
    failed = results[raised.id]
    assert failed["status"] == "failed"
    assert failed["error"] == "rank 1: ValueError: rank 1 cannot read batch 7"  # not torchrun's ChildFailedError
    assert failed["progress"]["error"] == failed["error"] and failed["rank_errors"][0] == failed["error"]
    assert "ChildFailedError" in (raised.dir / run_files.LOG).read_text()  # what torchrun itself said
    signalled = results[killed.id]
    assert signalled["status"] == "failed" and signalled["error"].startswith("rank 1: Signal 9 (SIGKILL)")


# ------------------------------------------------------------------ vlhub env check
def test_env_check_flags_a_torchrun_of_another_interpreter(bare_env: Path, foreign_path: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    use_env(bare_env, tmp_path, monkeypatch)
    proc = run_vlhub("env", "check", "train")
    assert proc.returncode == 0, proc.stderr
    warning = next(line.strip() for line in proc.stdout.splitlines() if line.strip().startswith("warning:"))
    assert f"torchrun on PATH ({foreign_path}) runs {sys.executable}" in warning
    assert f"Fix: vlhub launches several GPUs with `{bare_env} -m torch.distributed.run`" in warning
    assert stage.check("train").ready  # a warning, not a missing package
    doctor = run_vlhub("doctor")
    assert f"warning: torchrun on PATH ({foreign_path})" in doctor.stdout, doctor.stdout
    from streamlit.testing.v1 import AppTest  # the Environment page says it in the page's language

    at = AppTest.from_file(str(ROOT / "streamlit_app" / "views" / "environment.py"), default_timeout=60)
    at.session_state["lang"] = "zh"
    at.run()
    shown = [w.value for w in at.warning]
    assert any(f"上的 torchrun（{foreign_path}）" in text and "修复" in text for text in shown), shown

    foreign_path.unlink()
    assert stage.check("train").warnings == []  # no torchrun at all: nothing runs the wrong one
    own = bare_env.parent / "torchrun"  # the env's own script, written for another interpreter
    own.write_text(FOREIGN_TORCHRUN.format(python=sys.executable))
    own.chmod(0o755)
    try:
        assert f"torchrun on PATH ({own}) runs {sys.executable}" in stage.check("train").warnings[0]
        own.write_text(f"#!/bin/sh\n'''exec' \"{bare_env}\" \"$0\" \"$@\"\n' '''\nprint('own')\n")  # pip's form
        assert stage.check("train").warnings == []
    finally:
        own.unlink()


def test_env_check_accepts_the_envs_own_torchrun(foreign_path: Path) -> None:
    python = train_python()  # the shared train env: its bin/torchrun comes first on the launch's PATH
    assert (python.parent / "torchrun").exists()
    assert stage.check("train").warnings == []


# ------------------------------------------------------------------ the Train page's device picker
NVIDIA_SMI = ("#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0a)'\n"
              "echo 'GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-1b)'\n")


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_train_page_picks_devices(lang: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text(NVIDIA_SMI)
    (bin_dir / "nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert stage.gpus() == [(0, "NVIDIA H100 80GB HBM3"), (1, "NVIDIA H100 80GB HBM3")]
    at = AppTest.from_file(str(ROOT / "streamlit_app" / "views" / "train.py"), default_timeout=60)
    at.session_state["lang"] = lang
    at.run()
    picker = at.multiselect(key="train.devices.pick")
    assert picker.label == ("GPUs to train on" if lang == "en" else "用于训练的 GPU")
    assert picker.options == ["0: NVIDIA H100 80GB HBM3", "1: NVIDIA H100 80GB HBM3"]
    picker.set_value([1, 0]).run()
    assert not at.exception, at.exception
    assert at.text_input(key="train.opt.xtuner.devices").value == "1,0"
    assert at.text_input(key="train.opt.xtuner.devices").label == ("devices" if lang == "en" else "使用的 GPU 编号")
    assert any("--devices 1,0" in c.value for c in at.code)  # the command preview
