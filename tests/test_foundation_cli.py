"""The `vlhub` command: verbs, error lines and exit codes, runs, doctor."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from conftest import ROOT, run_vlhub


def test_help_lists_foundation_verbs() -> None:
    out = run_vlhub("--help", check=True).stdout
    for verb in ("launch", "plugins", "env", "doctor", "runs"):
        assert f"  {verb}" in out


def test_launcher_script_behaves_like_console_script() -> None:
    import subprocess

    direct = subprocess.run([sys.executable, str(ROOT / "launcher.py"), "plugins", "--json"],
                            capture_output=True, text=True, check=True).stdout
    assert json.loads(direct) == json.loads(run_vlhub("plugins", "--json", check=True).stdout)


def test_bad_input_is_one_line_exit_2_without_traceback() -> None:
    proc = run_vlhub("run", "show", "no-such-run")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "no run 'no-such-run'" in proc.stderr and "vlhub runs" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_debug_shows_traceback() -> None:
    proc = run_vlhub("--debug", "run", "show", "no-such-run")
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_env_check_says_what_is_missing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("VLHUB_ENVS_DIR", str(tmp_path / "no-envs"))
    proc = run_vlhub("env", "check", "--json", check=True)
    report = {item["name"]: item for item in json.loads(proc.stdout)}
    assert set(report) == {"train", "serve", "swift"}
    assert not report["swift"]["ready"] and "ms-swift" in report["swift"]["missing"]
    assert not report["train"]["ready"] and "xtuner" in report["train"]["missing"]
    assert report["serve"]["fix"].startswith("vlhub env create serve")


def test_env_use_rejects_an_interpreter_without_the_stack(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("VLHUB_ENVS_DIR", str(tmp_path / "envs"))
    proc = run_vlhub("env", "use", "train", "--python", sys.executable)
    assert proc.returncode == 2
    assert "lacks" in proc.stderr and "xtuner" in proc.stderr
    assert not (tmp_path / "envs" / "train" / "env.json").exists()


def test_env_use_adopts_a_working_train_env(tmp_path: Path, monkeypatch) -> None:
    from conftest import train_python

    python = train_python()
    monkeypatch.setenv("VLHUB_ENVS_DIR", str(tmp_path / "envs"))
    run_vlhub("env", "use", "train", "--python", str(python), check=True)
    report = json.loads(run_vlhub("env", "check", "train", "--json", check=True).stdout)[0]
    assert report["ready"] and report["adopted"] and report["versions"]["xtuner"] == "0.2.0"


def test_doctor_reports_tools_and_hides_tokens(monkeypatch) -> None:
    canary = "hf_CANARY-not-a-token-0123456789"
    monkeypatch.setenv("HF_TOKEN", canary)
    proc = run_vlhub("doctor", "--json", check=True)
    report = json.loads(proc.stdout)
    assert report["tools"]["git-lfs"], "git-lfs must be installed for publishing"
    assert report["tokens"]["hf"] == {"hub": "hf", "found": True, "source": "$HF_TOKEN"}
    assert report["tokens"]["modelscope"]["found"] is False
    assert canary not in proc.stdout + proc.stderr


def test_runs_lists_run_folders(isolated: Path) -> None:
    from vlhub.core import runs

    first = runs.new_run("data", note="a")
    second = runs.new_run("train")
    second.update(status="finished")
    listed = json.loads(run_vlhub("runs", "--json", check=True).stdout)
    assert {r["id"]: r["kind"] for r in listed} == {first.id: "data", second.id: "train"}
    shown = json.loads(run_vlhub("run", "show", second.id, "--json", check=True).stdout)
    assert shown["status"] == "finished" and shown["id"] == second.id


def test_run_with_dead_process_is_marked_failed(isolated: Path) -> None:
    import subprocess

    from vlhub.core import runs

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    run = runs.new_run("publish")
    run.update(status="running", pid=proc.pid)
    listed = json.loads(run_vlhub("runs", "--json", check=True).stdout)
    assert listed[0]["status"] == "failed"


def test_runs_lists_good_runs_and_flags_damaged_ones(tmp_path: Path) -> None:
    """A truncated, mistyped or id-less run.json never hides the other runs or ends in a generic error."""
    from vlhub.core.home import runs_dir

    good = runs_dir() / "20260101-000000-publish-aaaa"
    good.mkdir(parents=True)
    (good / "run.json").write_text(json.dumps({"id": good.name, "kind": "publish", "status": "done",
                                               "created": "2026-01-01"}))
    bad = runs_dir() / "20260101-000001-train-bbbb"
    bad.mkdir()
    for text in ('{"id": "x", "kind": "tra', json.dumps({"kind": "train", "status": "done", "created": 5}), "[]"):
        (bad / "run.json").write_text(text)
        proc = run_vlhub("runs", "--json")
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        rows = {row["id"]: row for row in json.loads(proc.stdout)}
        assert rows[good.name]["status"] == "done" and bad.name in rows
        if text.startswith("{\"kind\""):
            assert rows[bad.name]["status"] == "done"  # readable: listed under its folder's name
        else:
            assert rows[bad.name]["status"] == "damaged" and "run.json is damaged" in rows[bad.name]["error"]
