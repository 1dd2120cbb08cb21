"""What a conversion starts from: a run id or a checkpoint path, resolved to checkpoint + config.

Checkpoints are what xtuner (mmengine) writes: an ``iter_N.pth`` file (``torch.save`` of a dict
with ``state_dict``) or, with DeepSpeed, an ``iter_N.pth/`` folder holding
``mp_rank_00_model_states.pt`` (ZeRO-1/2) or ``zero_pp_rank_R_mp_rank_00_model_states.pt`` (ZeRO-3)
and one ``*_optim_states.pt`` per rank (:mod:`.deepspeed` checks what xtuner's loader reads).
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

from . import deepspeed

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
    """``file`` or ``deepspeed`` for a checkpoint, or a one-line error naming what was expected.

    Besides "not a checkpoint" the error tells the usual mix-ups apart: a file inside a DeepSpeed
    checkpoint folder (pass the folder), a training work folder (its checkpoints are listed), a model
    folder (already converted), and a path with a stray trailing ``:`` or ``,`` (pasted from ``ls -R``).
    """
    if path.is_dir():
        if deepspeed.is_checkpoint_folder(path):
            return "deepspeed"
        _refuse_folder(path)
    if path.is_file():
        folder = path.parent
        if path.name.endswith(deepspeed.STATE_SUFFIXES) or deepspeed.is_checkpoint_folder(folder):
            raise BadInput(f"{path} is a file inside the DeepSpeed checkpoint folder {folder}/",
                           f"pass the folder {folder.name}/, not a file inside it: vlhub convert {folder} --out OUT")
        if path.name in ("latest", "last_checkpoint") and checkpoints_in(folder):
            _refuse_folder(folder, given=path)
        if _is_torch_archive(path):
            return "file"
        raise BadInput(f"{path} is not a checkpoint: expected {EXPECTED} (this file is not a torch.save archive)",
                       "pass a checkpoint from the run's work folder, or a run id (`vlhub runs`)")
    _refuse_missing(path)


def _is_torch_archive(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith("data.pkl") for n in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _step(path: Path) -> int:
    match = re.search(r"(\d+)", path.name)
    return int(match.group(1)) if match else -1


def checkpoints_in(folder: Path, depth: int = 2) -> list[Path]:
    """Checkpoints under ``folder`` (``iter_N.pth`` files and DeepSpeed folders), oldest first."""
    found: list[Path] = []
    try:
        children = sorted(folder.iterdir())
    except OSError:
        return found
    for child in children:
        if child.is_dir() and deepspeed.is_checkpoint_folder(child):
            found.append(child)
        elif child.is_file() and _STEP.search(child.name):
            found.append(child)
        elif child.is_dir() and depth > 1 and not child.name.startswith("."):
            found += checkpoints_in(child, depth - 1)
    return sorted(found, key=lambda p: (_step(p), str(p)))


def _named_last(folder: Path, found: list[Path]) -> Path | None:
    """The checkpoint mmengine's ``last_checkpoint`` or DeepSpeed's ``latest`` names, else the newest."""
    for record in [*folder.glob("last_checkpoint"), *folder.glob("*/last_checkpoint"), *folder.glob("latest")]:
        try:
            named = Path(record.read_text(encoding="utf-8").strip()).name
        except (OSError, UnicodeDecodeError):
            continue
        same = [p for p in found if p.name == named]
        if same:
            return next((p for p in same if p.parent == record.parent), same[0])
    return found[-1] if found else None


def _shown(path: Path) -> str:
    return f"{path.name}/" if path.is_dir() else path.name


def _refuse_folder(path: Path, given: Path | None = None) -> None:
    found = checkpoints_in(path)
    if found:
        last = _named_last(path, found)
        listed = [str(p.relative_to(path)) + ("/" if p.is_dir() else "") for p in found]
        listing = ", ".join(listed) if len(listed) <= 8 else f"{', '.join(listed[:3])}, ... {', '.join(listed[-3:])}"
        try:
            run = _run_of(path.resolve() / "x")
        except BadInput:
            run = None
        also = f", or the run id {run.id} (its last checkpoint)" if run is not None else ""
        what = f"{given} is a bookkeeping file of the work folder {path}/" if given else \
            f"{path} is a training work folder, not a checkpoint"
        raise BadInput(f"{what}: it holds {len(found)} checkpoint{'s' if len(found) != 1 else ''}: {listing} "
                       f"(last: {last.relative_to(path)})",
                       f"pass one checkpoint, e.g. the last: vlhub convert {path / last.relative_to(path)} --out OUT"
                       f"{also}")
    if (path / "config.json").is_file() and (any(path.glob("*.safetensors")) or any(path.glob("*.bin"))):
        raise BadInput(f"{path} is a model folder (config.json and weights), not a training checkpoint",
                       "it needs no conversion: chat with it (`vlhub chat FOLDER`) or publish it; `vlhub convert` "
                       "takes a run id or an iter_N.pth checkpoint")
    raise BadInput(f"{path} is not a checkpoint: expected {EXPECTED} (no *model_states.pt in this folder)",
                   "pass a checkpoint from the run's work folder, or a run id (`vlhub runs`)")


def _refuse_missing(path: Path) -> None:
    text = str(path)
    trimmed = text.strip("'\"` ").rstrip(":;,'\"` ")
    if trimmed != text and trimmed and Path(trimmed).exists():
        stray = text[text.index(trimmed) + len(trimmed):]
        what = f"ends in a stray {stray!r}" if stray.strip() else "has stray quotes"
        raise BadInput(f"{text!r} does not exist, but {trimmed} does (the path {what})",
                       f"drop the stray characters (pasted from `ls -R`?): vlhub convert {trimmed} --out OUT")
    parent = path.parent
    found = checkpoints_in(parent, depth=1) if parent.is_dir() else []
    if found:
        listed = ", ".join(_shown(p) for p in found[-6:])
        raise BadInput(f"{path}: no such file or folder; {parent}/ holds the checkpoints {listed}",
                       f"pass one of them, e.g. vlhub convert {found[-1]} --out OUT")
    raise BadInput(f"{path}: no such file or folder (expected {EXPECTED}, or a run id)",
                   "`vlhub runs` lists run ids")


def _is_complete(path: Path) -> bool:
    return path.is_file() or deepspeed.is_checkpoint_folder(path)


def last_checkpoint(folder: Path) -> Path | None:
    """The newest ``iter_N.pth`` under ``folder`` (mmengine's ``last_checkpoint`` first)."""
    for record in sorted(folder.rglob("last_checkpoint")):
        named = Path(record.read_text(encoding="utf-8").strip())
        if not named.is_absolute():
            named = record.parent / named
        if not named.exists():   # written on the training machine: the same name beside the record
            named = record.parent / named.name
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
    trimmed = str(ref).strip("'\"` ").rstrip(":;,'\"` ")
    if not path.exists() and trimmed != str(ref):
        if trimmed and "/" not in trimmed and not Path(trimmed).exists():
            try:
                runs.load_run(trimmed)
            except BadInput:
                pass
            else:
                raise BadInput(f"{str(ref)!r} is no run id, but {trimmed} is (stray characters around it)",
                               f"drop them: vlhub convert {trimmed} --out OUT")
        _refuse_missing(path)
    if path.exists() or "/" in str(ref):
        layout = checkpoint_layout(path)
        path = path.resolve()
        return path, layout, _run_of(path)
    try:
        run = runs.load_run(str(ref))
    except BadInput:
        raise BadInput(f"{str(ref)!r} is neither a checkpoint path nor a run id (expected {EXPECTED}, or a run id)",
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
    if explicit is None and recorded and not Path(recorded).is_file():
        raise BadInput(f"run {run.id} trained with the config {recorded}, which no longer exists",
                       "pass the training config with --config CONFIG.py (mmengine keeps a copy in the work folder)")
    chosen = explicit or (Path(recorded) if recorded else _config_beside(checkpoint))
    return Source(checkpoint, chosen, layout, run)


def check_checkpoint(source: Source, *, strict: bool = False) -> None:
    """Refuse a DeepSpeed checkpoint xtuner's loader cannot read (:func:`deepspeed.check_folder`), up front.

    Args:
        source: the resolved source.
        strict: also refuse damaged or placeholder state files (run after the cheaper checks).
    Raises:
        BadInput: the missing files are named; the fix names a complete checkpoint of the same run when there is one.
    """
    if source.layout != "deepspeed":
        return
    try:
        deepspeed.check_folder(source.checkpoint, strict=strict)
    except BadInput as exc:
        hint = exc.hint + _elsewhere(source)
        raise BadInput(exc.message, hint) from None


def _elsewhere(source: Source) -> str:
    ckpt = source.checkpoint
    saving = source.run is not None and source.run.data.get("status") in ("running", "starting", "created")
    text = f"; if run {source.run.id} is still saving this checkpoint, wait for it" if saving else ""
    for other in reversed(checkpoints_in(ckpt.parent, depth=1)):
        if other == ckpt:
            continue
        try:
            if other.is_dir():
                deepspeed.check_folder(other)
        except BadInput:
            continue
        return f"{text}; or convert an earlier complete checkpoint: vlhub convert {other} --out OUT"
    return text


def check_output(out: Path, source: Source, force: bool) -> Path:
    """The absolute output folder, refused when it would overwrite or nest in the checkpoint."""
    out = Path(out).expanduser().resolve()
    ckpt = source.checkpoint
    if out == ckpt or ckpt in out.parents or out in ckpt.parents:
        raise BadInput(f"--out {out} is inside (or contains) the checkpoint {ckpt}",
                       "choose an output folder outside the checkpoint, e.g. next to the run")
    check_replaceable(out, PROVENANCE, force=force)
    return out
