"""Scripts that run INSIDE a stage environment, and the stage environments the built-in plugins declare.

Each worker is run as a file, with the stage's Python (:mod:`vlhub.core.worker`), so it imports
only the standard library, the stage's packages and its sibling ``_protocol`` module. This
package itself is imported by vlhub only: the built-in trainer, converters and chat backends
take their script paths from :func:`script` and their ``stage_env`` from here.
"""
from __future__ import annotations

from pathlib import Path

from vlhub.core.stage import StageEnv

FOLDER = Path(__file__).resolve().parent

#: xtuner 0.2.0 + DeepSpeed (training, config inspection, conversion); pins: ``vlhub[train]``.
TRAIN_ENV = StageEnv(
    "train", "xtuner + DeepSpeed: training, config checks and checkpoint conversion",
    ("torch", "torchvision", "xtuner", "mmengine", "deepspeed", "transformers", "peft", "tensorboard"),
    extra="train", install_env={"DS_BUILD_OPS": "0"})  # DeepSpeed without compiled ops
#: LMDeploy (serving for chat); pins: ``vlhub[serve]``.
SERVE_ENV = StageEnv("serve", "LMDeploy: serving a model for chat", ("lmdeploy", "torch", "transformers"),
                     extra="serve")
#: ms-swift 4.x + DeepSpeed (the ``swift`` trainer and its converter); pins: ``vlhub[swift]``.
SWIFT_ENV = StageEnv("swift", "ms-swift + DeepSpeed: training InternVL2/2.5/3/3.5 and merging LoRA (swift export)",
                     ("ms-swift", "torch", "torchvision", "transformers", "peft", "trl", "timm", "deepspeed"),
                     extra="swift", install_env={"DS_BUILD_OPS": "0"})  # DeepSpeed without compiled ops


def script(name: str) -> Path:
    """The path of worker script ``name`` (``train_inspect`` -> ``.../workers/train_inspect.py``)."""
    return FOLDER / f"{name}.py"
