"""Fault injection: each file-system error a disk can raise, under each command, ends in one line.

A ``sitecustomize`` on PYTHONPATH makes every write-like call of the ``vlhub`` process (``open`` for
writing, ``os.open`` with a write flag, ``mkdir``, ``replace``/``rename``) under ``$VLHUB_FAULT_PATH``
raise ``OSError($VLHUB_FAULT_ERRNO)`` with that path, as a full disk, a read-only mount or a
permission problem would. The boundary mapper (:mod:`vlhub.core.boundary`) must turn it into
exactly one ``Error: ... Fix: ...`` line that names the path, with exit 1 (the work failed: a
full disk) or 2 (a setting is at fault: read-only, permissions), no traceback, and the user's
files unchanged.
"""
from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from conftest import run_vlhub
from publish_helpers import make_model, tree_digest
from servers.git_lfs import GitLfsServer
from servers.openai_api import OpenAITestServer

INJECTOR = """\
import builtins, errno, io, os
_root = os.environ.get("VLHUB_FAULT_PATH")
_code = int(os.environ.get("VLHUB_FAULT_ERRNO", "0"))


def _hit(path):
    try:
        return bool(_root) and os.path.abspath(os.fsdecode(path)).startswith(_root)
    except TypeError:
        return False


def _fail(path):
    raise OSError(_code, os.strerror(_code), os.fsdecode(path))


def _wrap_open(real):
    def fake(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+") and _hit(file):
            _fail(file)
        return real(file, mode, *args, **kwargs)
    return fake


_os_open = os.open


def _fake_os_open(path, flags, *args, **kwargs):
    if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and _hit(path):
        _fail(path)
    return _os_open(path, flags, *args, **kwargs)


def _wrap_path_call(real):
    def fake(src, *args, **kwargs):
        dst = args[0] if args else None
        if _hit(src) or (dst is not None and _hit(dst)):
            _fail(dst if dst is not None and _hit(dst) else src)
        return real(src, *args, **kwargs)
    return fake


if _root and _code:
    builtins.open = io.open = _wrap_open(io.open)
    os.open = _fake_os_open
    os.mkdir = _wrap_path_call(os.mkdir)
    os.replace = _wrap_path_call(os.replace)
    os.rename = _wrap_path_call(os.rename)
"""

RECORD = {"image": "a.png", "conversations": [{"from": "human", "value": "<image>\nWhat is this?"},
                                              {"from": "gpt", "value": "A square."}]}
#: errno -> (exit code, a fragment of the one-line message)
FAULTS = {
    errno.ENOSPC: (1, "is full (No space left on device)"),
    errno.EROFS: (2, "read-only file system"),
    errno.EACCES: (2, "ermission denied"),
}


@pytest.fixture
def injector(tmp_path: Path) -> dict[str, str]:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(INJECTOR)
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))}


def _source(work: Path) -> Path:
    from PIL import Image

    src = work / "src"
    src.mkdir(parents=True)
    Image.new("RGB", (32, 32), (200, 10, 10)).save(src / "a.png")
    (src / "chat.json").write_text(json.dumps([RECORD] * 4))
    return src


def _prepare(work: Path, servers: dict[str, Any]) -> tuple[list[str], Path]:
    src = _source(work)
    out = work / "out" / "prepared"
    return ["data", "prepare", "llava-json", "--source", str(src / "chat.json"), "--out", str(out),
            "--opt", f"image_root={src}"], work / "out"


def _export(work: Path, servers: dict[str, Any]) -> tuple[list[str], Path]:
    (work / "out").mkdir(parents=True)
    return ["chat", "--backend", "openai", "--base-url", servers["openai"].base_url, "--model", "base", "-m", "hi",
            "--export", str(work / "out" / "chat.json")], work / "out"


def _publish_home(work: Path, servers: dict[str, Any]) -> tuple[list[str], Path]:
    model = make_model(work / "model")
    return ["publish", str(model), "--to", f"git:{servers['git'].repo_url('org/InternVL2-fault')}", "--dry-run"], \
        Path(os.environ["VLHUB_HOME"])


COMMANDS: dict[str, Callable[[Path, dict[str, Any]], tuple[list[str], Path]]] = {
    "data-prepare-out": _prepare,
    "chat-export": _export,
    "publish-staging-in-home": _publish_home,
}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("fault-servers")
    with GitLfsServer(root / "git", token="fault-token-77a1") as git, OpenAITestServer(models=("base",)) as openai:
        yield {"git": git, "openai": openai}


