"""Atomic writes: a temporary file or folder beside the target, fsync, rename."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from .errors import BadInput


def timestamp() -> float:
    """Seconds since the epoch for timestamps written into outputs: ``$SOURCE_DATE_EPOCH`` when set
    (reproducible, byte-identical outputs), else now."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    return float(epoch) if epoch.isdigit() else time.time()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented UTF-8 JSON, atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def read_json(path: Path, default: Any = None, *, expect: type | None = None) -> Any:
    """Load a JSON file (a state file vlhub or the user wrote).

    Args:
        path: the file.
        default: returned when the file does not exist.
        expect: the type the top-level value must have (``dict`` or ``list``), if any.

    Returns:
        The parsed value, or ``default``.

    Raises:
        BadInput: the file is not UTF-8 JSON, or not of type ``expect`` (exit 2; the message
            names the file and the fix), or cannot be read (a folder, a pipe or device, no permission).
    """
    path = Path(path)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO or device would block the read forever
            raise BadInput("state.unreadable", path=str(path), reason="not a regular file")
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default
    except json.JSONDecodeError as exc:
        raise BadInput("state.damaged_json", path=str(path), detail=f"{exc.msg} at line {exc.lineno}, column {exc.colno}",
                       **_repair(path)) from exc
    except UnicodeDecodeError as exc:
        raise BadInput("state.not_utf8", path=str(path), **_repair(path)) from exc
    except OSError as exc:
        raise BadInput("state.unreadable", path=str(path), reason=exc.strerror or str(exc)) from exc
    if expect is not None and not isinstance(value, expect):
        raise BadInput("state.wrong_type", path=str(path), expected=_JSON_NAMES.get(expect, expect.__name__),
                       found=_JSON_NAMES.get(type(value), type(value).__name__), **_repair(path))
    return value


def _repair(path: Path) -> dict[str, str]:
    en, zh = _REPAIR.get(path.name, _REPAIR_ANY)
    return {"fix": en, "fix_zh": zh}


def read_cache(path: Path, default: Any, *, expect: type = dict) -> Any:
    """A JSON file vlhub can rebuild (a hash cache, a resume tracker): ``default`` when it is
    missing or damaged, so a damaged cache costs time, never a failed command."""
    try:
        return read_json(path, default, expect=expect)
    except BadInput:
        return default


_JSON_NAMES = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean",
               type(None): "null"}
_PREPARE_AGAIN = ("prepare the data again with `vlhub data prepare ... --force`",
                  "请用 `vlhub data prepare ... --force` 重新准备数据")
_REPAIR_ANY = ("repair it, or delete it and redo the step that wrote it", "请修复它，或删除后重新执行写入它的步骤")
#: The fix for a damaged state file, by file name: (English, 中文).
_REPAIR = {
    "run.json": ("the run's record is lost: delete the run folder (its checkpoints stay usable with "
                 "`vlhub convert PATH`)", "该运行的记录已丢失：请删除运行文件夹（其中的检查点仍可用 `vlhub convert PATH` 转换）"),
    "prepared.json": _PREPARE_AGAIN,
    "stats.json": _PREPARE_AGAIN,
    "val_mc.json": _PREPARE_AGAIN,
    "vlhub_provenance.json": ("repair it, or delete it (it only feeds the model card)",
                              "请修复或删除它（它只用于生成模型卡片）"),
    "env.json": ("recreate the environment with `vlhub env create NAME`", "请用 `vlhub env create NAME` 重新创建环境"),
}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_leftovers(target: Path) -> None:
    """Remove ``.NAME.partial-PID-*`` folders of processes that are gone (killed during an earlier run),
    and put back a ``.NAME.old-PID`` folder that a killed ``force`` replacement left without ``NAME``."""
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(partial|old)-(\d+)(-.*)?$")
    for entry in target.parent.iterdir():
        match = pattern.match(entry.name)
        if not match or int(match.group(2)) == os.getpid() or _pid_alive(int(match.group(2))):
            continue
        if match.group(1) == "old" and not target.exists():
            os.replace(entry, target)
        else:
            shutil.rmtree(entry, ignore_errors=True)


def check_output_file(path: Path, flag: str) -> Path:
    """Check, before any work, that a result can be written to ``path`` (checked outputs first, so
    that an answer or an evaluation is never lost to a typo in the output path).

    Args:
        path: the file the user named.
        flag: the option it came from, named in the message (e.g. ``--export``).

    Returns:
        The absolute path.

    Raises:
        BadInput: ``path`` is a folder, its folder does not exist or is not a folder, or it cannot
            be written there (permissions, a read-only file system).
    """
    path = Path(path).expanduser().absolute()
    if path.is_dir():
        raise BadInput("out.file_is_folder", flag=flag, path=str(path), example=str(path / "chat.json"))
    parent = path.parent
    if not parent.is_dir():
        raise BadInput("out.parent_missing", flag=flag, path=str(path), parent=str(parent))
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise BadInput("out.not_writable", flag=flag, path=str(path))
    return path


def check_replaceable(target: Path, marker: str, *, force: bool, flag: str = "--out") -> None:
    """The ``--force`` rule: an existing output folder is replaced only when vlhub wrote it.

    Args:
        target: the output folder.
        marker: the file vlhub writes last into such a folder (``prepared.json``,
            ``vlhub_provenance.json``, ...): its presence proves the folder is vlhub's.
        force: whether the user asked to replace an existing folder.
        flag: the option the user gave ``target`` with, named in the message.

    Raises:
        BadInput: ``target`` is a file; or a non-empty folder and ``force`` is off; or a
            non-empty folder without ``marker`` (a folder of the user's files is never replaced).
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise BadInput("out.is_file", flag=flag, path=str(target))
    if not target.is_dir() or not any(target.iterdir()):
        return
    if not force:
        raise BadInput("out.exists", flag=flag, path=str(target))
    if not (target / marker).is_file():
        raise BadInput("out.not_vlhub", flag=flag, path=str(target), marker=marker)


@contextlib.contextmanager
def atomic_dir(target: Path, *, force: bool = False, marker: str = "") -> Iterator[Path]:
    """Build a folder in a temporary sibling and rename it to ``target`` when the block succeeds.

    On any exception the temporary folder is removed and ``target`` is untouched.
    With ``force`` an existing ``target`` is replaced only after the new one is complete, and
    only when :func:`check_replaceable` allows it (``marker`` present, or the folder empty).
    Leftovers of a killed earlier call for the same ``target`` are cleaned up first.

    Raises:
        BadInput: what :func:`check_replaceable` raises, before anything is built.
        FileExistsError: ``target`` appeared while the new folder was being built (without ``force``).
    """
    target = Path(target)
    if force:
        check_replaceable(target, marker, force=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    _clean_leftovers(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-{os.getpid()}-", dir=target.parent))
    tmp.chmod(0o777 & ~_umask())
    try:
        yield tmp
        if target.exists():
            if not force:
                raise FileExistsError(target)
            check_replaceable(target, marker, force=True)  # it may have changed while we built
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
        _fsync_dir(target.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
