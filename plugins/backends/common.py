"""Checks shared by the backends that load a model folder."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from vlhub.core.errors import BadInput
from vlhub.core.types import Turn
from vlhub.core.worker import WorkerProcess


def model_folder(model: str) -> Path:
    """The resolved model folder, or a one-line error when it is not one."""
    folder = Path(model).expanduser()
    if not folder.is_dir():
        raise BadInput(f"{model}: no such model folder",
                       "give the folder written by `vlhub convert` (or an official InternVL2 download)")
    if not (folder / "config.json").is_file():
        raise BadInput(f"{model}: not a model folder (no config.json)",
                       "give the folder written by `vlhub convert` (config.json, weights, remote code)")
    return folder.resolve()


def lease_args(options: Mapping[str, Any]) -> list[str]:
    """``--lease FILE --lease-ttl S`` for a worker script when the launcher gave a lease (the ``lease`` and
    ``lease_ttl`` options :mod:`vlhub.core.chat` sets on the models it keeps loaded), else nothing."""
    if not options.get("lease"):
        return []
    return ["--lease", str(options["lease"]), "--lease-ttl", str(float(options.get("lease_ttl") or 180))]


def worker_alive(worker: WorkerProcess) -> bool:
    """Whether a worker process still runs."""
    return worker.proc.poll() is None


def turns_payload(history: Sequence[Turn]) -> list[dict[str, Any]]:
    """The history as JSON-ready dicts (image paths absolute)."""
    return [{"role": t.role, "text": t.text, "images": [str(Path(i).resolve()) for i in t.images]}
            for t in history]
