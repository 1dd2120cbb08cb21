"""Several GPUs or machines: torch's own launcher run by the stage environment's Python, for any trainer.

A trainer that trains on several GPUs starts its training script under ``torch.distributed.run``
(what the ``torchrun`` console script runs) with the stage environment's own interpreter::

    ENV_PYTHON -m torch.distributed.run --nnodes=1 --node_rank=0 --nproc_per_node=2 \\
        --master_addr=127.0.0.1 --master_port=PORT --log_dir=RUN/ranks --tee=3  SCRIPT ARGS...

never a ``torchrun`` found on ``PATH``: xtuner 0.2.0's entry point (``xtuner/entry_point.py``,
``cli()``) runs ``subprocess.run(["torchrun", ...])`` when ``NPROC_PER_NODE`` > 1, which in an
environment without its own ``torchrun`` script is another Python's, and every rank then dies on
``ModuleNotFoundError`` (measured on the GPU machine, issue 19). The launcher's options are torch's
(``torch/distributed/run.py``, ``get_args_parser``): ``--log_dir`` gives every local rank
``RUN/ranks/<launch>/attempt_N/<local rank>/{stdout,stderr}.log`` (and ``error.json`` when the script
uses ``torch.distributed.elastic.multiprocessing.errors.record``), ``--tee=3`` also copies both streams
to the console with a ``[defaultN]:`` prefix.

This module holds what every trainer shares: the ``--devices`` option (``CUDA_VISIBLE_DEVICES``),
the settings' topology (:class:`LaunchSettings`), the launcher's argv (:func:`launcher_argv`), a free
rendezvous port per launch (:func:`assign_port`: two runs on one host never both take torch's default 29500)
and the failed rank's first error (:func:`rank_errors`) in place of torchrun's generic ``ChildFailedError``.
"""
from __future__ import annotations

import json
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from filelock import FileLock

from vlhub.core.errors import BadInput
from vlhub.core.home import runs_dir
from vlhub.core.options import Option
from vlhub.core.runs import ACTIVE, Run, list_runs

#: The module ``python -m`` runs: the same ``main`` as the ``torchrun`` console script.
LAUNCHER_MODULE = "torch.distributed.run"
#: torch's default rendezvous port: used only for several machines without ``--master-port``
#: (every machine must name the same one).
DEFAULT_PORT = 29500
#: Where a run records the rendezvous port of its current launch (``run.json``).
PORT_FIELD = "master_port"

#: The ``--devices`` setting a trainer lists among its options (with its Chinese label and help).
DEVICES = Option("devices", "GPU indices to train on, comma-separated, e.g. 0,1 (sets CUDA_VISIBLE_DEVICES; "
                            "--gpus defaults to their count)", str, None, labels={"zh": "使用的 GPU 编号"},
                 helps={"zh": "训练使用的 GPU 编号，用逗号分隔，例如 0,1（设置 `CUDA_VISIBLE_DEVICES`；GPU 数默认为编号个数）"})

#: A Python exception line (``ValueError: bad batch``, ``torch.OutOfMemoryError: ...``), after the
#: ``[rankN]:`` prefix torch >= 2.4 puts on a rank's traceback.
EXCEPTION = re.compile(r"^(?:[\w.]+\.)?\w*(?:Error|Exception|Interrupt)(?::.*)?$")
RANK_PREFIX = re.compile(r"^(?:\[[a-z]*\d+\]:\s?)+")
TRACEBACK = "Traceback (most recent call last)"
#: torchrun's ``ChildFailedError`` summary (``torch/distributed/elastic/multiprocessing/errors/error_handler.py``
#: and ``errors/__init__.py``, ``ChildFailedError.format_msg``): the block after ``Root Cause``.
ROOT_CAUSE = "Root Cause (first observed failure):"
SUMMARY_FIELD = re.compile(r"^\s*(rank|exitcode|traceback)\s*:\s*(.*?)\s*$")
LOCAL_RANK = re.compile(r"^(\d+)\s*\(local_rank:\s*(\d+)\)")


