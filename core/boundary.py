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
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .errors import BadInput, VlhubError
from .home import home_path
from .secrets import redact

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


#: errno -> (catalog key in :mod:`vlhub.core.messages`, exit code: 2 when a setting or input is at fault).
_OS_ERRORS: dict[int, tuple[str, int]] = {
    errno.ENOSPC: ("os.enospc", 1), errno.EDQUOT: ("os.edquot", 1), errno.EROFS: ("os.erofs", 2),
    errno.EACCES: ("os.eacces", 2), errno.EPERM: ("os.eperm", 2), errno.ENOENT: ("os.enoent", 2),
    errno.ELOOP: ("os.eloop", 2), errno.ENAMETOOLONG: ("os.enametoolong", 2), errno.EISDIR: ("os.eisdir", 2),
    errno.ENOTDIR: ("os.enotdir", 2), errno.EEXIST: ("os.eexist", 2), errno.ENOTEMPTY: ("os.enotempty", 2),
    errno.EMFILE: ("os.emfile", 1), errno.ENFILE: ("os.enfile", 1), errno.EIO: ("os.eio", 1),
    errno.ENXIO: ("os.enxio", 2), errno.ETXTBSY: ("os.etxtbsy", 1), errno.EXDEV: ("os.exdev", 1),
    errno.ENOMEM: ("os.enomem", 1),
}

#: Class names of network exceptions (requests, httpx, urllib3, socket) -> catalog key.
_NETWORK: tuple[tuple[tuple[str, ...], str], ...] = (
    (("ConnectTimeout", "ConnectTimeoutError"), "net.connect_timeout"),
    (("ReadTimeout", "ReadTimeoutError", "Timeout", "TimeoutException", "TimeoutError", "timeout"), "net.read_timeout"),
    (("ConnectionError", "ConnectError", "NewConnectionError", "ConnectionRefusedError", "RemoteDisconnected",
      "ProtocolError", "ConnectionResetError"), "net.unreachable"),
)


def network_error(exc: BaseException) -> VlhubError | None:
    """The one-line error for a network failure (refused, cut, timed out: requests, httpx, urllib3 and
    socket exceptions, also when wrapped as ``__cause__``/``__context__`` by an SDK), else ``None``.

    Callers that interpret a failed request (e.g. "the token was rejected") call this first, so a
    dead server is never reported as a bad token. The message names the URL or host the exception
    chain names.
    """
    chain: list[BaseException] = []
    while exc is not None and len(chain) < 6 and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    for item in chain:
        names = {cls.__name__ for cls in type(item).__mro__}
        for classes, key in _NETWORK:
            if names & set(classes):
                place = next(filter(None, map(_url_of, chain)), "") or _current.get() or "the server"
                return VlhubError(key, place=place)
    return None


def _url_of(exc: BaseException) -> str:
    """The URL or host an exception names: requests/httpx keep the request, urllib3 its pool and
    URL; otherwise the first URL or ``host=..., port=...`` in its text."""
    for attr in ("request", "response"):
        with contextlib.suppress(Exception):
            url = getattr(getattr(exc, attr, None), "url", None)
            if url:
                return str(url)
    url = getattr(exc, "url", None)
    pool = getattr(exc, "pool", None)
    if pool is not None and getattr(pool, "host", None):
        return f"{getattr(pool, 'scheme', 'http')}://{pool.host}:{pool.port}{url or ''}"
    text = str(exc)
    found = re.search(r"[a-z][a-z0-9+.-]*://[^\s'\"),]+", text)
    if found:
        return found.group(0)
    found = re.search(r"host='([^']+)', port=(\d+)", text)
    return f"{found.group(1)}:{found.group(2)}" if found else ""


@dataclass(frozen=True)
class HttpAnswer:
    """An HTTP error answer an exception carries: status code, the URL asked and the server's words."""

    status: int
    url: str
    detail: str


