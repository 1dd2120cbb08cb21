"""What xtuner's loader needs from a DeepSpeed checkpoint folder, checked before any work starts.

xtuner 0.2.0 converts a DeepSpeed ``iter_N.pth/`` folder with ``guess_load_checkpoint`` ->
``xtuner.utils.zero_to_any_dtype.get_state_dict_from_zero_checkpoint(work_dir, "iter_N.pth")``.
With the tag given, DeepSpeed's ``latest`` file is never read (mmengine saves with
``save_latest=False`` anyway). What it reads, in order:

- every ``*_optim_states.pt`` (``bf16_zero_pp_rank_R_mp_rank_00_optim_states.pt``; without ``bf16_``
  for fp16/fp32 runs): they hold the fp32 master weights the state dict is rebuilt from; their
  number must equal the ``partition_count`` recorded in them (the run's data-parallel world size);
- every ``*_model_states.pt``: ``mp_rank_00_model_states.pt`` (ZeRO-1/2, rank 0 only) or
  ``zero_pp_rank_R_mp_rank_00_model_states.pt`` (ZeRO-3, one per rank); only the first one's
  parameter shapes are used, except for frozen parameters saved in them (ZeRO-3 then needs every
  rank's file). xtuner's ``train`` always saves with ``exclude_frozen_parameters``, so one
  model-states file is enough for its runs.

:func:`check_folder` asks for exactly these. The counts and shapes are read from the pickles
inside the ``torch.save`` archives with a stub unpickler (nothing is imported or run, no tensor
is read, no torch needed); a file that cannot be read that way is reported only by the
``strict`` check (run after the cheaper checks, so a placeholder file does not hide e.g. a
missing base model).
"""
from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

from vlhub.core.errors import BadInput

MODEL_12 = "mp_rank_00_model_states.pt"
_OPTIM = re.compile(r"^(bf16_)?zero_pp_rank_(\d+)_mp_rank_(\d+)_optim_states\.pt$")
_MODEL_3 = re.compile(r"^zero_pp_rank_(\d+)_mp_rank_(\d+)_model_states\.pt$")
#: Names that only ever appear inside a DeepSpeed checkpoint folder.
STATE_SUFFIXES = ("_model_states.pt", "_optim_states.pt")
#: Largest pickle (``data.pkl``) read from one archive: structure only, never tensor data.
_MAX_PICKLE = 256 * 1024 * 1024


def state_files(folder: Path) -> list[Path]:
    """The DeepSpeed state files (``*_model_states.pt``, ``*_optim_states.pt``) directly in ``folder``."""
    try:
        return sorted(p for p in folder.iterdir() if p.name.endswith(STATE_SUFFIXES) and p.is_file())
    except OSError:
        return []


def is_checkpoint_folder(folder: Path) -> bool:
    """Whether ``folder`` holds any DeepSpeed state file (complete or not)."""
    return folder.is_dir() and bool(state_files(folder))


class _Stub:
    """Stands in for every class a checkpoint's pickle names (tensors, enums, DeepSpeed objects)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _StubUnpickler(pickle.Unpickler):
    _REAL = {("collections", "OrderedDict"), ("builtins", "set"), ("builtins", "frozenset"),
             ("builtins", "slice"), ("builtins", "complex"), ("builtins", "bytearray")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._REAL:
            return super().find_class(module, name)
        return type(name, (_Stub,), {"__module__": module})   # never imports anything

    def persistent_load(self, pid: Any) -> None:   # tensor storages: not read
        return None


def peek(path: Path) -> dict[str, Any] | None:
    """The top-level dict a ``torch.save`` archive holds (tensors as stubs), or ``None`` when unreadable."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [i for i in archive.infolist() if i.filename.endswith("/data.pkl") or i.filename == "data.pkl"]
            if not pickles or pickles[0].file_size > _MAX_PICKLE:
                return None
            with archive.open(pickles[0]) as handle:
                data = _StubUnpickler(handle).load()
    except Exception:  # noqa: BLE001 - any damage means "cannot be read": reported by the strict check
        return None
    return data if isinstance(data, dict) else None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, _Stub) and value.args and isinstance(value.args[0], int):   # an IntEnum
        return value.args[0]
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, int) for v in value):
        return max(value)   # ZeRO-2: one partition count per param group; xtuner takes the largest
    return None


def _optim_facts(data: dict[str, Any] | None) -> tuple[int | None, int | None]:
    """``(world size, zero stage)`` recorded in an optimizer-states file."""
    inner = data.get("optimizer_state_dict") if data else None
    if not isinstance(inner, dict):
        return None, None
    return _int(inner.get("partition_count")), _int(inner.get("zero_stage"))


def _bf16(data: dict[str, Any] | None) -> bool | None:
    config = data.get("ds_config") if data else None
    if isinstance(config, dict) and isinstance(config.get("bf16"), dict):
        return bool(config["bf16"].get("enabled"))
    return None


def _ranks(names: list[str]) -> str:
    return ", ".join(names) if len(names) <= 6 else f"{', '.join(names[:5])} and {len(names) - 5} more"


