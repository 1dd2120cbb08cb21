"""The ``lmdeploy`` chat backend: LMDeploy's ``api_server`` in the serve env, spoken to as an OpenAI endpoint.

vlhub starts the server through :mod:`workers/chat_lmdeploy` (TurboMind or the
PyTorch engine, tensor parallel, session length), waits for its health check and
then talks to it with the ``openai`` backend's session: streaming and several
images in any turn come with it. The launcher never imports lmdeploy.
"""
from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

from vlhub.core import stage
from vlhub.core.types import GenerationSettings, Option, Turn
from vlhub.core.worker import WorkerProcess

from ..workers import SERVE_ENV, script
from .common import lease_args, model_folder, worker_alive
from .openai_backend import OpenAISession


class LMDeploySession:
    """The server's worker plus an OpenAI session on it."""

    def __init__(self, worker: WorkerProcess) -> None:
        self.worker = worker
        self.info = worker.wait_for("ready")
        self.client = OpenAISession(self.info["base_url"], self.info["model"])

    def reply(self, history: Sequence[Turn], settings: GenerationSettings) -> Iterator[str]:
        """Stream the answer to the last user turn of ``history``."""
        return self.client.reply(history, settings)

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
    options = (
        Option("engine", "turbomind (falls back to pytorch when unsupported) or pytorch.",
               choices=("turbomind", "pytorch"), default="turbomind"),
        Option("tp", "Tensor parallel: GPUs per model.", int, default=1),
        Option("session_len", "Longest conversation in tokens (default: the model's).", int),
        Option("max_batch_size", "Concurrent sequences (a chat needs few; sizes the CUDA graphs).", int, default=8),
        Option("cache_max_entry_count", "Share of free GPU memory for the KV cache (two models can share a GPU).",
               float, default=0.4),
    )

    def missing(self) -> str | None:
        """``None`` when the backend can run here, else why not and the fix (one line)."""
        if stage.python_for(SERVE_ENV.name) is None:
            return ("the serve stage environment (LMDeploy) is not installed: run `vlhub env create serve`, "
                    "or use --backend transformers (CPU)")
        if stage.gpu_summary() is None:
            return "LMDeploy needs an NVIDIA GPU and none is visible: use --backend transformers (CPU) or openai"
        return None

    def open(self, model: str, options: Mapping[str, Any]) -> LMDeploySession:
        """Start LMDeploy's api_server on the model folder (serve env) and connect to it.

        Raises:
            BadInput: not a model folder. MissingDependency: no serve environment. VlhubError: the server failed.
        """
        folder = model_folder(model)
        args = [str(folder), "--model-name", folder.name, "--engine", options.get("engine") or "turbomind",
                "--tp", str(int(options.get("tp") or 1))]
        if options.get("session_len"):
            args += ["--session-len", str(int(options["session_len"]))]
        for name in ("max_batch_size", "cache_max_entry_count"):
            if options.get(name):
                args += [f"--{name.replace('_', '-')}", str(options[name])]
        args += lease_args(options)
        worker = WorkerProcess(stage.require(SERVE_ENV.name), script("chat_lmdeploy"), args)
        try:
            return LMDeploySession(worker)
        except BaseException:
            worker.close()
            raise
