"""Starting processes that outlive the launcher, and ending a process tree.

Only processes proven to be vlhub's (:func:`vlhub.core.runs.check_process`) are handed to
:func:`terminate_tree`; it still never signals pid 0, pid 1, the calling process, its ancestors
or anything in the caller's own process group (:func:`vlhub.core.runs.is_protected`).
"""
from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Mapping, Sequence

import psutil

from vlhub.core.runs import is_protected


def start_detached(argv: Sequence[str], env: Mapping[str, str], cwd: Path, log: Path) -> psutil.Process:
    """Start ``argv`` in its own session (no terminal, no signals from the launcher), output to ``log``.

    Returns the started process; ``Popen`` returns once the program is executed, so
    :func:`vlhub.core.runs.process_record` on it records the start time and command line that
    :func:`vlhub.core.runs.check_process` later compares.
    """
    with open(log, "ab") as sink:
        proc = subprocess.Popen(list(argv), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=sink,
                                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    return psutil.Process(proc.pid)


def terminate_tree(root: psutil.Process, timeout: float) -> int:
    """SIGTERM ``root`` and all its descendants (torchrun ranks run in sessions of their own),
    SIGKILL what is left after ``timeout`` seconds.

    Args:
        root: a process proven to be vlhub's (the caller checks it with ``check_process``).
        timeout: seconds between SIGTERM and SIGKILL.
    Returns:
        How many processes were signalled. Protected processes (pid 0 and 1, the caller, its
        ancestors, its process group) are never signalled: a protected ``root`` means nothing is
        signalled at all (0), protected descendants are skipped.
    """
    if is_protected(root.pid):
        return 0
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    procs = [proc for proc in procs if not is_protected(proc.pid)]
    signalled = []
    for proc in procs:
        try:
            proc.send_signal(signal.SIGTERM)  # psutil refuses a pid reused since ``proc`` was read
            signalled.append(proc)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(signalled, timeout=timeout)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)
    return len(signalled)
