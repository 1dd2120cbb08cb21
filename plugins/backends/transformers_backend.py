"""The ``transformers`` chat backend: the model folder's own ``chat`` code, on CPU or GPU.

Runs :mod:`workers/chat_transformers` (through :class:`vlhub.core.worker.WorkerProcess`) in whichever
stage environment is installed
(serve first, then train); slow on CPU but needs no GPU.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from vlhub.core import stage
from vlhub.core.options import translated
from vlhub.core.errors import BadInput
from vlhub.core.types import GenerationSettings, Option, Turn
from vlhub.core.worker import WorkerProcess

from ..workers import SERVE_ENV, TRAIN_ENV, script
from . import labels_zh, reasons
from .common import lease_args, model_folder, turns_payload, worker_alive


def _stage_python(choice: str) -> Path | None:
    names = (choice,) if choice else (SERVE_ENV.name, TRAIN_ENV.name)
    return next((p for p in map(stage.python_for, names) if p is not None), None)


class TransformersSession:
    """One worker process holding the model; ``last`` says what the model was given in the last turn, ``finish``
    how its generation ended (``reason`` ``stop``/``length``, ``tokens``, the last ``token``, the folder's ``eos``);
    ``engine`` is what answers (``transformers``, as the worker reports it)."""

    def __init__(self, worker: WorkerProcess) -> None:
        self.worker = worker
        self.info = worker.wait_for("ready")
        self.last: dict[str, Any] = {}
        self.finish: dict[str, Any] = {}
        self.engine = str(self.info.get("engine") or "transformers")

    def prepare(self, images: Sequence[str | Path]) -> None:
        """Start tiling ``images`` in the worker, in the background (attached before their question is asked;
        the worker tiles each unchanged file once)."""
        self.worker.send({"op": "prepare", "images": [str(Path(p).resolve()) for p in images]})

    def reply(self, history: Sequence[Turn], settings: GenerationSettings) -> Iterator[str]:
        """Stream the answer to the last user turn of ``history``."""
        self.worker.send({"op": "reply", "history": turns_payload(history), "settings": asdict(settings)})
        events = self.worker.events()
        try:
            for message in events:
                if message["event"] == "done":
                    self.last = message
                    return
                if message["event"] == "finish":
                    self.finish = {k: v for k, v in message.items() if k != "event"}
                if message["event"] == "chunk":
                    yield message["text"]
        except GeneratorExit:  # the caller stopped reading: let the answer finish so the next turn starts clean
            next(m for m in events if m["event"] == "done")
            raise

    def alive(self) -> bool:
        """Whether the worker still runs (it ends by itself when its lease expires)."""
        return worker_alive(self.worker)

    def pids(self) -> dict[str, int]:
        """The worker's process id (for the launcher's record of loaded models)."""
        return {"pid": self.worker.proc.pid}

    def close(self) -> None:
        """End the session (and its worker or server)."""
        self.worker.close()


class TransformersBackend:
    """The ``transformers`` chat backend (:class:`vlhub.core.types.ChatBackend`)."""

    name = "transformers"
    description = "The model folder's own chat code through transformers (CPU or GPU, in a stage env)."
    options = translated((
        Option("env", "Stage environment to run in (default: serve if installed, else train).",
               choices=("serve", "train"), default=""),
        Option("device", "auto, cpu or cuda.", choices=("auto", "cpu", "cuda"), default="auto"),
        Option("max_tiles", "Most 448px tiles per image (default: the model's max_dynamic_patch).", int),
    ), "zh", labels_zh.TRANSFORMERS)

    def missing(self) -> str | None:
        """``None`` when the backend can run here, else why not and the fix (one line)."""
        if _stage_python("") is None:
            return reasons.no_stage_env()
        return None

    def open(self, model: str, options: Mapping[str, Any]) -> TransformersSession:
        """Load the model folder in a worker (serve env, else train env).

        Raises:
            BadInput: not a model folder, or no stage environment. VlhubError: the worker failed to load it.
        """
        folder = model_folder(model)
        env = options.get("env") or ""
        python = _stage_python(env)
        if python is None:
            raise BadInput(f"the {env or 'serve/train'} stage environment is not installed",
                           f"run `vlhub env create {env or 'train'}`")
        args = [str(folder), "--device", options.get("device") or "auto"]
        if options.get("max_tiles"):
            args += ["--max-tiles", str(int(options["max_tiles"]))]
        args += lease_args(options)
        worker = WorkerProcess(python, script("chat_transformers"), args)
        try:
            return TransformersSession(worker)
        except BaseException:
            worker.close()
            raise
