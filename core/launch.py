"""Starting the Streamlit launcher as a child process bound to 127.0.0.1 by default.

One launcher per ``VLHUB_HOME``: ``vlhub launch`` records the launcher it started in
``VLHUB_HOME/launcher.json`` (its URL and :func:`vlhub.core.runs.process_record` of the ``vlhub
launch`` process and of the server), written atomically once the server answers and removed when it
stops. A later ``vlhub launch`` trusts that record only when :func:`vlhub.core.runs.check_process`
proves the pid is that launcher and its ``/_stcore/health`` answers, and then opens the browser on it
instead of starting a second server. Start-up runs under a file lock (``VLHUB_HOME/launcher.lock``),
so two ``vlhub launch`` started at the same moment end with one server.

The port: ``--port N`` given explicitly is kept or refused in one line naming the program that holds
it (exit 2), never silently replaced; the default port (8501) falls back to a free one, saying so;
``--port 0`` is any free port. The probe binds the way Streamlit 1.67 binds its server socket
(``streamlit.web.server.starlette.starlette_server._bind_socket``: ``SO_REUSEADDR`` except on
Windows), so a port whose last connections linger in TIME_WAIT after a restart counts as free, and
the open tab reconnects to the restarted launcher.
"""
from __future__ import annotations

import contextlib
import errno
import importlib.util
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import webbrowser
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
from filelock import FileLock, Timeout

from .errors import BadInput, MissingDependency, VlhubError
from .fsutil import atomic_write_json, read_json
from .home import vlhub_home
from .launch_guard import LOOPBACK_NAMES
from .runs import OWNED, check_process, process_record, terminate_tree
from .stage import clean_env

#: The ``--host`` values that need no ``--allow-remote``: the names the Host guard always serves.
LOCAL_HOSTS = LOOPBACK_NAMES
#: The launcher's package, a sibling of this one (its name is built, so that nothing here imports it).
LAUNCHER_PACKAGE = __name__.rsplit(".", 2)[0] + ".streamlit_app"
#: The running launcher of a VLHUB_HOME, and the lock held while one starts.
RECORD_NAME, LOCK_NAME = "launcher.json", "launcher.lock"
#: Seconds a server has to answer its health check; a second ``vlhub launch`` waits a little longer.
START_TIMEOUT_S = 60.0
LOCK_TIMEOUT_S = START_TIMEOUT_S + 30.0
#: Requests to the launcher itself never go through an HTTP proxy from the environment.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def app_path() -> Path:
    """The Streamlit entry script (found, not imported: core never imports the launcher's package).

    Raises:
        MissingDependency: the launcher's package is not installed.
    """
    found = importlib.util.find_spec(LAUNCHER_PACKAGE)
    if found is None or not found.origin:
        raise MissingDependency(f"the launcher ({LAUNCHER_PACKAGE}) is not installed",
                                "reinstall vlhub (`pip install -e .` in a checkout)")
    return Path(found.origin).parent / "app.py"


# ------------------------------------------------------------------ the port
def bind_probe(host: str, port: int) -> int | None:
    """Bind ``host``:``port`` the way Streamlit binds its server (``SO_REUSEADDR`` except on Windows).

    Returns:
        The port bound (the OS's choice for 0), or ``None`` when another socket holds it (EADDRINUSE).

    Raises:
        BadInput: the port is reserved (EACCES: below 1024, or reserved on Windows) or ``host`` is
            not an address of this machine.
    """
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        if os.name != "nt":  # Streamlit skips it on Windows, where it lets two listeners share a port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return None
            if exc.errno == errno.EACCES or getattr(exc, "winerror", None) == 10013:
                raise BadInput(f"port {port} on {host} is reserved ({exc.strerror or exc})",
                               "choose a port above 1024, e.g. --port 8501, or --port 0 for any free port") from exc
            raise BadInput(f"--host {host}: cannot bind there ({exc.strerror or exc})",
                           "use --host 127.0.0.1") from exc
        return sock.getsockname()[1]