@dataclass(frozen=True)
class Topology:
    """Where the processes of one training launch run.

    ``gpus`` processes on this machine (one per GPU), ``nnodes`` machines, this one's ``node_rank``;
    ``master_port`` ``None`` means a free port chosen per launch (one machine only); ``devices`` the
    GPU indices for ``CUDA_VISIBLE_DEVICES`` (empty: leave it as it is).
    """

    gpus: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int | None = None
    devices: tuple[int, ...] = ()

    @property
    def world_size(self) -> int:
        """Processes in all: ``gpus * nnodes``."""
        return self.gpus * self.nnodes

    @property
    def distributed(self) -> bool:
        """More than one process: the launch goes through :data:`LAUNCHER_MODULE`."""
        return self.world_size > 1


def parse_devices(text: str | None, gpus: int | None) -> tuple[tuple[int, ...], int | None]:
    """``--devices`` text as GPU indices, and the ``--gpus`` count they give.

    Args:
        text: ``"0,1"`` (spaces allowed), or ``None``/``""`` for none.
        gpus: ``--gpus`` as the user gave it, ``None`` when not given.
    Returns:
        ``(indices, gpus)``: the indices in the given order (rank 0 takes the first), and ``gpus``, or
        the number of indices when ``gpus`` was not given.
    Raises:
        BadInput: an index that is not a whole number >= 0, one named twice, or a count other than ``--gpus``.
    """
    if not text or not text.strip():
        return (), gpus
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() for p in parts):
        raise BadInput(f"--devices {text!r} is not a list of GPU indices",
                       "give whole numbers separated by commas, e.g. --devices 0,1 (`nvidia-smi -L` lists them)")
    devices = tuple(int(p) for p in parts)
    twice = sorted({d for d in devices if devices.count(d) > 1})
    if twice:
        raise BadInput(f"--devices {text}: GPU {twice[0]} is named twice", "name each GPU once, e.g. --devices 0,1")
    if gpus is not None and gpus != len(devices):
        raise BadInput(f"--gpus {gpus} does not match --devices {text} ({len(devices)} GPU(s))",
                       f"drop --gpus (it follows --devices) or use --gpus {len(devices)}")
    return devices, len(devices) if gpus is None else gpus


class LaunchSettings:
    """A base of a trainer's settings dataclass, whose fields ``gpus``, ``devices``, ``nnodes``, ``node_rank``,
    ``master_addr`` and ``master_port`` it reads as the launch's topology (it adds no field)."""

    @property
    def world_size(self) -> int:
        """Processes in all (``gpus * nnodes``)."""
        return self.gpus * self.nnodes

    @property
    def topology(self) -> Topology:
        """Processes, machines, rendezvous and GPU indices of the launch."""
        devices, _ = parse_devices(self.devices, self.gpus)
        return Topology(self.gpus, self.nnodes, self.node_rank, self.master_addr, self.master_port, devices)


def check_devices(topology: Topology, visible: int) -> None:
    """Refuse ``--devices`` indices the machine does not have.

    Args:
        topology: the launch (its ``devices``).
        visible: the CUDA GPUs the stage environment sees (as counted before ``CUDA_VISIBLE_DEVICES`` is set).
    Raises:
        BadInput: an index >= ``visible``.
    """
    missing = [d for d in topology.devices if d >= visible]
    if missing:
        text = ",".join(map(str, topology.devices))
        raise BadInput(f"--devices {text}: there is no GPU {missing[0]}; the train environment sees {visible} "
                       "CUDA GPU(s)", f"use indices from 0 to {visible - 1}" if visible else
                       "run on a machine with GPUs, or drop --devices")


