"""Stage environments: separate Pythons for the heavy stacks, and running work inside them.

xtuner 0.2.0 pins ``transformers==4.48``, LMDeploy >= 0.13 needs ``transformers>=4.56``,
and the launcher wants a current ``huggingface_hub``: they cannot share one
environment. So the launcher never imports torch, xtuner or lmdeploy; heavy work
runs as a subprocess with a stage environment's Python. The pinned sets are the
``[train]`` and ``[serve]`` extras of the ``vlhub`` distribution (one source of truth).

A stage environment is a folder ``envs_dir()/NAME`` holding ``env.json`` (which
Python, adopted or created, versions seen at the last check) and, when vlhub
created it, a ``venv/``.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, requires
from pathlib import Path
from typing import Any, Iterator, Mapping

from .errors import BadInput, MissingDependency, VlhubError
from .fsutil import atomic_write_json, read_json
from .home import envs_dir
from .secrets import redact
from .types import Progress, ProgressCallback

#: The distributions each stage needs, whose versions ``env check`` reports.
KEY_PACKAGES: dict[str, tuple[str, ...]] = {
    "train": ("torch", "torchvision", "xtuner", "mmengine", "deepspeed", "transformers", "peft"),
    "serve": ("lmdeploy", "torch", "transformers"),
}
#: Build-time environment for the pinned installs (DeepSpeed without compiled ops).
INSTALL_ENV: dict[str, dict[str, str]] = {"train": {"DS_BUILD_OPS": "0"}, "serve": {}}
#: Keep NVLink multicast off in everything vlhub starts (see the device notes).
PROCESS_ENV = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
               "NVSHMEM_DISABLE_NVLS": "1", "PYTHONUNBUFFERED": "1", "PYTHONNOUSERSITE": "1"}
STAGES = tuple(KEY_PACKAGES)


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

    @property
    def ready(self) -> bool:
        return bool(self.python) and not self.missing

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "ready": self.ready, "python": self.python, "adopted": self.adopted,
                "versions": self.versions, "missing": self.missing, "gpu": self.gpu, "fix": self.fix}


def _check_stage(name: str) -> str:
    if name not in STAGES:
        raise BadInput(f"unknown stage environment {name!r}", f"use one of: {', '.join(STAGES)}")
    return name


def requirements(name: str) -> list[str]:
    """The pinned requirement strings of the ``[name]`` extra."""
    from packaging.requirements import Requirement

    _check_stage(name)
    try:
        declared = requires("vlhub") or []
    except PackageNotFoundError as exc:
        raise MissingDependency("vlhub is not installed", "run `pip install -e .` in the checkout") from exc
    out = []
    for line in declared:
        req = Requirement(line)
        if req.marker and req.marker.evaluate({"extra": name}) and not req.marker.evaluate({"extra": ""}):
            req.marker = None
            out.append(str(req))
    return out


def env_folder(name: str) -> Path:
    return envs_dir() / _check_stage(name)


def _venv_python(folder: Path) -> Path:
    return folder / "venv" / "bin" / "python"


def python_for(name: str) -> Path | None:
    """The Python of a stage environment, if one is created or adopted."""
    info = read_json(env_folder(name) / "env.json", {}, expect=dict)
    python = info.get("python")
    if python and Path(python).exists():
        return Path(python)
    venv = _venv_python(env_folder(name))
    return venv if venv.exists() else None


_PROBE = """
import json, sys
from importlib.metadata import version, PackageNotFoundError
out = {}
for n in sys.argv[1:]:
    try: out[n] = version(n)
    except PackageNotFoundError: out[n] = None
print(json.dumps({"python": sys.version.split()[0], "versions": out}))
"""


def _probe_versions(python: Path, packages: tuple[str, ...]) -> dict[str, Any]:
    proc = subprocess.run([str(python), "-c", _PROBE, *packages], capture_output=True, text=True,
                          timeout=60, env=clean_env())
    if proc.returncode != 0:
        raise BadInput(f"{python} does not run: {proc.stderr.strip()[-300:]}",
                       "point --python at a working interpreter")
    return json.loads(proc.stdout)


def gpu_summary() -> str | None:
    """``nvidia-smi -L`` in one line, or None when no NVIDIA GPU is visible."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    return "; ".join(lines) or None


