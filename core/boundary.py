"""The one boundary mapper: every exception that can reach a user becomes one :class:`VlhubError` line.

The CLI (``VlhubGroup``), the launcher's pages and the stage workers call :func:`user_error`
on whatever escapes the work, so a full disk, a read-only ``VLHUB_HOME``, a symlink loop, a
file name that is not UTF-8, a dead network or a library's own exception is shown the same
way everywhere: what happened, the path vlhub was working on, and the fix; exit 2 when the
input is at fault, 1 when the work failed.

The path comes from the exception (``OSError.filename``) or, when the exception has none,
from the innermost :func:`working_on` block around the work.
"""
from __future__ import annotations

import contextlib
import contextvars
import errno
import os
import shutil
from pathlib import Path
from typing import Iterator

from .errors import BadInput, VlhubError
from .home import home_path

_current: contextvars.ContextVar[str] = contextvars.ContextVar("vlhub_working_on", default="")


@contextlib.contextmanager
def working_on(path: str | os.PathLike[str]) -> Iterator[None]:
    """Name ``path`` in any error :func:`user_error` makes of an exception raised inside the block."""
    token = _current.set(str(path))
    try:
        yield
    finally:
        _current.reset(token)


def _path(exc: BaseException) -> str:
    name = getattr(exc, "filename", None)
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    return str(name) if name not in (None, "") else _current.get()


def _folder_of(path: str) -> str:
    """The nearest existing folder of ``path`` (what ``df`` or ``mount`` should be asked about)."""
    candidate = Path(path) if path else Path.cwd()
    for folder in (candidate, *candidate.parents):
        with contextlib.suppress(OSError):
            if folder.is_dir():
                return str(folder)
    return str(candidate)


#: errno -> (message template, fix template, exit code); ``{path}`` and ``{folder}`` are filled in.
_OS_ERRORS: dict[int, tuple[str, str, int]] = {
    errno.ENOSPC: ("the disk holding {path} is full (No space left on device)",
                   "free space there (`df -h {folder}`) or choose a folder on another disk", 1),
    errno.EDQUOT: ("the disk quota for {path} is used up", "free space or ask for a larger quota", 1),
    errno.EROFS: ("{path} is on a read-only file system",
                  "choose a writable folder (for vlhub's own state: set VLHUB_HOME to a writable folder)", 2),
    errno.EACCES: ("permission denied: {path}", "check its permissions (`ls -ld {folder}`) or choose another path", 2),
    errno.EPERM: ("operation not permitted on {path}", "check its permissions and owner, or choose another path", 2),
    errno.ENOENT: ("{path} does not exist", "check the path (it may have been moved or deleted)", 2),
    errno.ELOOP: ("{path}: too many levels of symbolic links (a symlink loop)",
                  "remove or fix the link that points back into its own folder", 2),
    errno.ENAMETOOLONG: ("a file name is too long: {path}", "use a shorter name or a shorter folder path", 2),
    errno.EISDIR: ("{path} is a folder where a file was expected", "give the file inside it, or another path", 2),
    errno.ENOTDIR: ("a part of {path} is a file where a folder was expected", "check the path", 2),
    errno.EEXIST: ("{path} already exists", "choose another path or remove it first", 2),
    errno.ENOTEMPTY: ("the folder {path} is not empty", "choose an empty or new folder", 2),
    errno.EMFILE: ("too many open files while working on {path}", "raise the limit (`ulimit -n 4096`) and rerun", 1),
    errno.ENFILE: ("the system ran out of file handles while working on {path}", "close other programs and rerun", 1),
    errno.EIO: ("an I/O error while reading or writing {path}", "check the disk (`dmesg`), then rerun", 1),
    errno.ENXIO: ("{path} is a device or pipe with no reader or writer", "give a regular file", 2),
    errno.ETXTBSY: ("{path} is busy (a running program uses it)", "stop the program using it, then rerun", 1),
    errno.EXDEV: ("{path} is on another file system than its destination", "keep source and output on one disk", 1),
    errno.ENOMEM: ("out of memory while working on {path}", "close other programs or use a smaller batch", 1),
}

#: Class names of network exceptions (requests, httpx, urllib3, socket) -> (message, fix, exit code).
_NETWORK: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("ConnectTimeout", "ConnectTimeoutError"), "no connection to {where} within the connect timeout",
     "check the address and your network; VLHUB_CONNECT_TIMEOUT sets the limit in seconds"),
    (("ReadTimeout", "ReadTimeoutError", "Timeout", "TimeoutException", "TimeoutError", "timeout"),
     "{where} accepted the connection but sent no answer within the read timeout",
     "the server may be overloaded or down: retry later; VLHUB_READ_TIMEOUT sets the limit in seconds"),
    (("ConnectionError", "ConnectError", "NewConnectionError", "ConnectionRefusedError", "RemoteDisconnected",
      "ProtocolError", "ConnectionResetError"),
     "cannot reach {where} (connection refused or cut)", "check the address, that the server runs, and your network"),
)