def environment(topology: Topology) -> dict[str, str]:
    """The variables the launch adds for ``--devices``: ``CUDA_VISIBLE_DEVICES`` with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``,
    so that the indices are those ``nvidia-smi`` shows (CUDA's own default order is fastest first); nothing
    without ``--devices``."""
    if not topology.devices:
        return {}
    return {"CUDA_VISIBLE_DEVICES": ",".join(map(str, topology.devices)), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


def launcher_argv(python: Path, topology: Topology, port: int, log_dir: Path) -> list[str]:
    """The launcher's argv, to which the caller appends the training script and its arguments.

    Args:
        python: the stage environment's interpreter (it runs the launcher and, as ``sys.executable``, every rank).
        topology: processes, machines and this machine's rank.
        port: the rendezvous port (:func:`assign_port` fills in the launch's own).
        log_dir: the folder for per-rank logs (``RUN/ranks``).
    Returns:
        ``[python, "-m", "torch.distributed.run", "--nnodes=N", "--node_rank=R", "--nproc_per_node=G",
        "--master_addr=A", "--master_port=P", "--log_dir=D", "--tee=3"]``.
    """
    return [str(python), "-m", LAUNCHER_MODULE, f"--nnodes={topology.nnodes}", f"--node_rank={topology.node_rank}",
            f"--nproc_per_node={topology.gpus}", f"--master_addr={topology.master_addr}", f"--master_port={port}",
            f"--log_dir={log_dir}", "--tee=3"]


def free_port(avoid: Sequence[int] = ()) -> int:
    """A TCP port no process listens on now (the kernel's pick for a bind to port 0 on every interface,
    as torch's own ``get_free_port`` does), other than ``avoid`` and :data:`DEFAULT_PORT`."""
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("", 0))
            port = sock.getsockname()[1]
        if port not in avoid and port != DEFAULT_PORT:
            return port
    raise BadInput("no free TCP port for the rendezvous was found", "give one with --master-port PORT")


def _ports_of_live_runs() -> set[int]:
    """Rendezvous ports recorded by runs that are starting or running (:data:`PORT_FIELD`)."""
    return {r.data[PORT_FIELD] for r in list_runs()
            if isinstance(r.data.get(PORT_FIELD), int) and r.status in (*ACTIVE, "planned")}


def assign_port(run: Run, topology: Topology, argv: Sequence[str]) -> list[str]:
    """Choose this launch's rendezvous port, record it in ``run.json`` (:data:`PORT_FIELD`) and put it in ``argv``.

    The given ``--master-port`` is kept; several machines without one use :data:`DEFAULT_PORT` (all
    must agree); otherwise a free port (:func:`free_port`) that no starting or running run of this
    ``VLHUB_HOME`` has recorded, chosen and recorded under one lock so two launches never share it.

    Args:
        run: the run being launched (status ``planned`` or being resumed).
        topology: the launch.
        argv: a command holding ``--master_port=N`` (from :func:`launcher_argv`).
    Returns:
        ``argv`` with the chosen port.
    """
    with FileLock(str(runs_dir() / ".ports.lock")):
        port = topology.master_port or (DEFAULT_PORT if topology.nnodes > 1 else free_port(
            sorted(_ports_of_live_runs())))
        run.update(**{PORT_FIELD: port})
    return [f"--master_port={port}" if a.startswith("--master_port=") else a for a in argv]


# ------------------------------------------------------------------ per-rank logs and errors
def _launch_folder(log_dir: Path) -> Path | None:
    """The newest attempt folder of the newest launch under ``log_dir`` (``<launch>/attempt_N``)."""
    attempts = [p for p in Path(log_dir).glob("*/attempt_*") if p.is_dir() and p.name[8:].isdigit()]
    if not attempts:
        return None
    newest = max({p.parent for p in attempts}, key=lambda p: p.stat().st_mtime)
    return max((p for p in attempts if p.parent == newest), key=lambda p: int(p.name[8:]))


