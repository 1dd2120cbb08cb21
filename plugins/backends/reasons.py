"""Why a built-in chat backend cannot run here (``ChatBackend.missing``), as keyed messages in English and 中文.

Each is a :class:`vlhub.core.messages.Keyed` line: the CLI prints its English, the Chat page its Chinese.
"""
from __future__ import annotations

from vlhub.core import messages

messages.register("backends.no_serve_env",
                  ("the serve stage environment (LMDeploy) is not installed",
                   "run `vlhub env create serve`, or use --backend transformers (CPU)"),
                  ("serve 阶段环境（LMDeploy）尚未安装",
                   "请运行 `vlhub env create serve`，或改用 transformers 后端（CPU，`--backend transformers`）"))
messages.register("backends.no_gpu",
                  ("LMDeploy needs an NVIDIA GPU and none is visible", "use --backend transformers (CPU) or openai"),
                  ("LMDeploy 需要 NVIDIA GPU，但这里看不到任何 GPU", "请改用 transformers 后端（CPU）或 openai 后端"))
messages.register("backends.no_stage_env",
                  ("no stage environment is installed (transformers runs in serve or train)",
                   "run `vlhub env create train` or `vlhub env use train --python PATH`"),
                  ("尚未安装任何阶段环境（transformers 在 serve 或 train 环境中运行）",
                   "请运行 `vlhub env create train` 或 `vlhub env use train --python PATH`"))


def no_serve_env() -> messages.Keyed:
    """LMDeploy's stage environment (``serve``) is missing."""
    return messages.Keyed("backends.no_serve_env")


def no_gpu() -> messages.Keyed:
    """LMDeploy needs a GPU and none is visible."""
    return messages.Keyed("backends.no_gpu")


def no_stage_env() -> messages.Keyed:
    """Neither the ``serve`` nor the ``train`` stage environment is installed (the transformers backend)."""
    return messages.Keyed("backends.no_stage_env")