def check(name: str) -> EnvStatus:
    """Versions, missing packages and GPU visibility of one stage environment (fast)."""
    folder = env_folder(name)
    info = read_json(folder / "env.json", {}, expect=dict)
    python = python_for(name)
    status = EnvStatus(name, str(python) if python else None, adopted=bool(info.get("adopted")),
                       gpu=gpu_summary())
    if python is None:
        status.missing = list(KEY_PACKAGES[name])
        status.fix = f"vlhub env create {name}   (or: vlhub env use {name} --python /path/to/python)"
        return status
    probe = _probe_versions(python, KEY_PACKAGES[name])
    status.versions = probe["versions"]
    status.missing = [pkg for pkg, ver in status.versions.items() if ver is None]
    if status.missing:
        status.fix = f"vlhub env create {name}   (repairs the environment)"
    return status


def clean_env(extra: Mapping[str, str] | None = None, python: Path | None = None) -> dict[str, str]:
    """The environment for a stage process: no PYTHONPATH leaking in, the env's bin first on PATH."""
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
    """Create or repair a stage environment with the pinned set; re-running resumes."""
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
    env = clean_env(INSTALL_ENV[name], python)
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
    """Use an existing interpreter (e.g. a tutorial's ``xtuner-env``) as a stage environment."""
    path = Path(python).expanduser()
    if not path.exists():
        raise BadInput(f"--python {python}: no such file", "give the full path of the environment's python")
    path = path.absolute()
    probe = _probe_versions(path, KEY_PACKAGES[_check_stage(name)])
    missing = [pkg for pkg, ver in probe["versions"].items() if ver is None]
    if missing:
        raise BadInput(f"--python {path} lacks {', '.join(missing)} needed by the {name} stage",
                       f"install them there (`{path} -m pip install 'vlhub[{name}]'` pins), or use `vlhub env create {name}`")
    folder = env_folder(name)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / "env.json", {"python": str(path), "adopted": True,
                                            "versions": probe["versions"], "checked": time.time()})
    return check(name)


def require(name: str) -> Path:
    """The Python of a ready stage environment, or an error saying how to get one."""
    python = python_for(name)
    if python is None:
        raise MissingDependency(f"the {name} stage environment is not installed",
                                f"run `vlhub env create {name}` (or `vlhub env use {name} --python PATH`)")
    return python


def workers_dir() -> Path:
    """The folder of worker scripts that run inside stage environments."""
    from vlhub.plugins import workers

    return Path(workers.__file__).parent


def run_worker(name: str, worker: str, args: list[str], *, progress: ProgressCallback | None = None,
               timeout: float | None = None, extra_env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run ``workers/WORKER.py ARGS`` with the stage's Python and return its result.

    Workers speak JSON lines on stdout: ``{"event": "progress", ...}``, one
    ``{"event": "result", ...}`` and, on a failure the user can fix,
    ``{"event": "error", "message": ..., "hint": ..., "code": 2}``. Errors cross
    the boundary as those lines, never as tracebacks (stderr is kept for ``--debug``).
    """
    python = require(name)
    script = workers_dir() / f"{worker}.py"
    cmd = [str(python), str(script), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=clean_env(extra_env, python))
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    assert proc.stdout is not None and proc.stderr is not None
    deadline = time.monotonic() + timeout if timeout else None
    for line in proc.stdout:
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        event = msg.pop("event", None) if isinstance(msg, dict) else None
        if event == "progress" and progress:
            progress(Progress(**{k: msg[k] for k in ("task", "done", "total", "unit", "message") if k in msg}))
        elif event == "result":
            result = msg
        elif event == "error":
            error = msg
        if deadline and time.monotonic() > deadline:
            proc.kill()
            raise VlhubError(f"{worker} in the {name} environment timed out", "try again, or run with --debug")
    stderr = proc.stderr.read()
    code = proc.wait()
    if error is not None:
        cls = BadInput if error.get("code") == 2 else VlhubError
        raise cls(redact(error.get("message", "failed")), redact(error.get("hint", "")))
    if code != 0 or result is None:
        logging.getLogger(__name__).debug("%s stderr:\n%s", worker, redact(stderr))
        tail = redact(stderr.strip().splitlines()[-1] if stderr.strip() else f"exit {code}")
        raise VlhubError(f"{worker} failed in the {name} environment: {tail}",
                         "`vlhub env check` shows the environment; rerun with `vlhub --debug` for the full log")
    return result