def rank_logs(log_dir: Path) -> list[dict[str, Any]]:
    """The per-rank files of the latest launch's latest attempt, by local rank.

    Returns:
        ``[{"rank", "stdout", "stderr", "error"}]``: ``rank`` the local rank (the folder's name), the
        log paths, and ``error`` the message of the rank's ``error.json`` (its last line), else ``None``.
    """
    attempt = _launch_folder(log_dir)
    if attempt is None:
        return []
    out = []
    for folder in sorted((p for p in attempt.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)):
        error_file = folder / "error.json"
        out.append({"rank": int(folder.name), "stdout": str(folder / "stdout.log"),
                    "stderr": str(folder / "stderr.log"),
                    "error": _error_json(error_file) if error_file.is_file() else None})
    return out


def _error_json(path: Path) -> str | None:
    try:
        message = json.loads(path.read_text(encoding="utf-8", errors="replace")).get("message")
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(message, dict):
        message = message.get("message")
    lines = str(message or "").strip().splitlines()
    return lines[-1].strip() if lines else None


def _text_tail(path: Path, size: int = 256 * 1024) -> list[str]:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - size))
            return handle.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return []


def first_error(lines: Sequence[str]) -> str | None:
    """The first exception line that ends a traceback in a rank's output (``[rankN]:`` prefixes dropped).

    Returns:
        e.g. ``"ModuleNotFoundError: No module named 'mmengine'"`` (the first: the cause of a chained
        exception, not the errors it set off), or ``None``.
    """
    in_traceback = False
    for raw in lines:
        line = RANK_PREFIX.sub("", raw.rstrip()).strip()
        if line.startswith(TRACEBACK):
            in_traceback = True
        elif in_traceback and EXCEPTION.match(line):
            return line
    return None


def root_cause(console_log: Path) -> dict[str, Any] | None:
    """The failed rank torchrun names in the ``ChildFailedError`` summary at the end of its console output.

    Returns:
        ``{"rank": global rank, "local_rank", "exitcode": text, "traceback": text}`` of the first observed
        failure, or ``None`` when the log holds no such summary.
    """
    lines = _text_tail(console_log)
    starts = [n for n, line in enumerate(lines) if line.strip() == ROOT_CAUSE]
    if not starts:
        return None
    found: dict[str, Any] = {}
    for line in lines[starts[-1] + 1:]:
        if line.startswith("===="):
            break
        match = SUMMARY_FIELD.match(line)
        if match:
            found.setdefault(match.group(1), match.group(2))
    ranks = LOCAL_RANK.match(found.get("rank", ""))
    if not ranks:
        return None
    return {"rank": int(ranks.group(1)), "local_rank": int(ranks.group(2)), "exitcode": found.get("exitcode", ""),
            "traceback": found.get("traceback", "")}


def rank_errors(log_dir: Path, console_log: Path) -> list[str]:
    """The error of each rank that failed, the rank that failed first (torchrun's root cause) first.

    A rank's error is its ``error.json`` message, else the first exception of its ``stderr.log``
    (:func:`first_error`); for the root cause without either (a rank killed by a signal), torchrun's
    own words (``Signal 9 (SIGKILL) received by PID 123``, or its exit code).

    Args:
        log_dir: the launcher's ``--log_dir`` (``RUN/ranks``).
        console_log: the launcher's console output (``RUN/train.log``), which ends with its summary.
    Returns:
        ``["rank 1: ValueError: bad batch", ...]`` (global rank for the root cause, local rank for the
        others); empty when no rank left an error.
    """
    cause = root_cause(console_log)
    errors: dict[int, str] = {}
    for rank in rank_logs(log_dir):
        error = rank["error"] or first_error(_text_tail(Path(rank["stderr"])))
        if error:
            errors[rank["rank"]] = f"rank {rank['rank']}: {error}"
    if cause is None:
        return list(errors.values())
    said = errors.pop(cause["local_rank"], "").split(": ", 1)[-1]
    if not said:
        said = cause["traceback"] if cause["traceback"] and "To enable traceback" not in cause["traceback"] else \
            f"exited with code {cause['exitcode'].split(' ')[0] or '?'}"
    return [f"rank {cause['rank']}: {said}", *errors.values()]
