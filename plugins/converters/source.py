"""What a conversion starts from: a run id or a checkpoint path, resolved to checkpoint + config.

Checkpoints are what xtuner (mmengine) writes: an ``iter_N.pth`` file (``torch.save`` of a dict
with ``state_dict``) or, with DeepSpeed, an ``iter_N.pth/`` folder holding
``mp_rank_00_model_states.pt`` (ZeRO-1/2) or ``zero_pp_rank_0_mp_rank_00_model_states.pt`` (ZeRO-3).
"""
from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from vlhub.core import runs
from vlhub.core.errors import BadInput
from vlhub.core.fsutil import check_replaceable
from vlhub.core.provenance import PROVENANCE

EXPECTED = ("an xtuner checkpoint: an iter_N.pth file or a DeepSpeed iter_N.pth/ folder "
            "holding mp_rank_00_model_states.pt")
_STEP = re.compile(r"iter_(\d+)\.pth$")
#: Python files next to checkpoints that are not training configs.
_NOT_CONFIGS = {"zero_to_fp32.py"}


@dataclass
class Source:
    """A checkpoint, the config it was trained with, and its run (when known)."""

    checkpoint: Path
    config: Path
    layout: str                     # "file" or "deepspeed"
    run: runs.Run | None = None

    @property
    def step(self) -> int | None:
        """The checkpoint's iteration (``iter_N.pth``), when its name tells."""
        match = _STEP.search(self.checkpoint.name)
        return int(match.group(1)) if match else None


def checkpoint_layout(path: Path) -> str:
    """``file`` or ``deepspeed`` for a checkpoint, or a one-line error naming what was expected."""
    if path.is_dir():
        if any(path.glob("*model_states.pt")):
            return "deepspeed"
        raise BadInput(f"{path} is not a checkpoint: expected {EXPECTED} (no *model_states.pt in this folder)",
                       "pass a checkpoint from the run's work folder, or a run id (`vlhub runs`)")
    if path.is_file():
        if zipfile.is_zipfile(path) and any(n.endswith("data.pkl") for n in zipfile.ZipFile(path).namelist()):
            return "file"
        raise BadInput(f"{path} is not a checkpoint: expected {EXPECTED} (this file is not a torch.save archive)",
                       "pass a checkpoint from the run's work folder, or a run id (`vlhub runs`)")
    raise BadInput(f"{path}: no such file or folder (expected {EXPECTED}, or a run id)",
                   "`vlhub runs` lists run ids")


def _is_complete(path: Path) -> bool:
    return path.is_file() or any(path.glob("*model_states.pt"))


def last_checkpoint(folder: Path) -> Path | None:
    """The newest complete ``iter_N.pth`` under ``folder`` (mmengine's ``last_checkpoint`` first)."""
    for record in sorted(folder.rglob("last_checkpoint")):
        named = Path(record.read_text(encoding="utf-8").strip())
        if named.exists() and _is_complete(named):
            return named.resolve()
    found = [p for p in folder.rglob("iter_*.pth") if _STEP.search(p.name) and _is_complete(p)]
    return max(found, key=lambda p: int(_STEP.search(p.name).group(1))).resolve() if found else None


def _config_beside(checkpoint: Path) -> Path:
    candidates = sorted(p for p in checkpoint.parent.glob("*.py") if p.name not in _NOT_CONFIGS)
    if len(candidates) == 1:
        return candidates[0].resolve()
    found = ", ".join(p.name for p in candidates) or "none"
    raise BadInput(f"cannot tell which config trained {checkpoint} (python files beside it: {found})",
                   "pass the training config with --config CONFIG.py")


def _run_of(checkpoint: Path) -> runs.Run | None:
    for folder in checkpoint.parents:
        if (folder / runs.RUN_FILE).exists():
            return runs.load_run(folder)
    return None


def locate(ref: str | Path) -> tuple[Path, str, runs.Run | None]:
    """The checkpoint a run id or checkpoint path names: ``(checkpoint, layout, run)``.

    Raises:
        BadInput: ``ref`` is neither a checkpoint (the message says what one looks like) nor a run id,
            or the run has no complete checkpoint yet.
    """
    path = Path(ref).expanduser()
    if path.exists() or "/" in str(ref):
        layout = checkpoint_layout(path)
        path = path.resolve()
        return path, layout, _run_of(path)
    try:
        run = runs.load_run(str(ref))
    except BadInput:
        raise BadInput(f"{ref!r} is neither a checkpoint path nor a run id (expected {EXPECTED}, or a run id)",
                       "`vlhub runs` lists run ids; check the path") from None
    checkpoint = last_checkpoint(run.dir)
    if checkpoint is None:
        raise BadInput(f"run {run.id} has no complete checkpoint yet (expected {EXPECTED} in {run.dir})",
                       "wait for the first save (`vlhub run show`), or pass a checkpoint path")
    return checkpoint, checkpoint_layout(checkpoint), run


def resolve(ref: str | Path, config: str | Path | None = None) -> Source:
    """A run id or checkpoint path (plus an optional explicit config) as a :class:`Source`.

    The config is ``config`` when given, else the one the run recorded, else the one ``.py`` file beside
    the checkpoint.

    Raises:
        BadInput: no such ``config`` file; see :func:`locate`; or no single config beside the checkpoint.
    """
    explicit = Path(config).expanduser().resolve() if config else None
    if explicit is not None and not explicit.is_file():
        raise BadInput(f"--config {config}: no such file", "pass the xtuner config the run trained with")
    checkpoint, layout, run = locate(ref)
    recorded = run.data.get("config") if run else None
    chosen = explicit or (Path(recorded) if recorded else _config_beside(checkpoint))
    return Source(checkpoint, chosen, layout, run)


def check_output(out: Path, source: Source, force: bool) -> Path:
    """The absolute output folder, refused when it would overwrite or nest in the checkpoint."""
    out = Path(out).expanduser().resolve()
    ckpt = source.checkpoint
    if out == ckpt or ckpt in out.parents or out in ckpt.parents:
        raise BadInput(f"--out {out} is inside (or contains) the checkpoint {ckpt}",
                       "choose an output folder outside the checkpoint, e.g. next to the run")
    check_replaceable(out, PROVENANCE, force=force)
    return out
