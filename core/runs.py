"""Run folders under ``$VLHUB_HOME/runs``: one folder per run, described by ``run.json``.

``run.json`` is written atomically and under a file lock, so the launcher, the CLI
and a detached worker can all update it. Paths stored in it are absolute.

Processes vlhub starts detached (:func:`start_detached`: a training supervisor, a launcher job) are
recorded with their pid, start time and a fingerprint of their command line (:func:`process_record`);
:func:`check_process` is the one rule every caller uses before treating a process as vlhub's (alive,
or to be signalled), and :func:`terminate_tree` never signals a protected process.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import os
import secrets as _random
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Collection, Mapping, Sequence

import psutil
from filelock import FileLock

from .errors import BadInput
from .fsutil import atomic_write_json, read_json
from .home import runs_dir
from .secrets import redact_data
from .types import Progress

RUN_FILE = "run.json"


@dataclass
class Run:
    """A run folder and the contents of its ``run.json``."""

    dir: Path
    data: dict[str, Any]

    @property
    def id(self) -> str:
        """The run's id: its folder's name (what ``run.json`` records, which a hand-edited file may lack)."""
        value = self.data.get("id")
        return value if isinstance(value, str) and value else self.dir.name

    @property
    def kind(self) -> str:
        """``train``, ``eval``, ``publish``, or a launcher job's action (:mod:`vlhub.core.jobs`)."""
        return self.data.get("kind", "")

    @property
    def status(self) -> str:
        """The recorded status (``created`` until one is recorded)."""
        return self.data.get("status", "created")

    def path(self, *parts: str) -> Path:
        """A path inside the run folder."""
        return self.dir.joinpath(*parts)

    def update(self, **fields: Any) -> "Run":
        """Merge ``fields`` into ``run.json`` (locked, atomic) and return the fresh run."""
        return self.update_if(None, **fields)

    def update_if(self, statuses: Collection[str] | None, **fields: Any) -> "Run":
        """Merge ``fields`` into ``run.json`` only while its recorded status is one of ``statuses``.

        Args:
            statuses: the statuses in which the change applies (read under the lock, so an outcome that
                the run's own process wrote in the meantime is never overwritten); ``None``: always.
            fields: the fields to merge (strings redacted: no token or URL user-info is stored).
        Returns:
            This run, holding what ``run.json`` holds now (changed or not).
        Raises:
            BadInput: ``run.json`` is damaged.
        """
        with FileLock(str(self.dir / ".run.lock")):
            current = read_json(self.dir / RUN_FILE, {}, expect=dict)
            if statuses is None or current.get("status", "created") in statuses:
                current.update(redact_data(fields))  # a URL's user-info or a token typed into a field never lands here
                current["updated"] = _now()
                atomic_write_json(self.dir / RUN_FILE, current)
        self.data = current
        return self


def _now(timespec: str = "seconds") -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec=timespec)


