"""The ``lmdeploy`` chat backend: LMDeploy's ``api_server`` in the serve env, spoken to as an OpenAI endpoint.

vlhub starts the server through :mod:`workers/chat_lmdeploy` (TurboMind or the
PyTorch engine, tensor parallel, session length), waits for its health check and
then talks to it with the ``openai`` backend's session: streaming and several
images in any turn come with it. The launcher never imports lmdeploy.

The worker reports the engine LMDeploy chose (``turbomind`` or ``pytorch``: ``engine`` of the session,
recorded with each answer). Photos are sent no larger than the model's tiling uses (its ``config.json``:
:class:`chat_tiling.Tiling`), encoded on threads and once per session; ``vlhub eval`` sends up to
``max_batch_size`` requests at once, which the server batches.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from vlhub.core import stage
from vlhub.core.options import translated
from vlhub.core.types import GenerationSettings, Option, Turn
from vlhub.core.worker import WorkerProcess

from ..workers import SERVE_ENV, script
from ..workers.chat_tiling import Tiling
from . import labels_zh, reasons
from .common import lease_args, model_folder, worker_alive
from .openai_backend import OpenAISession

#: vlhub's server settings, where they differ from ``lmdeploy serve api_server``'s own defaults (docs/chat.md).
MAX_BATCH_SIZE = 8
CACHE_MAX_ENTRY_COUNT = 0.4


def model_tiling(folder: Path) -> Tiling | None:
    """The InternVL tiling the model folder's ``config.json`` asks for (``None``: not InternVL's dynamic
    tiling, or no readable config), which LMDeploy's preprocessor applies to every image."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return Tiling.from_config(config) if isinstance(config, dict) else None


class LMDeploySession:
    """The server's worker plus an OpenAI session on it; ``engine`` is the engine LMDeploy chose
    (``turbomind`` or ``pytorch``), ``concurrency`` how many requests it batches (``max_batch_size``)."""

    def __init__(self, worker: WorkerProcess, tiling: Tiling | None = None, concurrency: int = 1) -> None:
        self.worker = worker
        self.info = worker.wait_for("ready")
        self.engine = str(self.info.get("engine") or "")
        self.concurrency = concurrency
        self.client = OpenAISession(self.info["base_url"], self.info["model"], tiling=tiling, concurrency=concurrency)
        self.client.stream_options = {"include_usage": True}  # LMDeploy's server sends usage when asked

    @property
    def finish(self) -> dict[str, Any]:
        """How the last answer ended: the server's ``finish_reason`` (``reason``) and completion ``tokens``."""
        return self.client.finish

    def reply(self, history: Sequence[Turn], settings: GenerationSettings) -> Iterator[str]:
        """Stream the answer to the last user turn of ``history``."""
        return self.client.reply(history, settings)

    def prepare(self, images: Sequence[str | Path]) -> None:
        """Start making ``images`` ready to send, in the background (attached before their question)."""
        self.client.prepare(images)

    def alive(self) -> bool:
        """Whether the worker (and so its server) still runs; it stops both when its lease expires."""
        return worker_alive(self.worker)

    def pids(self) -> dict[str, int]:
        """The worker's and the api_server's process ids (for the launcher's record of loaded models)."""
        found = {"pid": self.worker.proc.pid}
        if isinstance(self.info.get("server_pid"), int):
            found["server_pid"] = self.info["server_pid"]
        return found

    def close(self) -> None:
        """End the session (and its worker or server)."""
        self.client.close()
        self.worker.close(timeout=90)


class LMDeployBackend:
    """The ``lmdeploy`` chat backend (:class:`vlhub.core.types.ChatBackend`)."""

    name = "lmdeploy"
    description = "LMDeploy api_server (TurboMind or PyTorch engine) in the serve env; needs an NVIDIA GPU."
    stage_env = SERVE_ENV
    options = translated((
        Option("engine", "turbomind (falls back to pytorch when unsupported) or pytorch.",
               choices=("turbomind", "pytorch"), default="turbomind", labels={"zh": "推理引擎"}),
        Option("tp", "Tensor parallel: GPUs per model.", int, default=1, label="tensor parallel",
               labels={"zh": "张量并行"}),
        Option("session_len", "Longest conversation in tokens (default: the model's).", int,
               label="session length", labels={"zh": "会话长度"}),
        Option("max_batch_size", "Sequences decoded together: concurrent requests (`vlhub eval` sends this many at "
               "once); the PyTorch engine sizes its CUDA graphs by it.", int, default=MAX_BATCH_SIZE,
               label="max batch size", labels={"zh": "最大批大小"}),
        Option("cache_max_entry_count", "Share of free GPU memory for the KV cache (two models can share a GPU).",
               float, default=CACHE_MAX_ENTRY_COUNT, label="KV cache share", labels={"zh": "键值缓存显存占比"}),
        Option("eager_mode", "PyTorch engine: no CUDA graphs (starts sooner and uses less memory, decodes slower).",
               bool, default=False, label="eager mode", labels={"zh": "关闭 CUDA 图捕获"}),
    ), "zh", labels_zh.LMDEPLOY)

    def missing(self) -> str | None:
        """``None`` when the backend can run here, else why not and the fix (one line)."""
        if stage.python_for(SERVE_ENV.name) is None:
            return reasons.no_serve_env()
        if stage.gpu_summary() is None:
            return reasons.no_gpu()
        return None

    def open(self, model: str, options: Mapping[str, Any]) -> LMDeploySession:
        """Start LMDeploy's api_server on the model folder (serve env) and connect to it.

        Raises:
            BadInput: not a model folder. MissingDependency: no serve environment. VlhubError: the server failed.
        """
        folder = model_folder(model)
        batch = int(options.get("max_batch_size") or MAX_BATCH_SIZE)
        args = [str(folder), "--model-name", folder.name, "--engine", options.get("engine") or "turbomind",
                "--tp", str(int(options.get("tp") or 1)), "--max-batch-size", str(batch),
                "--cache-max-entry-count", str(float(options.get("cache_max_entry_count") or CACHE_MAX_ENTRY_COUNT))]
        if options.get("session_len"):
            args += ["--session-len", str(int(options["session_len"]))]
        if options.get("eager_mode"):
            args.append("--eager-mode")
        args += lease_args(options)
        worker = WorkerProcess(stage.require(SERVE_ENV.name), script("chat_lmdeploy"), args)
        try:
            return LMDeploySession(worker, model_tiling(folder), batch)
        except BaseException:
            worker.close()
            raise
