"""vlhub never signals a process it cannot prove it started, whatever ``run.json`` says.

A process vlhub started is recorded with its pid, start time and command-line fingerprint; only a
live process matching all three is the run's (:func:`vlhub.core.runs.check_process`). These tests
write ``run.json`` files naming processes vlhub did not start (an unrelated ``bash`` with a child,
pid 1, the test process itself) and check, with the real ``vlhub`` command, that the run is
reported ``lost``, that ``vlhub run stop`` refuses with one ``Error:`` line (exit 2), and that every
named process is still alive. No mocks: real processes, real signals.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import psutil
import pytest

from conftest import run_vlhub
from vlhub.core import plugins, runs
from vlhub.core.errors import BadInput
from vlhub.core.lifecycle import refresh
from vlhub.core.runs import start_detached, terminate_tree
from vlhub.streamlit_app import jobs


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.Error:
        return False


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def victim() -> Iterator[psutil.Process]:
    """An unrelated ``bash -c 'sleep 300 & wait'`` in a session of its own, with its sleep child."""
    popen = subprocess.Popen(["bash", "-c", "sleep 300 & wait"], start_new_session=True,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc = psutil.Process(popen.pid)
    try:
        _wait(lambda: len(proc.children()) == 1 and proc.children()[0].cmdline() == ["sleep", "300"], 10,
              "the victim's sleep child")
        yield proc
    finally:
        try:
            os.killpg(popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        popen.wait(timeout=10)


def _record(proc: psutil.Process) -> dict[str, Any]:
    return runs.process_record(proc, "pid")


#: name -> the fields that run.json gets, given the victim
CASES: dict[str, Callable[[psutil.Process], dict[str, Any]]] = {
    "no pid_started": lambda v: {"pid": v.pid},
    "v0.1: real pid_started, no cmdline": lambda v: {"pid": v.pid, "pid_started": v.create_time()},
    "pid 1": lambda v: {"pid": 1},
    "pid 1 with its real start time and cmdline": lambda v: _record(psutil.Process(1)),
    "the test process itself": lambda v: {"pid": os.getpid(), "pid_started": psutil.Process().create_time()},
    "pid_started mismatch": lambda v: {**_record(v), "pid_started": v.create_time() - 3600},
    "cmdline mismatch": lambda v: {**_record(v), "pid_cmdline": runs.cmdline_fingerprint(["bash", "-c", "x"])},
    "a string pid": lambda v: {"pid": str(v.pid), "pid_started": v.create_time()},
    "v0.1 training process, supervisor gone": lambda v: {"pid": None, "train_pid": v.pid,
                                                         "train_pid_started": v.create_time()},
}


def _foreign_run(fields: dict[str, Any]) -> runs.Run:
    return runs.new_run("train", trainer="xtuner").update(status="running", **fields)


def _statuses() -> dict[str, str]:
    listed = run_vlhub("runs", "--json")
    assert listed.returncode == 0, listed.stderr
    return {row["id"]: row["status"] for row in json.loads(listed.stdout)}


def _refused(run_id: str) -> str:
    stop = run_vlhub("run", "stop", run_id, "--timeout", "2")
    lines = stop.stderr.strip().splitlines()
    assert stop.returncode == 2, (stop.returncode, stop.stdout, stop.stderr)
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in stop.stderr, stop.stderr
    assert "cannot be proven to be vlhub's" in lines[0] and "nothing was signalled" in lines[0], lines[0]
    assert "Fix: " in lines[0]
    assert stop.stdout == ""
    return lines[0]


@pytest.mark.parametrize("case", list(CASES))
def test_stop_refuses_a_process_vlhub_cannot_prove_it_started(case: str, victim: psutil.Process) -> None:
    sleeper = victim.children()[0]
    fields = CASES[case](victim)
    listed_first = _foreign_run(fields)   # `vlhub runs` sees it before `run stop`
    stopped_first = _foreign_run(fields)  # `vlhub run stop` is the first to look at it

    assert _statuses()[listed_first.id] == "lost"
    _refused(listed_first.id)
    _refused(stopped_first.id)
    _refused(stopped_first.id)  # and again, now that it is recorded lost
    statuses = _statuses()
    assert statuses[listed_first.id] == statuses[stopped_first.id] == "lost"
    record = runs.load_run(stopped_first.id).data
    assert record["status"] == "lost" and record["lost_reason"]

    assert _alive(victim) and _alive(sleeper), "a process vlhub did not start was signalled"
    assert victim.children() == [sleeper]
    assert psutil.Process(1).is_running()
    # a lost run whose process still lives is not resumed either (two trainings in one folder)
    resume = run_vlhub("train", "--resume", stopped_first.id)
    assert resume.returncode == 2 and len(resume.stderr.strip().splitlines()) == 1, resume.stderr


def test_the_trainer_itself_refuses_without_refresh(victim: psutil.Process) -> None:
    """``XtunerTrainer.stop`` checks on its own (no `refresh` first), in this very process."""
    run = _foreign_run({"pid": victim.pid, "pid_started": victim.create_time()})
    with pytest.raises(BadInput, match="cannot be proven to be vlhub's"):
        plugins.get("trainers", "xtuner").stop(run.dir, timeout=1)
    assert runs.load_run(run.id).status == "lost"
    assert _alive(victim) and _alive(victim.children()[0])


def test_a_gone_process_is_judged_not_lost() -> None:
    """A record whose process has ended (any version) is judged from the log as before: nothing to signal."""
    done = subprocess.Popen(["sleep", "0"])
    record = runs.process_record(done.pid, "pid")
    done.wait()
    run = _foreign_run(record)
    assert _statuses()[run.id] == "failed"  # no log at all
    old = _foreign_run({"pid": done.pid})  # a v0.1 record without start time: same
    assert refresh(runs.load_run(old.id)).status == "failed"


def test_a_proven_process_of_the_callers_own_group_is_not_signalled() -> None:
    """Even a record that matches (pid, start time, command line) is refused when it names the caller,
    an ancestor of it or a process of its group: here the pytest process, the parent of `vlhub run stop`."""
    run = _foreign_run(_record(psutil.Process()))
    assert _statuses()[run.id] == "running"  # it is provably the process recorded
    stop = run_vlhub("run", "stop", run.id, "--timeout", "2")
    lines = stop.stderr.strip().splitlines()
    assert stop.returncode == 2 and len(lines) == 1 and lines[0].startswith("Error: "), stop.stderr
    assert "nothing was signalled" in lines[0]
    assert runs.load_run(run.id).status == "running"


def test_a_real_detached_process_is_recognised_and_stopped(tmp_path: Path) -> None:
    """The positive side of the rule: what vlhub records for a process it starts proves it."""
    proc = start_detached(["bash", "-c", "sleep 300 & wait"], dict(os.environ), tmp_path, tmp_path / "log")
    try:
        record = runs.process_record(proc, "pid")
        assert record["pid_cmdline"] == runs.cmdline_fingerprint(["bash", "-c", "sleep 300 & wait"])
        check = runs.check_process(record)
        assert check.state == runs.OWNED and check.process is not None and check.process.pid == proc.pid
        _wait(lambda: bool(proc.children()), 10, "the sleep child")
        child = proc.children()[0]
        assert terminate_tree(check.process, 5) == 2
        assert not _alive(proc) and not _alive(child)
        assert runs.check_process(record).state == runs.GONE
    finally:
        for p in (proc, *([child] if "child" in locals() else [])):
            try:
                p.kill()
            except psutil.Error:
                pass


# ------------------------------------------------------------------ terminate_tree's own guard
def test_terminate_tree_never_signals_the_caller_or_its_group() -> None:
    caught: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: caught.append(signum))
    try:
        assert terminate_tree(psutil.Process(), 1) == 0
        assert terminate_tree(psutil.Process(os.getppid()), 1) == 0
        same_group = subprocess.Popen(["sleep", "300"])  # in this process's group
        try:
            assert terminate_tree(psutil.Process(same_group.pid), 1) == 0
            assert same_group.poll() is None
        finally:
            same_group.kill()
            same_group.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert caught == []


TREE = """
import subprocess, sys, time
subprocess.Popen(["sleep", "300"], process_group=int(sys.argv[1]))  # joins the test's group
subprocess.Popen(["sleep", "301"])
time.sleep(300)
"""


def test_terminate_tree_skips_descendants_in_the_callers_group() -> None:
    root = subprocess.Popen([sys.executable, "-c", TREE, str(os.getpgrp())], process_group=0)
    proc = psutil.Process(root.pid)
    try:
        _wait(lambda: len(proc.children()) == 2 and all(c.cmdline()[:1] == ["sleep"] for c in proc.children()),
              10, "the two sleeps")
        ours = next(c for c in proc.children() if c.cmdline() == ["sleep", "300"])
        theirs = next(c for c in proc.children() if c.cmdline() == ["sleep", "301"])
        assert os.getpgid(ours.pid) == os.getpgrp() != os.getpgid(root.pid)
        assert terminate_tree(proc, 5) == 2  # the root and its own-group child
        root.wait(timeout=10)
        assert not _alive(theirs)
        assert _alive(ours), "a process of the caller's own process group was signalled"
    finally:
        for p in proc.children(recursive=True) if _alive(proc) else []:
            p.kill()
        try:
            ours.kill()  # type: ignore[possibly-undefined]
        except (psutil.Error, NameError):
            pass
        if root.poll() is None:
            root.kill()
            root.wait()


# ------------------------------------------------------------------ launcher jobs (runs of core.jobs)
def test_a_job_counts_as_running_only_while_its_recorded_process_matches(victim: psutil.Process) -> None:
    job_run = runs.new_run("train.stop", action="train.stop", spec={"run_id": "x"}, label="")
    for launch, expected in [({"pid": victim.pid}, "failed"),  # v0.1: pid only
                             ({"pid": victim.pid, "pid_started": victim.create_time()}, "failed"),
                             ({**_record(victim), "pid_started": victim.create_time() + 60}, "failed"),
                             ({"pid": 1}, "failed"),
                             (_record(victim), "running")]:
        job_run.update(status="running", **{"pid_started": None, "pid_cmdline": None, **launch})
        job = jobs.load(job_run.id)
        assert job.status == expected, launch
        if expected == "failed":
            assert "cannot be proven" in job.error
            assert _statuses()[job_run.id] == "lost"  # `vlhub runs` lists the same job, with the same verdict
    assert _alive(victim)


def test_a_started_job_records_its_process(tmp_path: Path) -> None:
    job = jobs.start("train.stop", {"run_id": "no-such-run"})
    launch = runs.load_run(job.id).data
    assert {"pid", "pid_started", "pid_cmdline"} <= set(launch)
    assert launch["pid_cmdline"] and launch["pid_started"]
    assert launch["kind"] == "train.stop" and launch["spec"] == {"run_id": "no-such-run"}
    _wait(lambda: jobs.load(job.id).status != "running", 60, "the job to end")
    ended = jobs.load(job.id)
    assert ended.status == "failed" and "no run 'no-such-run'" in ended.error
    assert _statuses()[job.id] == "failed"
