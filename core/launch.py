"""Starting the Streamlit launcher as a child process bound to 127.0.0.1 by default."""
from __future__ import annotations

import importlib.util
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import webbrowser
from pathlib import Path

from .errors import BadInput, MissingDependency, VlhubError
from .launch_guard import LOOPBACK_NAMES
from .stage import clean_env

#: The ``--host`` values that need no ``--allow-remote``: the names the Host guard always serves.
LOCAL_HOSTS = LOOPBACK_NAMES
#: The launcher's package, a sibling of this one (its name is built, so that nothing here imports it).
LAUNCHER_PACKAGE = __name__.rsplit(".", 2)[0] + ".streamlit_app"


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


def free_port(host: str, wanted: int) -> int:
    """``wanted`` if it can be bound on ``host``, else a free port chosen by the OS."""
    for port in ([wanted] if wanted else []) + [0]:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise BadInput(f"--host {host}: cannot bind any port there", "use --host 127.0.0.1")


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


def wait_http(url: str, timeout: float, proc: subprocess.Popen) -> None:
    """Wait until ``url`` answers 200, failing early if the server process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise VlhubError(f"the launcher exited during start-up (code {proc.returncode})",
                             "run `vlhub doctor`, then `vlhub --debug launch`")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    raise VlhubError(f"the launcher did not answer at {url} within {timeout:.0f} s", "see the log above")


def validate_host(host: str, allow_remote: bool) -> None:
    """Refuse to expose the launcher beyond this machine unless explicitly allowed."""
    if host not in LOCAL_HOSTS and not allow_remote:
        raise BadInput(f"--host {host} would expose the launcher (and your hub logins) to other machines",
                       "add --allow-remote if you really mean it, or drop --host to stay on 127.0.0.1")


def launch(host: str, port: int, open_browser: bool, say=print) -> int:
    """Run the launcher until Ctrl-C; returns the child's exit code."""
    port = free_port(host, port)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}"
    proc = subprocess.Popen(streamlit_command(host, port), env=clean_env(),
                            stdout=subprocess.DEVNULL)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `kill` stops the server too
    try:
        wait_http(url + "/_stcore/health", 60, proc)
        say(f"vlhub launcher: {url}  (Ctrl-C to stop)")
        if open_browser:
            webbrowser.open(url)
        return proc.wait()
    except KeyboardInterrupt:
        say("stopping the launcher ...")
        return 0
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
