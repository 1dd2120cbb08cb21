"""The vlhub home folder (``~/.vlhub``, or ``$VLHUB_HOME``) and its layout."""
from __future__ import annotations

import os
from pathlib import Path


def home_path() -> Path:
    """The home folder's path (``$VLHUB_HOME`` or ``~/.vlhub``), resolved, without creating it."""
    return Path(os.environ.get("VLHUB_HOME") or Path.home() / ".vlhub").expanduser().resolve()


def vlhub_home() -> Path:
    """The resolved home folder; created on first use.

    Raises:
        OSError: it cannot be created (the boundary mapper, :mod:`vlhub.core.boundary`, turns this
            into "VLHUB_HOME (PATH) is not writable" with the fix).
    """
    home = home_path()
    home.mkdir(parents=True, exist_ok=True)
    return home


def home_writable() -> str:
    """``""`` when files can be created in the home folder, else one line saying why not (for ``vlhub doctor``)."""
    home = home_path()
    try:
        home.mkdir(parents=True, exist_ok=True)
        probe = home / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return f"VLHUB_HOME ({home}) is not writable ({exc.strerror or exc})"
    return ""


def runs_dir() -> Path:
    """Where run folders live."""
    path = vlhub_home() / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def envs_dir() -> Path:
    """Where stage environments live (``$VLHUB_ENVS_DIR`` overrides, e.g. a shared cache)."""
    override = os.environ.get("VLHUB_ENVS_DIR")
    path = Path(override).expanduser().resolve() if override else vlhub_home() / "envs"
    path.mkdir(parents=True, exist_ok=True)
    return path