def check_folder(folder: Path, *, strict: bool = False, elsewhere: str = "") -> dict[str, Any]:
    """Refuse a DeepSpeed checkpoint folder xtuner's loader cannot read; otherwise describe it.

    Args:
        folder: the ``iter_N.pth/`` folder.
        strict: also refuse state files that are not readable ``torch.save`` archives of DeepSpeed states.
        elsewhere: a sentence for the fix naming a complete checkpoint to convert instead (may be empty).
    Returns:
        ``{"stage": 1|2|3|None, "world_size": int|None, "files": [names]}``.
    Raises:
        BadInput: files the loader reads are missing (named, with the fix), more optimizer-state files
            than the run had ranks, or (``strict``) a state file is damaged.
    """
    names = [p.name for p in state_files(folder)]
    optim: dict[int, list[str]] = {}
    for name in names:
        match = _OPTIM.match(name)
        if match and int(match.group(3)) == 0:
            optim.setdefault(int(match.group(2)), []).append(name)
    model3 = sorted((int(m.group(1)), m.group(0)) for m in map(_MODEL_3.match, names) if m and int(m.group(2)) == 0)
    has12 = MODEL_12 in names
    model_file = MODEL_12 if has12 else (model3[0][1] if model3 else None)
    model_data = peek(folder / model_file) if model_file else None
    optim_data = peek(folder / optim[min(optim)][0]) if optim else None
    world, optim_stage = _optim_facts(optim_data)
    if world is None and model_data is not None:
        world = _int(model_data.get("dp_world_size"))
    stage = 3 if model3 else (optim_stage if optim_stage in (1, 2) else 2) if has12 else optim_stage
    bf16 = any(n.startswith("bf16_") for group in optim.values() for n in group) if optim else _bf16(model_data)
    prefix = "bf16_" if bf16 or bf16 is None else ""

    missing: list[str] = []
    if model_file is None:
        missing.append("zero_pp_rank_0_mp_rank_00_model_states.pt (any one rank's ZeRO-3 model states)" if stage == 3 else
                       MODEL_12 if stage in (1, 2) else
                       f"the model states ({MODEL_12}, or zero_pp_rank_0_mp_rank_00_model_states.pt for ZeRO-3)")
    elif stage == 3 and model_data is not None and model_data.get("frozen_param_shapes") and world:
        have = {rank for rank, _ in model3}   # frozen weights are saved in pieces: every rank's file is read
        missing += [f"zero_pp_rank_{r}_mp_rank_00_model_states.pt" for r in range(world) if r not in have]
    if world is not None:
        missing += [f"{prefix}zero_pp_rank_{r}_mp_rank_00_optim_states.pt" for r in range(world) if r not in optim]
    elif optim:
        missing += [f"{prefix}zero_pp_rank_{r}_mp_rank_00_optim_states.pt" for r in range(max(optim)) if r not in optim]
    ranks = f"{world} rank{'s' if world != 1 else ''}" if world else "rank count unknown"
    kind = f"ZeRO-{stage}, {ranks}" if stage else ranks
    where = f"the DeepSpeed checkpoint folder {folder}/ ({kind})"
    if not optim:
        others = [m for m in missing if not m.endswith("_optim_states.pt")]
        if world:
            shown = f"missing {_ranks(missing)}"
        else:
            shown = (f"no *_optim_states.pt at all (one per training rank: {prefix}zero_pp_rank_0_mp_rank_00_optim_states.pt"
                     f", ...){'; also missing ' + _ranks(others) if others else ''}")
        raise BadInput(f"{where} lacks its optimizer states, which xtuner's loader rebuilds the weights from: {shown}",
                       _fix(folder, elsewhere))
    if missing:
        raise BadInput(f"{where} lacks files xtuner's loader reads: missing {_ranks(missing)}",
                       _fix(folder, elsewhere))
    count = sum(len(group) for group in optim.values())
    if world is not None and count > world:
        extra = sorted(n for r, group in optim.items() for n in group if r >= world or len(group) > 1)
        raise BadInput(f"{where} holds {count} *_optim_states.pt files for {world} rank(s): xtuner's loader "
                       f"needs exactly one per rank (extra: {_ranks(extra)})",
                       f"move the files of the other run out of {folder.name}/ (they are not this run's ranks)")
    if strict:
        for name in names:
            data = model_data if name == model_file else optim_data if optim and name == optim[min(optim)][0] \
                else peek(folder / name)
            fine = data is not None and (("buffer_names" in data and "param_shapes" in data)
                                         if name.endswith("_model_states.pt") else
                                         _optim_facts(data) != (None, None))
            if not fine:
                raise BadInput(f"{folder / name} is damaged or not a DeepSpeed state file (not a readable "
                               f"torch.save archive of DeepSpeed's states)",
                               "copy the file again from where the run saved it (compare sizes), "
                               + (elsewhere or "or convert another checkpoint of the run"))
    return {"stage": stage, "world_size": world, "files": names}


def _fix(folder: Path, elsewhere: str) -> str:
    text = (f"copy the missing files back into {folder.name}/ from where the run saved them (each rank writes its "
            f"own; with several machines each keeps its ranks' files); deleting them to free disk makes the "
            f"checkpoint unconvertible")
    return f"{text}; {elsewhere}" if elsewhere else text