def _network_error(exc: BaseException) -> VlhubError | None:
    names = {cls.__name__ for cls in type(exc).__mro__}
    for classes, message, fix in _NETWORK:
        if names & set(classes):
            where = _url_of(exc) or _current.get() or "the server"
            return VlhubError(message.format(where=where), fix)
    return None


def _url_of(exc: BaseException) -> str:
    """The URL or host a network exception names (requests and httpx keep the request on it)."""
    for attr in ("request", "response"):
        with contextlib.suppress(Exception):
            url = getattr(getattr(exc, attr, None), "url", None)
            if url:
                return str(url)
    return ""


#: Errors that mean vlhub's own state folder cannot be written.
_HOME_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT})


def _in_home(path: str) -> bool:
    if not path:
        return False
    with contextlib.suppress(OSError, ValueError):
        return Path(path).resolve().is_relative_to(home_path())
    return False


def user_error(exc: BaseException) -> VlhubError:
    """The one-line error a user sees for ``exc``.

    Args:
        exc: anything raised by vlhub's work or a library under it.

    Returns:
        ``exc`` itself when it is already a :class:`VlhubError`; otherwise a :class:`VlhubError`
        (exit 1, the work failed) or :class:`BadInput` (exit 2, an input or setting is at fault)
        naming the path or host and the fix. Unknown exceptions keep their type and text and
        point at ``--debug``.
    """
    if isinstance(exc, VlhubError):
        return exc
    network = _network_error(exc)
    if network is not None:
        return network
    if isinstance(exc, UnicodeEncodeError) and exc.encoding == "utf-8" and "surrogate" in exc.reason:
        return BadInput(f"a file name that is not valid UTF-8 under {_current.get() or 'the folder'}: "
                        f"{exc.object[max(0, exc.start - 40):exc.end + 40]!r}",
                        "rename the file to a UTF-8 name (e.g. `convmv -f gbk -t utf-8 --notest -r FOLDER`)")
    if isinstance(exc, UnicodeDecodeError):
        return BadInput(f"{_current.get() or 'a file'}: not UTF-8 text (invalid byte at offset {exc.start})",
                        "save the file as UTF-8")
    if isinstance(exc, OSError) and exc.errno in _HOME_ERRNOS and _in_home(_path(exc)):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return VlhubError(f"the disk of VLHUB_HOME ({home_path()}) is full: {exc.strerror} ({_path(exc)})",
                              f"free space there (`df -h {home_path()}`) or set VLHUB_HOME to a folder on another disk")
        return BadInput(f"VLHUB_HOME ({home_path()}) is not writable: {exc.strerror} ({_path(exc)})",
                        "set VLHUB_HOME to a writable folder, then rerun")
    if isinstance(exc, OSError) and exc.errno in _OS_ERRORS:
        path = _path(exc) or "the current folder"
        message, fix, code = _OS_ERRORS[exc.errno]
        cls = BadInput if code == 2 else VlhubError
        return cls(message.format(path=path), fix.format(path=path, folder=_folder_of(path)))
    if isinstance(exc, OSError):
        path = _path(exc)
        where = f" ({path})" if path else ""
        return VlhubError(f"{exc.strerror or type(exc).__name__}{where}", "rerun with `vlhub --debug ...` for details")
    if isinstance(exc, MemoryError):
        return VlhubError(f"out of memory while working on {_current.get() or 'the task'}",
                          "close other programs or use smaller inputs")
    return VlhubError(f"{type(exc).__name__}: {exc}", "rerun with `vlhub --debug ...` for the traceback")


def require_free_space(folder: str | os.PathLike[str], needed: int, what: str) -> None:
    """Refuse long writes that cannot fit: before a prepare, a conversion or a publish staging.

    Args:
        folder: where the bytes will be written (its nearest existing parent is measured).
        needed: bytes the write needs, with the caller's margin included.
        what: what will be written, for the message (e.g. ``"the converted model"``).

    Raises:
        VlhubError: (exit 1) less than ``needed`` bytes are free there; the message says how much
            is needed and how much is free.
    """
    where = _folder_of(str(folder))
    free = shutil.disk_usage(where).free
    if free < needed:
        raise VlhubError(f"{what} needs {_human(needed)} in {where}, but only {_human(free)} is free",
                         f"free {_human(needed - free)} there (`df -h {where}`) or choose a folder on another disk")


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
