"""The detached supervisor of one ``swift`` run: ``python -m vlhub.plugins.trainers.swift_supervisor RUN_DIR``.

Started in its own session by :meth:`SwiftTrainer.launch`, it starts the command recorded in ``run.json``
(``plan.command``; its pid, start time and command line go to ``train_pid``/``train_pid_started``/
``train_pid_cmdline``, what ``vlhub run stop`` checks before signalling), sends its console to
``train.log``, follows ms-swift's ``work/logging.jsonl`` into ``metrics.jsonl`` and ``run.json``'s
``progress`` (:mod:`.swift_run`), and records the outcome when the command ends. It needs only the
launcher's light packages and keeps working when the launcher is closed or killed.
"""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

from vlhub.core.runs import load_run, process_record

from .run_files import append_jsonl
from .swift_run import LOG, METRICS, LoggingReader, outcome, progress, to_metrics

POLL_SECONDS = 1.0


def follow(run_dir: Path, reader: LoggingReader) -> None:
    """Append the training records logged since the last call to ``metrics.jsonl`` and update ``progress``."""
    records = [m for m in map(to_metrics, reader.read()) if m]
    append_jsonl(run_dir / METRICS, records)
    if records:
        load_run(run_dir).update(progress=progress(records))


def supervise(run_dir: Path) -> None:
    """Start the run's recorded command, follow its logging until it ends, then record the outcome."""
    run = load_run(run_dir)
    logging = run_dir / "work" / "logging.jsonl"
    reader = LoggingReader(run_dir, logging.stat().st_size if logging.exists() else 0)
    with open(run_dir / LOG, "ab") as sink:
        child = subprocess.Popen(run.data["plan"]["command"], cwd=run_dir, env=dict(os.environ),
                                 stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT)
    run.update(**process_record(child.pid, "train_pid"))
    while child.poll() is None:
        follow(run_dir, reader)
        time.sleep(POLL_SECONDS)
    follow(run_dir, reader)
    stopping = load_run(run_dir).status == "stopping"
    load_run(run_dir).update(**outcome(run_dir, stopping, child.returncode), exit_code=child.returncode,
                             ended=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))


if __name__ == "__main__":
    supervise(Path(sys.argv[1]).resolve())
