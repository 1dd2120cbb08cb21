"""``vlhub doctor``: what this machine has for each stage, and what to install."""
from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from typing import Any

from . import plugins, stage
from .boundary import user_error
from .home import home_path, home_writable
from .secrets import find_token


def _tool_version(cmd: list[str]) -> str | None:
    if not shutil.which(cmd[0]):
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout or out.stderr).strip().splitlines()[0] if out.returncode == 0 else None


def diagnose() -> dict[str, Any]:
    """A JSON-ready report: Python, git, git-lfs, GPU, stage environments, and every secret the plugins declare.

    ``tokens``: secret name -> ``{"hub", "found", "source"}`` (where it was found, never the value);
    ``secrets``: secret name -> its declaration (``env`` variables, ``login`` store, ``description``) and
    ``declared_by`` (the objects that read it, e.g. ``["publisher hf"]``); each environment's ``warnings``
    (:meth:`vlhub.core.stage.EnvStatus.public`) are printed under it by ``vlhub doctor``.
    """
    tools = {
        "python": f"{platform.python_version()} ({sys.executable})",
        "git": _tool_version(["git", "--version"]),
        "git-lfs": _tool_version(["git", "lfs", "version"]),
    }
    fixes = []
    if not tools["git"]:
        fixes.append("install git: sudo apt-get install -y git")
    if not tools["git-lfs"]:
        fixes.append("install Git LFS: sudo apt-get install -y git-lfs")
    home_problem = home_writable()
    if home_problem:
        fixes.append(f"{home_problem}: set VLHUB_HOME to a writable folder")
    envs: dict[str, Any] = {}
    for name in stage.names():
        try:
            envs[name] = stage.check(name).public()
        except OSError as exc:  # the envs folder cannot even be created: a finding, not a crash
            envs[name] = {"name": name, "ready": False, "fix": user_error(exc).one_line()}
    fixes += [env["fix"] for env in envs.values() if env["fix"] and env["fix"] not in fixes]
    host = plugins.host()
    declared, users = host.secrets(), host.secret_users()
    return {
        "tools": tools,
        "home": {"path": str(home_path()), "writable": not home_problem},
        "gpu": stage.gpu_summary(),
        "environments": envs,
        "tokens": {name: find_token(secret).public() for name, secret in declared.items()},
        "secrets": {name: {**secret.public(), "declared_by": users.get(name, [])} for name, secret in declared.items()},
        "fixes": fixes,
    }
