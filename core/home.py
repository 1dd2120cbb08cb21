"""The vlhub home folder (``~/.vlhub``, or ``$VLHUB_HOME``) and its layout."""
from __future__ import annotations

import os
from pathlib import Path


def vlhub_home() -> Path:
    """The resolved home folder; created on first use."""
    home = Path(os.environ.get("VLHUB_HOME") or Path.home() / ".vlhub").expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


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