def new_run(kind: str, **fields: Any) -> Run:
    """Create a run folder with a fresh id like ``20261124-071500-train-a1b2``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_id = f"{stamp}-{kind}-{_random.token_hex(2)}"
    folder = runs_dir() / run_id
    folder.mkdir(parents=True)
    run = Run(folder.resolve(), {})
    # milliseconds: runs started within one second (a page's quick clicks) still list newest first
    return run.update(id=run_id, kind=kind, status="created", created=_now("milliseconds"), **fields)


def load_run(ref: str | Path) -> Run:
    """A run by id or by folder path.

    Raises:
        BadInput: no such run, or its ``run.json`` is damaged (the message names the file).
    """
    candidates = [Path(ref)] if os.sep in str(ref) else [runs_dir() / str(ref)]
    for folder in candidates:
        data = read_json(folder / RUN_FILE, expect=dict)
        if data is not None:
            return Run(folder.resolve(), data)
    raise BadInput(f"no run {str(ref)!r} (no {RUN_FILE} there)",
                   "`vlhub runs` lists the runs; the folder may have been deleted")


def _scan() -> tuple[list[Run], list[tuple[Path, str]]]:
    good, damaged = [], []
    folders = sorted(runs_dir().iterdir()) if runs_dir().is_dir() else []
    for folder in folders:
        if not folder.is_dir():
            continue
        try:
            data = read_json(folder / RUN_FILE, expect=dict)
        except BadInput as exc:
            damaged.append((folder, exc.one_line()))
            continue
        if data is not None:
            good.append(Run(folder.resolve(), data))
    return good, damaged


def list_runs(kind: str | None = None) -> list[Run]:
    """Every run with a readable ``run.json`` (of ``kind``, if given), newest first; damaged ones
    are left out here and reported by :func:`damaged_runs`."""
    runs = [r for r in _scan()[0] if kind is None or r.data.get("kind") == kind]
    return sorted(runs, key=lambda r: str(r.data.get("created", "")), reverse=True)


def damaged_runs() -> list[tuple[Path, str]]:
    """Run folders whose ``run.json`` cannot be read: ``(folder, one-line message with the fix)``."""
    return _scan()[1]


#: ``check_process`` verdicts.
OWNED, GONE, UNPROVEN = "owned", "gone", "unproven"
#: How far a recorded start time may be from the process's (``create_time`` is rounded by the OS).
START_TOLERANCE_S = 1.0


def cmdline_fingerprint(argv: Sequence[str]) -> str:
    """``sha256:HEX`` of a command line (the arguments joined by NUL), as stored in a record."""
    return "sha256:" + hashlib.sha256("\0".join(argv).encode("utf-8", "surrogateescape")).hexdigest()


def process_record(proc: psutil.Process | int, prefix: str = "pid") -> dict[str, Any]:
    """What vlhub records about a process it has just started, under ``PREFIX``, ``PREFIX_started``
    and ``PREFIX_cmdline`` (e.g. ``pid``/``pid_started``/``pid_cmdline``, or ``train_pid``/...).

    Args:
        proc: the started process (or its pid). Call this right after ``subprocess.Popen`` returns: the
            program has then been executed, so its command line is the one the OS shows from now on.
        prefix: the key of the pid.
    Returns:
        The three fields; the start time and fingerprint are ``None`` when the process already ended
        (such a record never proves anything, see :func:`check_process`).
    """
    pid = proc if isinstance(proc, int) else proc.pid
    started, fingerprint = None, None
    try:
        proc = psutil.Process(pid) if isinstance(proc, int) else proc
        started = proc.create_time()
        deadline = time.monotonic() + 2.0
        argv = proc.cmdline()
        while not argv and time.monotonic() < deadline:  # the kernel may not have set up argv yet
            time.sleep(0.01)
            argv = proc.cmdline()
        fingerprint = cmdline_fingerprint(argv) if argv else None
    except psutil.Error:
        started, fingerprint = None, None
    return {prefix: pid, f"{prefix}_started": started, f"{prefix}_cmdline": fingerprint}


@dataclass(frozen=True)
class ProcessCheck:
    """The verdict of :func:`check_process` on one recorded process.

    ``state`` is :data:`OWNED` (``process`` is the live process vlhub started), :data:`GONE` (no
    process to speak of: no pid recorded, or no live process has it) or :data:`UNPROVEN` (a live
    process has the pid but is not provably the one vlhub started; ``reason`` says why).
    """

    state: str
    pid: int | None = None
    process: psutil.Process | None = None
    reason: str = ""


def check_process(record: Mapping[str, Any], prefix: str = "pid") -> ProcessCheck:
    """The one rule for "is this vlhub's process?" (run.json's supervisor and training process,
    launcher jobs): a live process is vlhub's only when its start time (``create_time``, within
    :data:`START_TOLERANCE_S`) and its command line match what vlhub recorded when it started it
    (:func:`process_record`).

    Args:
        record: a mapping holding ``PREFIX``, ``PREFIX_started`` and ``PREFIX_cmdline``.
        prefix: the key of the pid (``pid``, ``train_pid``).
    Returns:
        A :class:`ProcessCheck`. A record without a start time or a command line (runs written by
        vlhub 0.1, or a hand-edited ``run.json``) is never :data:`OWNED`; pid 0, pid 1 and values
        that are not a positive pid are :data:`UNPROVEN` whatever else is recorded.
    Raises:
        Nothing: a process that cannot be inspected (access denied) is :data:`UNPROVEN`.
    """
    pid = record.get(prefix)
    if pid is None:
        return ProcessCheck(GONE)
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 1:
        return ProcessCheck(UNPROVEN, pid if isinstance(pid, int) else None,
                            reason=f"{prefix} {pid!r} is not a process vlhub can have started")
    started, fingerprint = record.get(f"{prefix}_started"), record.get(f"{prefix}_cmdline")
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            if proc.status() == psutil.STATUS_ZOMBIE:
                return ProcessCheck(GONE, pid)
            created = proc.create_time()
            argv = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return ProcessCheck(GONE, pid)
    except psutil.Error as exc:
        return ProcessCheck(UNPROVEN, pid, reason=f"pid {pid} cannot be inspected ({type(exc).__name__})")
    missing = [key for key, ok in ((f"{prefix}_started", _is_number(started)),
                                   (f"{prefix}_cmdline", isinstance(fingerprint, str))) if not ok]
    if missing:
        return ProcessCheck(UNPROVEN, pid, reason=f"pid {pid} is alive but the record has no {' or '.join(missing)} "
                                                   "to prove it is the process vlhub started")
    if abs(created - started) >= START_TOLERANCE_S:
        return ProcessCheck(UNPROVEN, pid, reason=f"pid {pid} started at {_stamp(created)}, not at the recorded "
                                                   f"{_stamp(started)}")
    if cmdline_fingerprint(argv) != fingerprint:
        return ProcessCheck(UNPROVEN, pid, reason=f"pid {pid} runs another command line than the one recorded")
    return ProcessCheck(OWNED, pid, proc)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _stamp(seconds: float) -> str:
    try:
        return _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return repr(seconds)


def owned_process(record: Mapping[str, Any], prefix: str = "pid") -> psutil.Process | None:
    """The live process that ``record`` names, only when :func:`check_process` proves it is vlhub's."""
    return check_process(record, prefix).process


