"""The exact argv and environment of a training launch.

One GPU: ``xtuner train CONFIG --deepspeed deepspeed_zero2 --work-dir WORK``. Several GPUs or
machines: the same command with ``NPROC_PER_NODE``/``NNODES``/``NODE_RANK``/``ADDR``/``PORT``,
which make xtuner's entry point start ``torchrun`` itself; torchrun's own ``PET_LOG_DIR`` and
``PET_TEE`` environment variables give each rank a log file under ``RUN/ranks`` while rank
output still reaches ``train.log``.
"""
from __future__ import annotations

import shlex
from pathlib import Path

from vlhub.core.stage import PROCESS_ENV

from .run_files import RANKS
from .settings import Settings

#: NVLink multicast stays off in every process (shown in the plan, set again by the stage env).
MULTICAST_OFF = {k: PROCESS_ENV[k] for k in ("NCCL_NVLS_ENABLE", "TORCH_SYMM_MEM_DISABLE_MULTICAST", "NVSHMEM_DISABLE_NVLS")}
#: torch >= 2.6 loads with ``weights_only=True`` unless told otherwise; xtuner 0.2.0's resume
#: (``get_seed_from_checkpoint``) and mmengine 0.10.6's ``load_checkpoint`` call ``torch.load`` without
#: the argument on the run's own checkpoints, which hold mmengine ``ConfigDict``s. This torch switch
#: restores ``weights_only=False`` only where a call site does not choose (seen on the GPU machine,
#: torch 2.11: `vlhub train --resume` failed with "Weights only load failed").
TORCH_LOAD_ENV = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}


def command(s: Settings, xtuner: Path, config: Path, work_dir: Path, run_dir: Path) -> list[str]:
    """The argv that trains (``--launch-command`` replaces it, with its placeholders filled)."""
    if s.launch_command:
        text = s.launch_command.format(config=config, work_dir=work_dir, run_dir=run_dir)
        return shlex.split(text)
    argv = [str(xtuner), "train", str(config), "--work-dir", str(work_dir)]
    if s.deepspeed != "none":
        argv += ["--deepspeed", f"deepspeed_{s.deepspeed}"]
    return argv


def environment(s: Settings, code_dir: Path, run_dir: Path) -> dict[str, str]:
    """Variables set on top of the train stage environment for the launch."""
    env = {"PYTHONPATH": str(code_dir), **MULTICAST_OFF, **TORCH_LOAD_ENV}
    if s.world_size > 1:
        env.update(NPROC_PER_NODE=str(s.gpus), NNODES=str(s.nnodes), NODE_RANK=str(s.node_rank),
                   ADDR=s.master_addr, PORT=str(s.master_port),
                   PET_LOG_DIR=str(run_dir / RANKS), PET_TEE="3")
    return env
