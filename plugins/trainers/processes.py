"""Starting processes that outlive the launcher, and ending a process tree."""
from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Mapping, Sequence

import psutil


def start_detached(argv: Sequence[str], env: Mapping[str, str], cwd: Path, log: Path) -> psutil.Process:
    """Start ``argv`` in its own session (no terminal, no signals from the launcher), output to ``log``."""
    with open(log, "ab") as sink:
        proc = subprocess.Popen(list(argv), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=sink,
                                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    return psutil.Process(proc.pid)


def terminate_tree(root: psutil.Process, timeout: float) -> int:
    """SIGTERM ``root`` and all its descendants (torchrun ranks run in sessions of their own),
    SIGKILL what is left after ``timeout`` seconds; returns how many processes were signalled."""
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    for proc in procs:
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)
    return len(procs)