def protected_pids() -> set[int]:
    """Pids vlhub never signals: 0, 1, this process and its ancestors (its parent first)."""
    pids = {0, 1, os.getpid(), os.getppid()}
    try:
        pids.update(p.pid for p in psutil.Process().parents())
    except psutil.Error:
        pass
    return pids


def is_protected(pid: int) -> bool:
    """Whether ``pid`` is one vlhub never signals: see :func:`protected_pids`, and any process in this
    process's own process group. A pid whose group cannot be read is protected too."""
    if pid in protected_pids():
        return True
    try:
        return os.getpgid(pid) == os.getpgrp()
    except ProcessLookupError:
        return False  # gone: nothing would be signalled
    except (OSError, OverflowError, ValueError):
        return True


#: At most one progress write per task this often (seconds); a task's last event is always written.
THROTTLE_S = 0.25


class ProgressRecorder:
    """A progress callback recording the latest event per task in ``run.json`` (``progress``), so that
    the pages and a second request following the run (:func:`vlhub.core.lifecycle.follow`) see it:
    at most one write per task every :data:`THROTTLE_S` seconds (finished tasks at once; :meth:`flush`
    writes the rest). ``forward`` also receives every event (a terminal's progress bars)."""

    def __init__(self, run: Run, forward: Callable[[Progress], None] | None = None) -> None:
        self.run = run
        self.forward = forward
        self.latest: dict[str, dict[str, Any]] = {}
        self.last: dict[str, float] = {}
        self.dirty = False

    def __call__(self, event: Progress) -> None:
        if self.forward is not None:
            self.forward(event)
        self.latest[event.task] = asdict(event)
        self.dirty = True
        now = time.monotonic()
        finished = event.total is not None and event.done >= event.total
        if finished or now - self.last.get(event.task, 0.0) >= THROTTLE_S:
            self.last[event.task] = now
            self.flush()

    def flush(self) -> None:
        if self.dirty:
            self.run.update(progress=self.latest)  # messages are redacted by the update
            self.dirty = False