def http_answer(exc: BaseException) -> HttpAnswer | None:
    """The HTTP error answer behind ``exc`` (its ``__cause__``/``__context__`` chain included), else ``None``.

    Reads what the clients put on their exceptions: ``exc.response.status_code`` (requests,
    httpx, huggingface_hub's ``HfHubHTTPError`` and its subclasses) or ``exc.status_code``
    (the ModelScope SDK's ``APIError`` family). ``detail`` is the server's own message
    (``HfHubHTTPError.server_message``, ``APIError.message``) or the exception's first line,
    one line of at most 200 characters, redacted.
    """
    chain: list[BaseException] = []
    while exc is not None and len(chain) < 6 and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    for item in chain:
        status = getattr(getattr(item, "response", None), "status_code", None)
        if not isinstance(status, int):
            status = getattr(item, "status_code", None)
        if isinstance(status, int) and 400 <= status < 600:
            words = getattr(item, "server_message", None) or getattr(item, "message", None) or str(item)
            detail = redact(" ".join(str(words).strip().splitlines()[0].split()) if str(words).strip() else "")
            return HttpAnswer(status, redact(_url_of(item)), detail[:200] or f"HTTP {status}")
    return None


def _http_kind(status: int) -> tuple[str, int]:
    """HTTP status -> (kind of answer, exit code): 2 when the request or its credentials are at fault, 1 when
    the server failed or asks to come back later (the status classes of RFC 9110, section 15)."""
    if status == 401:
        return "unauthorized", 2
    if status == 403:
        return "forbidden", 2
    if status in (404, 410):
        return "not_found", 2
    if status in (408, 409, 412, 423, 425, 429):
        return "busy", 1
    return ("refused", 2) if status < 500 else ("server", 1)


def http_error(exc: BaseException) -> VlhubError | None:
    """The one-line error for an HTTP error answer of any SDK or client (:func:`http_answer`), else ``None``.

    401, 403, 404 and other refusals of the request are :class:`BadInput` (exit 2: a token, a
    name or an argument is wrong); 408/409/412/423/425/429 and 5xx are :class:`VlhubError`
    (exit 1: the server failed or is busy, retry). The message names the URL, the status and
    the server's message, never the exception's class. Publishers word the same answers with
    the repository and token they concern (:func:`vlhub.core.publishing.access.hub_errors`).
    """
    answer = http_answer(exc)
    if answer is None:
        return None
    kind, code = _http_kind(answer.status)
    return (BadInput if code == 2 else VlhubError)(f"http.{kind}", place=answer.url or _current.get() or "the server",
                                                   status=answer.status, detail=answer.detail)


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
    network = network_error(exc)
    if network is not None:
        return network
    http = http_error(exc)  # before OSError: huggingface_hub's HTTP errors are OSErrors too
    if http is not None:
        return http
    if isinstance(exc, UnicodeEncodeError) and exc.encoding == "utf-8" and "surrogate" in exc.reason:
        name = repr(exc.object[max(0, exc.start - 40):exc.end + 40])
        return BadInput("text.not_utf8_name", place=_current.get() or "the folder", name=name)
    if isinstance(exc, UnicodeDecodeError):
        return BadInput("text.not_utf8", place=_current.get() or "a file", offset=exc.start)
    if isinstance(exc, OSError) and exc.errno in _HOME_ERRNOS and _in_home(_path(exc)):
        home = {"home": str(home_path()), "reason": exc.strerror or "", "path": _path(exc)}
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return VlhubError("home.full", **home)
        return BadInput("home.not_writable", **home)
    if isinstance(exc, OSError) and exc.errno in _OS_ERRORS:
        path = _path(exc) or "the current folder"
        key, code = _OS_ERRORS[exc.errno]
        return (BadInput if code == 2 else VlhubError)(key, path=path, folder=_folder_of(path))
    if isinstance(exc, OSError):
        path = _path(exc)
        return VlhubError("os.other", reason=exc.strerror or type(exc).__name__, place=f" ({path})" if path else "")
    if isinstance(exc, MemoryError):
        return VlhubError("mem.out", place=_current.get() or "the task")
    return VlhubError("error.unexpected", kind=type(exc).__name__, text=str(exc))


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
        raise VlhubError("space.short", what=what, needed=_human(needed), place=where, free=_human(free),
                         missing=_human(needed - free))


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