def _wildcard(ip: str) -> bool:
    """Whether a listening socket's address is the unspecified (any-interface) address, IPv4 or IPv6."""
    try:
        return ipaddress.ip_address(ip.split("%")[0]).is_unspecified
    except ValueError:
        return False


def port_holder(host: str, port: int) -> str:
    """Who listens on ``port`` (preferring a socket on ``host`` or a wildcard address), in words.

    Returns:
        ``pid P, NAME`` when psutil can tell, ``pid P`` without a name, or a phrase saying the
        pid is not visible (another user's process, or no permission to list sockets).
    """
    try:
        listeners = [c for c in psutil.net_connections(kind="tcp")
                     if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port]
    except (psutil.Error, OSError):
        listeners = []
    listeners.sort(key=lambda c: (not (c.laddr.ip == host or _wildcard(c.laddr.ip)), c.pid is None))
    pid = listeners[0].pid if listeners else None
    if pid is None:
        return "its pid is not visible to this user"
    try:
        proc = psutil.Process(pid)
        name = proc.name()
        with contextlib.suppress(psutil.Error):
            if "vlhub.core.launch_guard" in proc.cmdline():
                name += ": another vlhub launcher"
    except psutil.Error:
        return f"pid {pid}"
    return f"pid {pid}, {name}"


def port_in_use(host: str, port: int) -> BadInput:
    """The one-line error for ``--port N`` held by another program."""
    return BadInput(f"port {port} on {host} is in use by another program ({port_holder(host, port)})",
                    f"stop that program, or choose another port: `vlhub launch --port {port + 1}` "
                    "(or --port 0 for any free port)")


def choose_port(host: str, port: int, strict: bool, say: Callable[[str], None] = print) -> int:
    """The port to serve on.

    Args:
        host: the address to bind.
        port: the port asked for; 0 for any free port.
        strict: whether the user named ``port`` (then it is kept or refused, never replaced).
        say: where the notice goes when a default port falls back to a free one.

    Returns:
        ``port`` when it is free (or only lingers in TIME_WAIT), else (not ``strict``) a free port.

    Raises:
        BadInput: ``strict`` and another program listens on ``port`` (exit 2), or the port or host
            cannot be bound at all.
    """
    bound = bind_probe(host, port)
    if bound is not None:
        return bound
    if strict:
        raise port_in_use(host, port)
    fallback = bind_probe(host, 0)
    if fallback is None:
        raise BadInput(f"--host {host}: cannot bind any port there", "use --host 127.0.0.1")
    say(f"port {port} on {host} is in use by another program ({port_holder(host, port)}); "
        f"serving on port {fallback} instead")
    return fallback


def free_port(host: str, wanted: int) -> int:
    """``wanted`` if it can be bound on ``host``, else a free port chosen by the OS (kept for callers of 0.1)."""
    return choose_port(host, wanted, strict=False, say=lambda _text: None)


# ------------------------------------------------------------------ the server
def streamlit_command(host: str, port: int) -> list[str]:
    """The exact argv: ``streamlit run`` behind the Host guard, headless, XSRF on, no file watcher, no telemetry.

    :mod:`vlhub.core.launch_guard` answers 403 unless the request's Host names a loopback
    address or ``host`` itself (DNS rebinding); ``host`` is this machine unless the user
    passed ``--allow-remote``.
    """
    return [sys.executable, "-m", "vlhub.core.launch_guard", host, "--", "run", str(app_path()),
            "--server.address", host, "--server.port", str(port), "--server.headless", "true",
            "--server.fileWatcherType", "none", "--server.runOnSave", "false",
            "--server.enableXsrfProtection", "true", "--browser.gatherUsageStats", "false",
            "--global.developmentMode", "false", "--client.toolbarMode", "viewer"]


