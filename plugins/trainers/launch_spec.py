"""The exact argv and environment of a training launch.

One GPU: ``ENV/bin/xtuner train CONFIG --work-dir WORK --deepspeed deepspeed_zero2`` (xtuner's entry point
then runs ``python tools/train.py ...``, with the env's ``bin/`` first on ``PATH``). Several GPUs or
machines: xtuner's own ``tools/train.py`` under torch's launcher run by the env's Python
(:mod:`.distributed`), as xtuner's entry point would start it but without its ``torchrun`` from ``PATH``::

    ENV_PYTHON -m torch.distributed.run --nnodes=1 --node_rank=0 --nproc_per_node=2 --master_addr=127.0.0.1 \
        --master_port=PORT --log_dir=RUN/ranks --tee=3  SITE/xtuner/tools/train.py CONFIG --work-dir WORK \
        --deepspeed deepspeed_zero2 --launcher pytorch

(``PORT`` is chosen again at each start, :func:`.distributed.assign_port`).
"""
from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from vlhub.core.errors import MissingDependency
from vlhub.core.stage import PROCESS_ENV, clean_env

from . import distributed
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


#: Where xtuner 0.2.0 keeps the script its ``train`` mode runs (``entry_point.py``: ``modes["train"]``).
TRAIN_SCRIPT = ("tools", "train.py")
_FIND_XTUNER = "import importlib.util as u; s = u.find_spec('xtuner'); print(s.submodule_search_locations[0])"


def train_script(python: Path) -> Path:
    """xtuner's ``tools/train.py`` in the environment of ``python`` (found without importing xtuner).

    Raises:
        MissingDependency: xtuner is not installed there.
    """
    proc = subprocess.run([str(python), "-c", _FIND_XTUNER], capture_output=True, text=True, timeout=60,
                          env=clean_env())
    found = Path(proc.stdout.strip()).joinpath(*TRAIN_SCRIPT) if proc.returncode == 0 else None
    if found is None or not found.is_file():
        raise MissingDependency(f"xtuner's {'/'.join(TRAIN_SCRIPT)} is not in the train environment ({python})",
                                "repair it with `vlhub env create train`")
    return found


def command(s: Settings, python: Path, config: Path, work_dir: Path, run_dir: Path) -> list[str]:
    """The argv that trains (``--launch-command`` replaces it, with its placeholders filled).

    Args:
        s: the run's settings.
        python: the train stage environment's interpreter (its ``bin/xtuner`` runs one GPU).
        config, work_dir, run_dir: the run's ``config.py``, ``work/`` and folder.
    Returns:
        The argv; for several GPUs its ``--master_port=`` item holds a free port now, chosen again at start.
    Raises:
        MissingDependency: several GPUs and xtuner's ``tools/train.py`` is not in the environment.
    """
    if s.launch_command:
        text = s.launch_command.format(config=config, work_dir=work_dir, run_dir=run_dir)
        return shlex.split(text)
    args = [str(config), "--work-dir", str(work_dir)]
    if s.deepspeed != "none":
        args += ["--deepspeed", f"deepspeed_{s.deepspeed}"]
    topology = s.topology
    if not topology.distributed:
        return [str(python.parent / "xtuner"), "train", *args]
    port = topology.master_port or (distributed.DEFAULT_PORT if topology.nnodes > 1 else distributed.free_port())
    return [*distributed.launcher_argv(python, topology, port, run_dir / RANKS), str(train_script(python)), *args,
            "--launcher", "pytorch"]


def environment(s: Settings, code_dir: Path, run_dir: Path) -> dict[str, str]:
    """Variables set on top of the train stage environment for the launch (``CUDA_VISIBLE_DEVICES`` for
    ``--devices``)."""
    return {"PYTHONPATH": str(code_dir), **MULTICAST_OFF, **TORCH_LOAD_ENV, **distributed.environment(s.topology)}
