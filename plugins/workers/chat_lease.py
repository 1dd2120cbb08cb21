"""The lease of a chat worker: it lives only while the launcher keeps renewing a file.

A Chat page has no "tab closed" event, so a model it loaded would otherwise run until the
launcher stops. The launcher (:mod:`vlhub.core.chat`'s loaded models) writes a *lease file* for each
worker it starts, passes it as ``--lease FILE --lease-ttl SECONDS`` and renews it (touches the file)
while a page uses the model. :func:`watch` checks the file every second from a daemon thread; once it
is gone (the model was unloaded) or has not been renewed for ``ttl`` seconds (the page was closed),
it runs the worker's clean-up (e.g. stopping LMDeploy's api_server), says why on stderr (the last
line of the worker log) and ends the process with exit status 0.

Standard library only: it is imported by worker scripts running in a stage environment.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import Callable

#: How often the file is checked (seconds).
EVERY_S = 1.0


def expired(path: str, ttl: float) -> str | None:
    """Why the lease is over (one line), or ``None`` while it holds (also when the file cannot be read)."""
    try:
        age = time.time() - os.stat(path).st_mtime
    except FileNotFoundError:
        return f"its lease {path} was removed (the model was unloaded)"
    except OSError:
        return None
    if age > ttl:
        return f"its lease {path} was not renewed for {age:.0f} s (limit {ttl:.0f} s): no Chat page uses it"
    return None


def watch(path: str | None, ttl: float, on_expire: Callable[[], None] | None = None,
          every: float = EVERY_S) -> threading.Thread | None:
    """End this process when the lease at ``path`` expires (nothing when ``path`` is empty).

    Args:
        path: the lease file (``--lease``).
        ttl: seconds without a renewal after which the lease is over (``--lease-ttl``).
        on_expire: clean-up run first (errors in it are reported and ignored).
        every: seconds between checks.
    Returns:
        The watching thread (a daemon), or ``None``.
    """
    if not path:
        return None

    def loop() -> None:
        while True:
            reason = expired(path, ttl)
            if reason:
                sys.stderr.write(f"vlhub chat worker: stopping, {reason}\n")
                sys.stderr.flush()
                if on_expire is not None:
                    try:
                        on_expire()
                    except BaseException as exc:  # noqa: BLE001 - the process ends either way
                        sys.stderr.write(f"vlhub chat worker: clean-up failed: {type(exc).__name__}: {exc}\n")
                try:
                    os.unlink(path)  # a stale record; the launcher would drop it too
                except OSError:
                    pass
                sys.stderr.flush()
                os._exit(0)
            time.sleep(every)

    thread = threading.Thread(target=loop, name="vlhub-lease", daemon=True)
    thread.start()
    return thread


def add_arguments(parser: object) -> None:
    """``--lease FILE`` and ``--lease-ttl SECONDS`` on an ``argparse`` parser."""
    parser.add_argument("--lease", default="")  # type: ignore[attr-defined]
    parser.add_argument("--lease-ttl", type=float, default=180.0)  # type: ignore[attr-defined]