@pytest.mark.parametrize("code", sorted(FAULTS), ids=[errno.errorcode[c] for c in sorted(FAULTS)])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_file_system_error_is_one_line_with_path_and_fix(command: str, code: int, tmp_path: Path,
                                                         injector: dict[str, str], servers: dict[str, Any],
                                                         isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLHUB_GIT_TOKEN", servers["git"].token)
    work = tmp_path / "user"
    argv, fault_root = COMMANDS[command](work, servers)
    before = tree_digest(work)
    proc = run_vlhub(*argv, env={**injector, "VLHUB_FAULT_PATH": str(fault_root), "VLHUB_FAULT_ERRNO": str(code)},
                     timeout=120)
    exit_code, fragment = FAULTS[code]
    shown = f"exit {proc.returncode}\n{proc.stderr[-3000:]}"
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert proc.returncode == exit_code, shown
    assert len(errors) == 1 and "Fix:" in errors[0], shown
    assert "Traceback" not in proc.stderr, shown
    line = errors[0]
    if command == "publish-staging-in-home":
        assert "VLHUB_HOME" in line and str(fault_root) in line, shown
    else:
        assert fragment in line and str(fault_root) in line, shown
    assert tree_digest(work) == before


def test_doctor_reports_a_read_only_home_as_a_finding(injector: dict[str, str], isolated: Path) -> None:
    home = Path(os.environ["VLHUB_HOME"])
    proc = run_vlhub("doctor", "--json", env={**injector, "VLHUB_FAULT_PATH": str(home),
                                              "VLHUB_FAULT_ERRNO": str(errno.EROFS)})
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["home"] == {"path": str(home.resolve()), "writable": False}
    assert any("VLHUB_HOME" in fix and "not writable" in fix for fix in report["fixes"])


def test_the_injector_really_fails_writes(tmp_path: Path, injector: dict[str, str]) -> None:
    """The harness itself: a plain write under the fault path fails with the chosen errno."""
    import subprocess

    target = tmp_path / "x" / "f.txt"
    code = "open(__import__('sys').argv[1], 'w')"
    proc = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True,
                          env={**os.environ, **injector, "VLHUB_FAULT_PATH": str(tmp_path / "x"),
                               "VLHUB_FAULT_ERRNO": str(errno.ENOSPC)})
    assert "No space left on device" in proc.stderr and not target.exists()


def test_progress_clean_up_never_lands_on_the_error_line(tmp_path: Path, injector: dict[str, str],
                                                        isolated: Path) -> None:
    """A failure after a progress bar was drawn: the error still starts its own line."""
    work = tmp_path / "user"
    argv, out = _prepare(work, {})
    proc = run_vlhub(*argv, env={**injector, "VLHUB_FAULT_PATH": str(out), "VLHUB_FAULT_ERRNO": str(errno.ENOSPC)})
    assert any(line.startswith("Error:") for line in proc.stderr.split("\n")), repr(proc.stderr[-500:])
    assert "\rError:" not in proc.stderr


def test_boundary_maps_each_kind_of_error(tmp_path: Path) -> None:
    """Errors raised for real (a loop, a name that is not UTF-8, a refused and a silent server)."""
    import socket

    import requests

    from vlhub.core.boundary import require_free_space, user_error, working_on
    from vlhub.core.errors import BadInput, VlhubError

    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(OSError) as raised:
        loop.stat()
    error = user_error(raised.value)
    assert isinstance(error, BadInput) and "symlink loop" in error.one_line() and str(loop) in error.one_line()

    bad_name = os.fsdecode(b"\xc4\xa3\xd0\xcd.txt")  # GBK bytes, as unzip leaves them
    with working_on(tmp_path), pytest.raises(UnicodeEncodeError) as raised:
        bad_name.encode("utf-8")
    error = user_error(raised.value)
    assert error.exit_code == 2 and "not valid UTF-8" in error.one_line() and "Fix: rename" in error.one_line()

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(requests.ConnectionError) as raised:
        requests.get(f"http://127.0.0.1:{port}/x", timeout=5)
    assert "cannot reach" in user_error(raised.value).one_line()

    with socket.socket() as silent:  # accepts, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/api"
        with pytest.raises(requests.ReadTimeout) as raised:
            requests.get(url, timeout=(2, 0.5))
    line = user_error(raised.value).one_line()
    assert "sent no answer within the read timeout" in line and "127.0.0.1" in line and "VLHUB_READ_TIMEOUT" in line

    with pytest.raises(VlhubError) as raised_free:
        require_free_space(tmp_path / "new" / "folder", 1 << 62, "the converted model")
    assert "the converted model needs" in raised_free.value.one_line() and str(tmp_path) in raised_free.value.one_line()
    require_free_space(tmp_path, 1, "one byte")


@pytest.mark.parametrize("command", ["prepare", "convert"])
def test_long_writes_check_free_space_first(command: str, tmp_path: Path, isolated: Path) -> None:
    """A 1 MiB tmpfs as the output's disk: prepare and convert say how much they need before writing."""
    import subprocess

    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("mounting a size-limited tmpfs needs root here")
    try:
        if command == "prepare":
            argv, _ = _prepare(tmp_path / "user", {})
            argv[argv.index("--out") + 1] = str(mount / "prepared")
        else:
            from conftest import train_python
            from fixtures.checkpoints import build_checkpoint

            built = build_checkpoint(tmp_path / "ckpt", train_python())
            argv = ["convert", str(built["checkpoint"]), "--out", str(mount / "model")]
        proc = run_vlhub(*argv, timeout=300)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
        assert proc.returncode == 1 and len(errors) == 1, proc.stderr
        assert "needs" in errors[0] and "is free" in errors[0] and str(mount) in errors[0], errors[0]
        assert list(mount.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mount)], check=False)
