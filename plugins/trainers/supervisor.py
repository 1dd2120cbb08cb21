"""The detached supervisor of one training run: ``python -m vlhub.plugins.trainers.supervisor RUN_DIR``.

Started in its own session by the trainer's ``launch``, it starts the command recorded in
``run.json`` (``plan.command``, with its own environment; its pid, start time and command-line
fingerprint go to ``train_pid``/``train_pid_started``/``train_pid_cmdline``), follows ``train.log`` into
``metrics.jsonl`` / ``samples.jsonl`` and ``run.json``'s ``progress``, and when the command
ends records the outcome judged from the log and the checkpoints. It needs only the
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

from .run_files import LOG, METRICS, SAMPLES, append_jsonl, outcome
from .xtuner_log import LogParser

POLL_SECONDS = 1.0


class LogFollower:
    """Reads the lines appended to a log since it was created and records what they say."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.log = run_dir / LOG
        self.offset = self.log.stat().st_size if self.log.exists() else 0
        self.parser = LogParser()
        self.partial = b""

    def poll(self, final: bool = False) -> None:
        """Parse the lines appended since the last poll (``final``: the unfinished last line too) and record them."""
        if self.log.exists():
            with open(self.log, "rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
            self.offset += len(chunk)
            lines = (self.partial + chunk).split(b"\n")
            self.partial = lines.pop()  # an unfinished last line waits for its newline
            if final and self.partial:
                lines.append(self.partial)
                self.partial = b""
            self.parser.feed(line.decode("utf-8", errors="replace") for line in lines)
        if final:
            self.parser.flush()
        metrics, samples = self.parser.take()
        append_jsonl(self.run_dir / METRICS, metrics)
        append_jsonl(self.run_dir / SAMPLES, samples)
        if metrics or samples:
            last = metrics[-1] if metrics else {}
            load_run(self.run_dir).update(progress={**self.parser.summary(), "loss": last.get("loss"),
                                                    "eta": last.get("eta")})


def supervise(run_dir: Path) -> None:
    """Start the run's recorded command, follow its log until it ends, then record the outcome."""
    run = load_run(run_dir)
    follower = LogFollower(run_dir)
    with open(run_dir / LOG, "ab") as sink:
        child = subprocess.Popen(run.data["plan"]["command"], cwd=run_dir, env=dict(os.environ),
                                 stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT)
    # the training process's pid, start time and command line: what `vlhub run stop` checks before signalling it
    run.update(**process_record(child.pid, "train_pid"))
    while child.poll() is None:
        follower.poll()
        time.sleep(POLL_SECONDS)
    follower.poll(final=True)
    stopping = load_run(run_dir).status == "stopping"
    load_run(run_dir).update(**outcome(run_dir, stopping), exit_code=child.returncode,
                                 ended=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))


if __name__ == "__main__":
    supervise(Path(sys.argv[1]).resolve())
