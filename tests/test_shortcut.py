"""`vlhub launch --install-shortcut` / `--remove-shortcut`: a freedesktop desktop entry in
$XDG_DATA_HOME/applications that starts this environment's vlhub, removed only when vlhub wrote it."""
from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_vlhub
from vlhub.core import shortcut
from vlhub.core.errors import MissingDependency


def parse_exec(value: str) -> list[str]:
    """An ``Exec`` value as the Desktop Entry spec reads it: string escapes, then quoting, then ``%%``."""
    unescaped, chars = "", iter(value)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars)
            unescaped += {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}.get(nxt, "\\" + nxt)
        else:
            unescaped += ch
    argv, current, quoted, started, chars = [], "", False, False, iter(unescaped)
    for ch in chars:
        if quoted and ch == "\\":
            nxt = next(chars)
            assert nxt in '"`$\\', f"a backslash before {nxt!r} inside quotes is not allowed"
            current += nxt
        elif ch == '"':
            quoted, started = not quoted, True
        elif ch == " " and not quoted:
            if current or started:
                argv.append(current)
            current, started = "", False
        else:
            assert quoted or ch not in shortcut._RESERVED, f"reserved {ch!r} outside quotes"
            current += ch
    assert not quoted, "unbalanced quotes"
    if current or started:
        argv.append(current)
    return [arg.replace("%%", "%") for arg in argv]


def read_entry(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # keys are case-sensitive
    parser.read_string(path.read_text(encoding="utf-8"))
    assert parser.sections() == ["Desktop Entry"]
    return dict(parser["Desktop Entry"])


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private XDG_DATA_HOME; its applications folder."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    return tmp_path / "xdg-data" / "applications"


def test_install_then_remove_the_desktop_entry(xdg: Path, isolated: Path) -> None:
    proc = run_vlhub("launch", "--install-shortcut", check=True, timeout=60)
    entry = xdg / "vlhub.desktop"
    assert f"installed the desktop entry {entry}" in proc.stderr
    assert sorted(p.name for p in xdg.iterdir()) == ["vlhub.desktop"]
    fields = read_entry(entry)
    assert fields["Type"] == "Application" and fields["Name"] == "vlhub"
    assert fields["Terminal"] == "false" and fields["Categories"].endswith(";") and fields["Categories"] != ";"
    assert shortcut.MARKER in entry.read_text(encoding="utf-8").splitlines()

    argv = parse_exec(fields["Exec"])
    script = Path(sys.executable).parent / "vlhub"  # this interpreter's vlhub, not one found on PATH
    assert argv == ["env", f"VLHUB_HOME={isolated.resolve()}", f"VLHUB_ENVS_DIR={os.environ['VLHUB_ENVS_DIR']}",
                    str(script), "launch"]
    assert Path(argv[-2]).is_absolute() and Path(argv[-2]).is_file() and os.access(argv[-2], os.X_OK)
    assert fields["TryExec"] == argv[-2]
    icon = Path(fields["Icon"])
    assert icon.is_absolute() and icon.is_file() and icon.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ran = subprocess.run([*argv, "--help"], capture_output=True, text=True, timeout=60)  # the command runs
    assert ran.returncode == 0 and "--install-shortcut" in ran.stdout
    if shutil.which("desktop-file-validate"):  # desktop-file-utils, when installed: no error, warning or hint
        validated = subprocess.run(["desktop-file-validate", str(entry)], capture_output=True, text=True, timeout=60)
        assert validated.returncode == 0 and validated.stdout + validated.stderr == "", validated.stdout

    run_vlhub("launch", "--install-shortcut", check=True, timeout=60)  # again: replaces its own entry
    assert sorted(p.name for p in xdg.iterdir()) == ["vlhub.desktop"]

    proc = run_vlhub("launch", "--remove-shortcut", check=True, timeout=60)
    assert f"removed the desktop entry {entry}" in proc.stderr
    assert list(xdg.iterdir()) == []


def test_remove_without_an_entry_changes_nothing(xdg: Path) -> None:
    xdg.mkdir(parents=True)
    (xdg / "other-app.desktop").write_text("[Desktop Entry]\nType=Application\nName=Other\nExec=other\n")
    before = snapshot(xdg.parent)
    proc = run_vlhub("launch", "--remove-shortcut", timeout=60)
    assert proc.returncode == 0 and "nothing to remove" in proc.stderr
    assert snapshot(xdg.parent) == before


def test_a_foreign_entry_is_neither_removed_nor_replaced(xdg: Path) -> None:
    xdg.mkdir(parents=True)
    foreign = "[Desktop Entry]\nType=Application\nName=vlhub (mine)\nExec=/opt/my-vlhub launch\n"
    (xdg / "vlhub.desktop").write_text(foreign)
    before = snapshot(xdg.parent)

    proc = run_vlhub("launch", "--remove-shortcut", timeout=60)
    assert proc.returncode == 0 and "was not written by vlhub" in proc.stderr and "left as it is" in proc.stderr
    assert snapshot(xdg.parent) == before

    proc = run_vlhub("launch", "--install-shortcut", timeout=60)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert "was not written by vlhub" in proc.stderr and "Fix: move it away" in proc.stderr
    assert snapshot(xdg.parent) == before


def test_install_and_remove_exclude_each_other(xdg: Path) -> None:
    proc = run_vlhub("launch", "--install-shortcut", "--remove-shortcut", timeout=60)
    assert proc.returncode == 2 and "exclude each other" in proc.stderr
    assert not xdg.exists()


@pytest.mark.parametrize("arg", ["/opt/my env/bin/vlhub", '/o"dd/$HOME/`x`/back\\slash/100%/vlhub', "plain",
                                 "VLHUB_HOME=/a b/c", "tab\u00e9/ünï/中文"])
def test_exec_arguments_round_trip(arg: str) -> None:
    assert parse_exec(shortcut.exec_quote(arg)) == [arg]
    line = " ".join(shortcut.exec_quote(a) for a in ["env", arg, arg, "launch"])
    assert parse_exec(line) == ["env", arg, arg, "launch"]


def test_a_relative_xdg_data_home_is_ignored(monkeypatch: pytest.MonkeyPatch, isolated: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", "relative/share")
    assert shortcut.applications_dir() == Path.home() / ".local" / "share" / "applications"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert shortcut.applications_dir() == Path.home() / ".local" / "share" / "applications"


def test_windows_and_macos_say_how_to_install_pyshortcuts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyshortcuts", None)  # not installed
    with pytest.raises(MissingDependency) as caught:
        shortcut._pyshortcuts()
    assert "-m pip install pyshortcuts" in caught.value.one_line() and sys.executable in caught.value.one_line()
