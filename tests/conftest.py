"""Shared fixtures: every test gets its own vlhub home, HOME and git config; no hub tokens leak in."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Stage environments are big; tests share the cached ones (created by `make test`).
SHARED_ENVS = Path(os.environ.get("VLHUB_ENVS_DIR") or Path.home() / ".vlhub" / "envs").resolve()
os.environ["VLHUB_ENVS_DIR"] = str(SHARED_ENVS)  # also for module-scoped fixtures, built before `isolated`
TOKEN_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "MODELSCOPE_API_TOKEN", "OPENXLAB_TOKEN",
              "VLHUB_GIT_TOKEN", "OPENAI_API_KEY", "OPENAI_BASE_URL", "HF_ENDPOINT", "VLHUB_LOAD_PLUGINS")


@pytest.fixture(autouse=True)
def isolated(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private VLHUB_HOME and HOME per test, shared stage envs, no tokens or git config from outside."""
    from vlhub.core import plugins

    base = tmp_path_factory.mktemp("home")
    home = base / "vlhub-home"
    monkeypatch.setenv("VLHUB_HOME", str(home))
    monkeypatch.setenv("VLHUB_ENVS_DIR", str(SHARED_ENVS))
    monkeypatch.setenv("HOME", str(base))
    monkeypatch.setenv("HF_HOME", str(base / "hf"))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(base / "gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_TERMINAL_PROMPT", "0")
    (base / "gitconfig").write_text("[user]\n\tname = vlhub tests\n\temail = tests@vlhub.invalid\n")
    for name in TOKEN_VARS:
        monkeypatch.delenv(name, raising=False)
    plugins.reset()
    yield home
    plugins.reset()


def run_vlhub(*args: str, env: dict[str, str] | None = None, check: bool = False,
              timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real ``vlhub`` console script in a subprocess (stdout and stderr kept apart)."""
    exe = Path(sys.executable).parent / "vlhub"
    proc = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"vlhub {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


#: A CPU torch + transformers 5.x interpreter (what LMDeploy's side runs), to check remote code on both majors.
T5_PYTHON = SHARED_ENVS / "t5check" / "venv" / "bin" / "python"


def t5_python() -> Path:
    """The transformers-5 check environment's Python; a clear failure (never a skip) when absent."""
    if not T5_PYTHON.exists():
        pytest.fail(f"the transformers-5 check environment is missing ({T5_PYTHON}): run `make test` "
                    "(scripts/setup.sh --test creates it)")
    return T5_PYTHON


def train_python() -> Path:
    """The cached train stage environment's Python; a clear failure (never a skip) when absent."""
    from vlhub.core import stage

    python = stage.python_for("train")
    if python is None:
        pytest.fail("the train stage environment is missing: run `make test` (it creates it), "
                    "or `.venv/bin/vlhub env create train`")
    return python