#: Statuses of a run whose work is under way.
ACTIVE = ("running", "starting", "stopping")


def find_active(kind: str, key: str) -> Run | None:
    """The active run of ``kind`` doing ``key`` (see :func:`claim`) whose process is provably vlhub's, if any."""
    for run in list_runs(kind):
        if run.data.get("key") == key and run.status in ACTIVE and check_process(run.data, "pid").state == OWNED:
            return run
    return None


def claim(kind: str, key: str, **fields: Any) -> tuple[Run, bool]:
    """One run per piece of work: the run doing ``key`` now, or a new one recorded as this process's.

    Two requests for the same work (a double click, a second terminal, the launcher and the CLI)
    must not both do it: the second attaches to the first and follows it.

    Args:
        kind: the run kind (``publish``, ``convert``, ...).
        key: what makes two requests the same work (e.g. the folder and the targets), stored in
            ``run.json`` as ``key``.
        **fields: what a new run records (never a secret: values are redacted anyway).
    Returns:
        ``(run, attached)``: an active run of ``kind`` with this ``key`` whose process is provably
        vlhub's (:func:`check_process`) and ``True``; otherwise a new ``running`` run whose process is
        the caller's (:func:`process_record`) and ``False``.
    Raises:
        OSError: the runs folder cannot be written (mapped to one line by :mod:`vlhub.core.boundary`).
    """
    with FileLock(str(runs_dir() / ".claim.lock")):
        running = find_active(kind, key)
        if running is not None:
            return running, True
        run = new_run(kind, key=key, **fields)
        return run.update(status="running", **process_record(os.getpid(), "pid")), False


def start_detached(argv: Sequence[str], env: Mapping[str, str], cwd: Path, log: Path,
                   stdin: bytes | None = None) -> psutil.Process:
    """Start ``argv`` in a session of its own (no terminal, no signals from the launcher), output to ``log``.

    Args:
        argv: the command line.
        env: its whole environment.
        cwd: its working folder.
        log: the file its stdout and stderr are appended to.
        stdin: bytes written to its standard input, which is then closed (a job's arguments, which may
            hold a secret and so are never written to a file); ``None``: no input.
    Returns:
        The started process. ``Popen`` returns once the program is executed, so :func:`process_record`
        on it records the start time and command line that :func:`check_process` later compares.
    Raises:
        OSError: the program cannot be started.
    """
    with open(log, "ab") as sink:
        proc = subprocess.Popen(list(argv), cwd=cwd, env=dict(env), stdout=sink, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                                start_new_session=True, close_fds=True)
    started = psutil.Process(proc.pid)
    if stdin is not None and proc.stdin is not None:
        try:
            proc.stdin.write(stdin)
            proc.stdin.close()
        except BrokenPipeError:  # it ended at once; its log says why
            pass
    return started


def terminate_tree(root: psutil.Process, timeout: float) -> int:
    """SIGTERM ``root`` and all its descendants (torchrun ranks run in sessions of their own),
    SIGKILL what is left after ``timeout`` seconds.

    Args:
        root: a process proven to be vlhub's (the caller checks it with :func:`check_process`).
        timeout: seconds between SIGTERM and SIGKILL.
    Returns:
        How many processes were signalled. Protected processes (:func:`is_protected`: pid 0 and 1, the
        caller, its ancestors, its process group) are never signalled: a protected ``root`` means nothing
        is signalled at all (0), protected descendants are skipped.
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