def healthy(url: str, timeout: float = 2.0) -> bool:
    """Whether ``url`` answers 200 (directly, never through a proxy from the environment)."""
    try:
        with _DIRECT.open(url, timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_http(url: str, timeout: float, proc: subprocess.Popen) -> None:
    """Wait until ``url`` answers 200, failing early if the server process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise VlhubError(f"the launcher exited during start-up (code {proc.returncode})",
                             "run `vlhub doctor`, then `vlhub --debug launch`")
        if healthy(url):
            return
        time.sleep(0.2)
    raise VlhubError(f"the launcher did not answer at {url} within {timeout:.0f} s", "see the log above")


def validate_host(host: str, allow_remote: bool) -> None:
    """Refuse to expose the launcher beyond this machine unless explicitly allowed."""
    if host not in LOCAL_HOSTS and not allow_remote:
        raise BadInput(f"--host {host} would expose the launcher (and your hub logins) to other machines",
                       "add --allow-remote if you really mean it, or drop --host to stay on 127.0.0.1")


# ------------------------------------------------------------------ one launcher per VLHUB_HOME
def record_path() -> Path:
    """``VLHUB_HOME/launcher.json``: the launcher of this home that runs now, while it runs."""
    return vlhub_home() / RECORD_NAME


def _read_record() -> dict[str, Any] | None:
    try:
        return read_json(record_path(), None, expect=dict)
    except BadInput:  # torn by hand or by a crash of an older vlhub: not a launcher anyone can trust
        return None


def running_launcher() -> dict[str, Any] | None:
    """The launcher of this ``VLHUB_HOME`` that runs now, from ``launcher.json``.

    Returns:
        The record (``url``, ``host``, ``port``, ``pid`` and its process record, ``server_pid`` and
        its process record), only when it names this home, :func:`vlhub.core.runs.check_process`
        proves ``pid`` is the ``vlhub launch`` process that wrote it and ``URL/_stcore/health``
        answers; else ``None``.
    """
    record = _read_record()
    if not record or record.get("vlhub_home") != str(vlhub_home()):
        return None
    if check_process(record, "pid").state != OWNED:
        return None
    url = record.get("url")
    if not isinstance(url, str) or not url.startswith("http://"):
        return None
    deadline = time.monotonic() + 5  # a busy server gets a few seconds before a second one starts
    while not healthy(url + "/_stcore/health"):
        if time.monotonic() > deadline or check_process(record, "pid").state != OWNED:
            return None
        time.sleep(0.5)
    return record


@contextlib.contextmanager
def startup_lock() -> Iterator[None]:
    """Hold ``VLHUB_HOME/launcher.lock`` while a launcher is looked for and started.

    Raises:
        VlhubError: another ``vlhub launch`` of this home held it for :data:`LOCK_TIMEOUT_S`.
    """
    home = vlhub_home()
    lock = FileLock(str(home / LOCK_NAME))
    try:
        lock.acquire(timeout=LOCK_TIMEOUT_S)
    except Timeout as exc:
        raise VlhubError(f"another `vlhub launch` of {home} has been starting for {LOCK_TIMEOUT_S:.0f} s",
                         "wait for it or stop it, then run `vlhub launch` again") from exc
    try:
        yield
    finally:
        lock.release()


def _forget(pid: int) -> None:
    """Remove ``launcher.json`` if it names ``pid`` (a record of another launcher stays)."""
    record = _read_record()
    if record is not None and record.get("pid") == pid:
        with contextlib.suppress(FileNotFoundError):
            record_path().unlink()


def _clear_stale(say: Callable[[str], None]) -> None:
    """Remove a record no launcher answers to; stop its server first when it outlived its ``vlhub launch``
    (killed with SIGKILL) and :func:`vlhub.core.runs.check_process` proves it is that server, so that
    it frees its port."""
    record = _read_record()
    if record is not None and record.get("vlhub_home") == str(vlhub_home()):
        orphan = check_process(record, "server_pid")
        if orphan.state == OWNED and orphan.process is not None and check_process(record, "pid").state != OWNED:
            if terminate_tree(orphan.process, 10):  # never one of this process's group (runs.is_protected)
                say(f"stopped the launcher server left running by a killed `vlhub launch` (pid {orphan.pid})")
            else:
                say(f"the launcher server left running by a killed `vlhub launch` (pid {orphan.pid}) still runs; "
                    f"`kill {orphan.pid}` stops it")
    with contextlib.suppress(FileNotFoundError):
        record_path().unlink()


def _reuse(record: dict[str, Any], host: str, port: int, strict_port: bool, open_browser: bool,
           say: Callable[[str], None]) -> int:
    url, pid = record["url"], record["pid"]
    say(f"vlhub launcher already running at {url} (pid {pid})" + ("; opening it" if open_browser else ""))
    ignored = [flag for flag, differs in (("--host", host != record.get("host")),
                                          ("--port", strict_port and port not in (0, record.get("port"))))
               if differs]
    if ignored:
        say(f"({' and '.join(ignored)} ignored: stop it first (Ctrl-C where it runs, or `kill {pid}`) "
            "to start it with other settings)")
    if open_browser:
        webbrowser.open(url)
    return 0


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class _Exit:
    """``kill`` (SIGTERM) or a closed terminal (SIGHUP) stops the server too and removes the record:
    the handler exits through ``finally``, except while the server is being started (:meth:`deferred`),
    where it waits until the child is known, so that no signal leaves the server behind."""

    def __init__(self) -> None:
        self.deferring, self.pending = False, False
        signal.signal(signal.SIGTERM, self._handle)
        if hasattr(signal, "SIGHUP") and signal.getsignal(signal.SIGHUP) is signal.SIG_DFL:  # `nohup` stays nohup
            signal.signal(signal.SIGHUP, self._handle)

    def _handle(self, *_: Any) -> None:
        if self.deferring:
            self.pending = True
        else:
            sys.exit(0)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self.deferring = True
        try:
            yield
        finally:
            self.deferring = False
        if self.pending:
            sys.exit(0)


def launch(host: str, port: int, open_browser: bool, say: Callable[[str], None] = print, *,
           strict_port: bool = True) -> int:
    """Run the launcher until Ctrl-C, or open the browser on the one of this ``VLHUB_HOME`` that runs.

    Args:
        host: the address to bind (validated by :func:`validate_host` first).
        port: the port; 0 for any free port.
        open_browser: whether to open the page in the browser.
        say: where human text goes.
        strict_port: whether the user named ``port`` (then a port in use is an error, exit 2);
            otherwise a port in use falls back to a free one, saying so.

    Returns:
        The server's exit code, 0 after Ctrl-C or SIGTERM, or 0 when a launcher already runs.

    Raises:
        BadInput: the port is in use (``strict_port``) or cannot be bound.
        VlhubError: the server did not start.
    """
    exits = _Exit()  # before the child exists, so that no signal leaves it behind
    server: subprocess.Popen | None = None
    try:
        with startup_lock():
            running = running_launcher()
            if running is not None:
                return _reuse(running, host, port, strict_port, open_browser, say)
            _clear_stale(say)
            port = choose_port(host, port, strict_port, say)
            url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
            with exits.deferred():
                server = subprocess.Popen(streamlit_command(host, port), env=clean_env(), stdout=subprocess.DEVNULL)
            try:
                wait_http(url + "/_stcore/health", START_TIMEOUT_S, server)
            except VlhubError:
                if server.poll() is not None and strict_port and bind_probe(host, port) is None:
                    raise port_in_use(host, port) from None  # taken between the probe and the server's bind
                raise
            atomic_write_json(record_path(), {
                "url": url, "host": host, "port": port, "vlhub_home": str(vlhub_home()),
                "started_at": time.time(), **process_record(os.getpid(), "pid"),
                **process_record(server.pid, "server_pid")})
        say(f"vlhub launcher: {url}  (Ctrl-C to stop)")
        if open_browser:
            webbrowser.open(url)
        return server.wait()
    except KeyboardInterrupt:
        say("stopping the launcher ...")
        return 0
    finally:
        exits.deferring = True  # a second signal does not cut the clean-up short
        if server is not None:
            _forget(os.getpid())
            _stop(server)
