"""Runs every case of :mod:`cases` through the real ``vlhub`` command.

Each case must end with its exit code, exactly one ``Error: ... Fix: ...`` line on stderr that
contains the expected fragment, no traceback, and no file changed in the user's folders
(the case's folder and the shared inputs, hashed before and after).
"""
from __future__ import annotations

import collections
import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from cases import CASES, Case, Ctx, Shared
from conftest import train_python
from fixtures.checkpoints import build_checkpoint
from fixtures.datasets import make_foodieqa
from publish_helpers import hub_server_class
from servers.git_lfs import GitLfsServer
from servers.openai_api import OpenAITestServer
from vlhub.core import data

TOKEN = "badinput-token-7c1d"
#: Runs the command and writes its peak RSS (kB) to the file named first: a fresh parent, so only its child counts.
RSS = ("import resource, subprocess, sys\n"
       "code = subprocess.run(sys.argv[2:]).returncode\n"
       "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
       "sys.exit(code)\n")
_seen: collections.Counter[str] = collections.Counter()


def _can_mount(root: Path) -> bool:
    probe = root / "mount-probe"
    probe.mkdir()
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)],
                        capture_output=True).returncode == 0
    if ok:
        subprocess.run(["umount", str(probe)], check=True)
    probe.rmdir()
    return ok


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    root = tmp_path_factory.mktemp("badinput-shared")
    built = build_checkpoint(root / "ckpt", train_python())
    prepared = data.prepare("foodieqa", make_foodieqa(root / "src"), root / "prepared").out
    with GitLfsServer(root / "git", token=TOKEN) as git, \
            hub_server_class()(root / "hub", token=TOKEN, user="tester") as hub, \
            OpenAITestServer(models=("base",)) as openai:
        yield Shared(root, built["model"], built["checkpoint"], built["other"], prepared, git, hub, openai,
                     _can_mount(root))
    print(f"\nbad-input corpus: {sum(_seen.values())} cases passed "
          f"({', '.join(f'{stage} {n}' for stage, n in _seen.items())})")


def _digest(*roots: Path) -> dict[str, str]:
    """Path -> sha256 and mode of every file and link under ``roots`` (servers' data left out)."""
    found = {}
    for root in roots:
        for dirpath, dirs, names in os.walk(root):
            dirs[:] = [d for d in dirs if d not in ("git", "hub")] if Path(dirpath) == root else dirs
            for name in names + [d for d in dirs if (Path(dirpath) / d).is_symlink()]:
                path = Path(dirpath) / name
                st = path.lstat()
                body = os.readlink(path).encode() if path.is_symlink() else b"" if st.st_size > 2**26 else \
                    path.read_bytes()
                found[str(path)] = f"{hashlib.sha256(body).hexdigest()}:{st.st_size}:{st.st_mode:o}"
            found.update({str(Path(dirpath) / d) + "/": "dir" for d in dirs})
    return found


@pytest.mark.parametrize("case", CASES, ids=[f"{c.stage}-{c.id}" for c in CASES])
def test_bad_input(case: Case, shared: Shared, tmp_path: Path) -> None:
    if case.id == "full-disk" and not shared.can_mount:
        pytest.skip("mounting a size-limited tmpfs needs root here")
    ctx = Ctx(tmp_path / "user", case.id, shared)
    ctx.work.mkdir()
    try:
        argv = case.build(ctx)
        before = _digest(ctx.work, shared.root)
        exe = str(Path(sys.executable).parent / "vlhub")
        command = [exe, *argv]
        if case.max_rss_mb:
            command = [sys.executable, "-c", RSS, str(tmp_path / "rss"), *command]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ctx.work,
                              env={**os.environ, **ctx.env})
    finally:
        for undo in ctx.after:
            undo()
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    shown = f"exit {proc.returncode}\n{proc.stderr[-2000:]}"
    assert proc.returncode == case.code, shown
    assert len(errors) == 1 and case.expect in errors[0], shown
    assert "Fix:" in errors[0], shown
    assert "Traceback" not in proc.stderr + proc.stdout, shown
    assert TOKEN not in proc.stderr + proc.stdout
    assert _digest(ctx.work, shared.root) == before
    if case.max_rss_mb:
        peak_mb = int((tmp_path / "rss").read_text()) / 1024
        assert peak_mb < case.max_rss_mb, f"peak RSS {peak_mb:.0f} MB"
    _seen[case.stage] += 1
