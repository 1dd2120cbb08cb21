"""Stage environments: separate Pythons for the heavy stacks, and running work inside them.

xtuner 0.2.0 pins ``transformers==4.48``, LMDeploy >= 0.13 needs ``transformers>=4.56``,
and the launcher wants a current ``huggingface_hub``: they cannot share one
environment. So the launcher never imports torch, xtuner or lmdeploy; heavy work
runs as a subprocess with a stage environment's Python (:mod:`vlhub.core.worker`).

The environments are declared by plugins, not here: a registered object (a trainer, a
converter, a chat backend, ...) whose ``stage_env`` attribute is a :class:`StageEnv` names
the environment its worker scripts run in, with its pinned requirements. The built-in
``train`` and ``serve`` pins are the ``[train]`` and ``[serve]`` extras of the ``vlhub``
distribution (one source of truth).

A stage environment is a folder ``envs_dir()/NAME`` holding ``env.json`` (which
Python, adopted or created, versions seen at the last check) and, when vlhub
created it, a ``venv/``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, requires
from pathlib import Path
from typing import Any, Iterator, Mapping

from . import messages, plugins
from .errors import BadInput, MissingDependency, VlhubError
from .fsutil import atomic_write_json, read_json
from .home import envs_dir
from .secrets import redact
from .types import Progress, ProgressCallback

#: Keep NVLink multicast off in everything vlhub starts (see the device notes).
PROCESS_ENV = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
               "NVSHMEM_DISABLE_NVLS": "1", "PYTHONUNBUFFERED": "1", "PYTHONNOUSERSITE": "1"}


@dataclass(frozen=True)
class StageEnv:
    """A stage environment a plugin's worker scripts run in (set as the plugin object's ``stage_env``).

    ``packages`` are the distributions ``vlhub env check`` reports (missing ones make it not ready);
    the pins installed by ``vlhub env create NAME`` are ``requirements`` plus the ``extra`` of
    ``distribution`` (the plugin's own distribution, so its pins live in its packaging metadata);
    ``install_env`` is set while pip installs them.
    """

    name: str
    description: str
    packages: tuple[str, ...]
    requirements: tuple[str, ...] = ()
    extra: str = ""
    distribution: str = "vlhub"
    install_env: Mapping[str, str] = field(default_factory=dict)

    def pins(self) -> list[str]:
        """The requirement strings to install: ``requirements`` plus those of the ``extra``.

        Raises:
            MissingDependency: the distribution that declares the extra is not installed.
        """
        return [*self.requirements, *(_extra_requirements(self.distribution, self.extra) if self.extra else [])]


@dataclass
class EnvStatus:
    """What ``vlhub env check`` reports for one stage environment."""

    name: str
    python: str | None
    adopted: bool = False
    versions: dict[str, str | None] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    gpu: str | None = None
    fix: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        """An interpreter is there and no reported package is missing."""
        return bool(self.python) and not self.missing

    def public(self) -> dict[str, Any]:
        """JSON-ready: name, ready, python, adopted, versions, missing, gpu, fix, warnings (one line each,
        with its fix; they do not make the environment not ready)."""
        return {"name": self.name, "ready": self.ready, "python": self.python, "adopted": self.adopted,
                "versions": self.versions, "missing": self.missing, "gpu": self.gpu, "fix": self.fix,
                "warnings": [str(w) for w in self.warnings], "warning_details": messages.details(self.warnings)}


def _extra_requirements(distribution: str, extra: str) -> list[str]:
    from packaging.requirements import Requirement

    try:
        declared = requires(distribution) or []
    except PackageNotFoundError as exc:
        raise MissingDependency(f"{distribution} is not installed", f"install {distribution} (`pip install -e .` "
                                "in a checkout)") from exc
    out = []
    for line in declared:
        req = Requirement(line)
        if req.marker and req.marker.evaluate({"extra": extra}) and not req.marker.evaluate({"extra": ""}):
            req.marker = None
            out.append(str(req))
    return out


def env_of(obj: object) -> str | None:
    """The name of the stage environment a plugin object (trainer, converter, backend, ...) declares as its
    ``stage_env``, or ``None`` when it declares none."""
    env = getattr(obj, "stage_env", None)
    return env.name if isinstance(env, StageEnv) else None


def envs() -> dict[str, StageEnv]:
    """Every stage environment the loaded plugins declare, by name, in the order of the plugin families
    (trainers before chat backends: ``train``, ``serve``); the first declaration of a name wins."""
    found: dict[str, StageEnv] = {}
    for family in plugins.FAMILIES:
        for obj in plugins.registry(family).values():
            env = getattr(obj, "stage_env", None)
            if isinstance(env, StageEnv):
                found.setdefault(env.name, env)
    return found


def names() -> list[str]:
    """The names of the declared stage environments (``train``, ``serve``, and those of plugins)."""
    return list(envs())


def spec(name: str) -> StageEnv:
    """The declared stage environment ``name``.

    Raises:
        BadInput: no loaded plugin declares it (the message lists those that exist).
    """
    declared = envs()
    if name not in declared:
        raise BadInput(f"unknown stage environment {name!r}",
                       f"use one of: {', '.join(declared) or 'none (no plugin declares one)'}")
    return declared[name]


def requirements(name: str) -> list[str]:
    """The pinned requirement strings of stage environment ``name`` (:meth:`StageEnv.pins`).

    Raises:
        BadInput: unknown environment. MissingDependency: its distribution is not installed.
    """
    return spec(name).pins()


def env_folder(name: str) -> Path:
    """The folder of stage environment ``name`` (``envs_dir()/NAME``; not created here).

    Raises:
        BadInput: unknown environment.
    """
    return envs_dir() / spec(name).name


def _venv_python(folder: Path) -> Path:
    return folder / "venv" / "bin" / "python"


def python_for(name: str) -> Path | None:
    """The Python of stage environment ``name`` when one is created or adopted (and exists), else ``None``.

    Raises:
        BadInput: unknown environment, or its ``env.json`` is damaged.
    """
    info = read_json(env_folder(name) / "env.json", {}, expect=dict)
    python = info.get("python")
    if python and Path(python).exists():
        return Path(python)
    venv = _venv_python(env_folder(name))
    return venv if venv.exists() else None


_PROBE = """
import json, sys
from importlib.metadata import version, PackageNotFoundError
from importlib.util import find_spec
out = {}
for n in sys.argv[1:]:
    try: out[n] = version(n)
    except PackageNotFoundError: out[n] = None
print(json.dumps({"python": sys.version.split()[0], "versions": out, "prefix": sys.prefix,
                  "torch": find_spec("torch") is not None}))
"""
_PREFIX = "import sys; print(sys.prefix)"


def _probe_versions(python: Path, packages: tuple[str, ...]) -> dict[str, Any]:
    proc = subprocess.run([str(python), "-c", _PROBE, *packages], capture_output=True, text=True,
                          timeout=60, env=clean_env())
    if proc.returncode != 0:
        raise BadInput(f"{python} does not run: {proc.stderr.strip()[-300:]}",
                       "point --python at a working interpreter")
    return json.loads(proc.stdout)


def _gpu_lines() -> list[str]:
    """The lines of ``nvidia-smi -L`` (none without an NVIDIA driver)."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def gpu_summary() -> str | None:
    """``nvidia-smi -L`` in one line, or None when no NVIDIA GPU is visible."""
    return "; ".join(_gpu_lines()) or None


def gpus() -> list[tuple[int, str]]:
    """The NVIDIA GPUs this machine shows (``nvidia-smi -L``: ``GPU 0: NVIDIA H100 80GB HBM3 (UUID: ...)``) as
    ``(index, name)``, numbered as ``CUDA_VISIBLE_DEVICES`` counts them with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``;
    empty without a driver."""
    found = []
    for line in _gpu_lines():
        head, _, rest = line.partition(":")
        if head.startswith("GPU ") and head[4:].strip().isdigit():
            found.append((int(head[4:]), rest.split("(UUID")[0].strip()))
    return found


def _script_interpreter(script: Path, path: str) -> Path | None:
    """The interpreter a console script's first line names: ``#!/abs/python``, ``#!/usr/bin/env python3``
    (looked up on ``path``), or pip's ``#!/bin/sh`` form for long paths (``'''exec' "/abs/python" ...``)."""
    try:
        with open(script, "rb") as handle:
            head = handle.read(1024).decode("utf-8", errors="replace").splitlines()
    except OSError:
        return None
    if not head or not head[0].startswith("#!"):
        return None
    words = head[0][2:].split()
    if words and words[0] == "/bin/sh" and len(head) > 1 and head[1].startswith("'''exec' "):
        words = [head[1].split('"')[1]] if head[1].count('"') >= 2 else []
    if len(words) >= 2 and Path(words[0]).name == "env":
        found = shutil.which(words[1], path=path)
        return Path(found) if found else None
    return Path(words[0]) if words else None


def launcher_warning(python: Path, prefix: str) -> messages.Keyed | None:
    """A warning when the ``torchrun`` that processes started for stage environment ``python`` would run
    belongs to another interpreter (``None`` when it is the environment's own, or there is none).

    The script checked is the first ``torchrun`` on the ``PATH`` vlhub gives those processes (the
    environment's ``bin/`` first, :func:`clean_env`): xtuner 0.2.0's entry point runs ``torchrun`` from
    ``PATH`` for ``NPROC_PER_NODE`` > 1, and another Python's ``torchrun`` starts ranks that lack the
    environment's packages (every rank dies on ``ModuleNotFoundError``; issue 19).

    Args:
        python: the environment's interpreter.
        prefix: its ``sys.prefix`` (from the probe).
    Returns:
        One line naming the script, the interpreter it runs and the fix, or ``None``.
    """
    path = clean_env(python=python)["PATH"]
    found = shutil.which("torchrun", path=path)
    if found is None:
        return None
    script = Path(found)
    interpreter = _script_interpreter(script, path)
    if interpreter is not None and os.path.abspath(interpreter.parent) == os.path.abspath(python.parent):
        return None  # a script of this environment's own bin/
    other = None
    if interpreter is not None:
        try:
            proc = subprocess.run([str(interpreter), "-c", _PREFIX], capture_output=True, text=True, timeout=60,
                                  env=clean_env())
            other = proc.stdout.strip() if proc.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            other = None
        if other and os.path.realpath(other) == os.path.realpath(prefix):
            return None
    runs = f"{interpreter} (prefix {other})" if other else \
        f"{interpreter or 'an unknown interpreter'}, which does not run"
    return messages.Keyed("env.foreign_torchrun", script=str(script), runs=runs, python=str(python))


def check(name: str) -> EnvStatus:
    """Versions, missing packages and GPU visibility of one stage environment (fast: one probe process), and
    a warning when its ``torchrun`` belongs to another interpreter (:func:`launcher_warning`).

    Raises:
        BadInput: unknown environment, a damaged ``env.json``, or an interpreter that does not run.
    """
    folder = env_folder(name)
    info = read_json(folder / "env.json", {}, expect=dict)
    python = python_for(name)
    status = EnvStatus(name, str(python) if python else None, adopted=bool(info.get("adopted")),
                       gpu=gpu_summary())
    if python is None:
        status.missing = list(spec(name).packages)
        status.fix = f"vlhub env create {name}   (or: vlhub env use {name} --python /path/to/python)"
        return status
    probe = _probe_versions(python, spec(name).packages)
    status.versions = probe["versions"]
    status.missing = [pkg for pkg, ver in status.versions.items() if ver is None]
    if status.missing:
        status.fix = f"vlhub env create {name}   (repairs the environment)"
    warning = launcher_warning(python, probe["prefix"]) if probe["torch"] else None
    status.warnings = [warning] if warning else []
    return status


def clean_env(extra: Mapping[str, str] | None = None, python: Path | None = None) -> dict[str, str]:
    """The environment variables for a process vlhub starts: no PYTHONPATH leaking in, NVLink multicast off
    (:data:`PROCESS_ENV`), ``python``'s bin folder first on PATH, then ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(PROCESS_ENV)
    if python is not None:
        env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    if extra:
        env.update(extra)
    return env


def _stream(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[str]:
    with open(log, "a", encoding="utf-8") as sink, subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sink.write(redact(line))
            yield line.rstrip()
        if proc.wait() != 0:
            raise VlhubError(f"`{' '.join(cmd[:4])} ...` failed (exit {proc.returncode}); see {log}",
                             "check the network/disk, then run the same command again: it resumes")


def create(name: str, progress: ProgressCallback | None = None, base_python: str | None = None) -> EnvStatus:
    """Create or repair stage environment ``name`` with its pins (:meth:`StageEnv.pins`); re-running resumes.

    Args:
        name: the environment.
        progress: receives the steps and pip's lines.
        base_python: the interpreter that creates the virtual environment (default: this one).
    Returns:
        Its status after the install.
    Raises:
        BadInput: unknown environment. VlhubError: pip failed (its log, ``install.log``, is named).
    """
    folder = env_folder(name)
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "install.log"

    def report(msg: str, step: int, detail: str = "") -> None:
        if progress:
            progress(Progress(f"env create {name}", step, 3, "steps", f"{msg} {detail}".strip()))

    reqs = requirements(name)
    python = _venv_python(folder)
    if not python.exists():
        report("creating virtual environment", 0)
        shutil.rmtree(folder / "venv", ignore_errors=True)
        subprocess.run([base_python or sys.executable, "-m", "venv", str(folder / "venv")], check=True,
                       env=clean_env())
    report("installing " + " ".join(reqs), 1)
    env = clean_env(spec(name).install_env, python)
    cmd = [str(python), "-m", "pip", "install", "--progress-bar", "off", *reqs]
    for line in _stream(cmd, env, log):
        if line.startswith(("Collecting", "Downloading", "Installing", "Successfully")):
            report("installing", 1, line[:120])
    report("checking", 2)
    status = check(name)
    atomic_write_json(folder / "env.json", {"python": str(python), "adopted": False,
                                            "versions": status.versions, "checked": time.time()})
    report("done", 3)
    return status


def adopt(name: str, python: str) -> EnvStatus:
    """Use an existing interpreter (e.g. a tutorial's ``xtuner-env``) as stage environment ``name``.

    Returns:
        Its status.
    Raises:
        BadInput: unknown environment, no such interpreter, or it lacks one of the environment's packages
            (nothing is recorded then).
    """
    path = Path(python).expanduser()
    if not path.exists():
        raise BadInput(f"--python {python}: no such file", "give the full path of the environment's python")
    path = path.absolute()
    env = spec(name)
    probe = _probe_versions(path, env.packages)
    missing = [pkg for pkg, ver in probe["versions"].items() if ver is None]
    if missing:
        wanted = f"{env.distribution}[{env.extra}]" if env.extra else " ".join(env.requirements)
        raise BadInput(f"--python {path} lacks {', '.join(missing)} needed by the {name} stage",
                       f"install them there (`{path} -m pip install '{wanted}'` pins), or use `vlhub env create {name}`")
    folder = env_folder(name)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / "env.json", {"python": str(path), "adopted": True,
                                            "versions": probe["versions"], "checked": time.time()})
    return check(name)


def require(name: str) -> Path:
    """The Python of stage environment ``name``.

    Raises:
        MissingDependency: it is not installed (the hint says how to get it). BadInput: unknown environment.
    """
    python = python_for(name)
    if python is None:
        raise MissingDependency(f"the {name} stage environment is not installed",
                                f"run `vlhub env create {name}` (or `vlhub env use {name} --python PATH`)")
    return python
