"""Refusing requests whose ``Host`` is not this machine (DNS rebinding), and running Streamlit behind that.

A page on ``evil.example`` can re-point its name at 127.0.0.1 and then talk to the launcher
from the user's browser as a same-origin page: Streamlit's XSRF and WebSocket origin checks
pass because ``Host`` and ``Origin`` agree. The guard answers 403 to every HTTP request and
WebSocket handshake whose ``Host`` names anything but a loopback name (or the exact ``--host``
the user allowed), whatever the port, so ``ssh -L 9000:127.0.0.1:8501`` keeps working.

Streamlit checks no Host on plain HTTP requests (its ``server.allowedHosts`` covers WebSocket
connections only, and is empty by default), so ``python -m vlhub.core.launch_guard
[HOST ...] -- run APP [OPTIONS]`` wraps the ASGI app Streamlit builds
(``streamlit.web.server.starlette.starlette_server.create_starlette_app``) in
:class:`HostGuard`, then runs Streamlit's own command line with the arguments after ``--``.
"""
from __future__ import annotations

import functools
import importlib
import re
import sys
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
#: Where Streamlit builds its ASGI app; the versions in setup.cfg's pin have it.
HOOK_MODULE = "streamlit.web.server.starlette.starlette_server"
HOOK_NAME = "create_starlette_app"
REFUSAL = b"Forbidden: this launcher only answers requests addressed to this machine (Host header).\n"
_HOST = re.compile(r"(?:\[(?P<ipv6>[^\[\]]+)\]|(?P<name>[^\[\]:]+))(?::[0-9]{1,5})?")


class GuardUnavailable(RuntimeError):
    """The installed Streamlit has no hook point for the guard, so the launcher must not start."""


def normalise(name: str) -> str:
    """A host name in the form :func:`host_name` returns: lower case, no brackets, no trailing dot.

    Args:
        name: a bare host name or address, e.g. ``Example.ORG.``, ``::1`` or ``[::1]``.

    Returns:
        The comparable form, e.g. ``example.org`` or ``::1``.
    """
    name = name.lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    return name[:-1] if name.endswith(".") else name


def host_name(header: str | None) -> str | None:
    """The host name of a ``Host`` header value, without its port.

    Args:
        header: the header value: ``name``, ``name:port``, ``[v6-address]`` or
            ``[v6-address]:port``; ``None`` when the request had no ``Host``.

    Returns:
        The name through :func:`normalise` (``LocalHost.:8501`` gives ``localhost``,
        ``[::1]:8501`` gives ``::1``), or ``None`` when the header is missing, empty or
        malformed (a bare IPv6 address, a port that is not a number, stray brackets).
    """
    match = _HOST.fullmatch(header or "")
    if match is None:
        return None
    return normalise(match["ipv6"] or match["name"])


def allowed_names(extra_hosts: Iterable[str] = ()) -> frozenset[str]:
    """The host names the launcher answers to: the loopback names plus ``extra_hosts``.

    Args:
        extra_hosts: host names or addresses to allow besides loopback (the ``--host``
            of ``vlhub launch --host X --allow-remote``), in any form :func:`normalise` takes.

    Returns:
        The normalised names.
    """
    return LOOPBACK_NAMES | {normalise(host) for host in extra_hosts}


class HostGuard:
    """ASGI middleware: 403 for HTTP requests and WebSocket handshakes to a Host not allowed.

    Other scopes (lifespan) pass through untouched.

    Args:
        app: the ASGI app to protect.
        allowed: normalised host names to serve, from :func:`allowed_names`.
    """

    def __init__(self, app: ASGIApp, allowed: frozenset[str]) -> None:
        self.app = app
        self.allowed = allowed

    def allows(self, scope: Scope) -> bool:
        """Whether the request in ``scope`` carries exactly one ``Host`` header naming an allowed host."""
        hosts = [value for name, value in scope.get("headers", ()) if name.lower() == b"host"]
        return len(hosts) == 1 and host_name(hosts[0].decode("latin-1")) in self.allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not self.allows(scope):
            # A WebSocket handshake is refused with the same HTTP response, through the ASGI
            # "websocket.http.response" extension (uvicorn's websockets protocols, which Streamlit uses).
            prefix = "websocket." if scope["type"] == "websocket" else ""
            await send({"type": prefix + "http.response.start", "status": 403,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                    (b"content-length", str(len(REFUSAL)).encode())]})
            await send({"type": prefix + "http.response.body", "body": REFUSAL})
            return
        await self.app(scope, receive, send)


def install(allowed: frozenset[str]) -> None:
    """Make every ASGI app Streamlit builds in this process answer only to ``allowed`` hosts.

    Args:
        allowed: normalised host names, from :func:`allowed_names`.

    Raises:
        GuardUnavailable: the installed Streamlit does not build its app through
            ``HOOK_MODULE.HOOK_NAME`` (another Streamlit version than the one pinned).
    """
    try:
        module = importlib.import_module(HOOK_MODULE)
        create = getattr(module, HOOK_NAME)
    except (ImportError, AttributeError) as exc:
        raise GuardUnavailable(f"{HOOK_MODULE}.{HOOK_NAME} is missing: {exc}") from exc

    @functools.wraps(create)
    def guarded(*args: Any, **kwargs: Any) -> HostGuard:
        return HostGuard(create(*args, **kwargs), allowed)

    setattr(module, HOOK_NAME, guarded)


def main(argv: list[str]) -> None:
    """Run ``streamlit`` behind the guard: ``[HOST ...] -- STREAMLIT-ARGS``.

    Args:
        argv: extra host names to allow besides loopback, ``--``, then the arguments of the
            ``streamlit`` command (``run APP --server.address ...``).

    Raises:
        SystemExit: 2 with a one-line reason on stderr when ``--`` is missing or the guard
            cannot be installed (the launcher never runs unguarded); otherwise Streamlit's own exit.
    """
    if "--" not in argv:
        print("usage: python -m vlhub.core.launch_guard [HOST ...] -- run APP [OPTIONS]", file=sys.stderr)
        sys.exit(2)
    split = argv.index("--")
    try:
        install(allowed_names(argv[:split]))
    except GuardUnavailable as exc:
        print(f"Error: cannot guard the launcher against DNS rebinding ({exc}), so it does not start. "
              "Fix: reinstall vlhub so that pip installs the streamlit version it pins", file=sys.stderr)
        sys.exit(2)
    from streamlit.web import cli

    sys.argv = ["streamlit", *argv[split + 1:]]
    cli.main(prog_name="streamlit")


if __name__ == "__main__":
    main(sys.argv[1:])
