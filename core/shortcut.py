"""A desktop shortcut for the launcher: ``vlhub launch --install-shortcut`` and ``--remove-shortcut``.

Linux (and other freedesktop systems): a Desktop Entry (``Type=Application``) in
``$XDG_DATA_HOME/applications`` (default ``~/.local/share/applications``) named
:data:`ENTRY_NAME`, whose ``Exec`` is the absolute path of this interpreter's ``vlhub`` script
followed by ``launch`` (so it starts vlhub of this environment, and ``vlhub launch`` opens the page,
or the launcher already running), with vlhub's icon (package data, ``assets/vlhub.png``). The file
carries the marker line :data:`MARKER`; ``--remove-shortcut`` removes the file only when it has it.

Windows and macOS: through `pyshortcuts <https://pypi.org/project/pyshortcuts/>`_ (imported lazily;
when it is missing the error says how to install it): a ``vlhub`` shortcut on the desktop (and in
the Start Menu on Windows) that runs ``vlhub launch`` in a console window. Only the Linux path is
tested.
"""
from __future__ import annotations

import os
import shlex
import shutil
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from .errors import BadInput, MissingDependency
from .fsutil import atomic_write_text
from .home import home_path

#: The desktop entry's file name (its desktop file ID is ``vlhub.desktop``).
ENTRY_NAME = "vlhub.desktop"
#: The line that marks an entry as vlhub's own (a freedesktop ``X-`` extension key).
MARKER = "X-Vlhub-Shortcut=launch"
#: vlhub's icons, shipped as package data.
ASSETS = Path(__file__).parent / "assets"
#: Variables that locate vlhub's data: carried into the shortcut when they are set now.
LOCATION_VARS = ("VLHUB_HOME", "VLHUB_ENVS_DIR")
#: Characters that make an ``Exec`` argument need quotes (Desktop Entry spec, "The Exec key").
_RESERVED = set(" \t\n\"'\\><~|&;$*?#()`")

Say = Callable[[str], None]


def icon_path(ext: str = "png") -> Path:
    """vlhub's icon file (``png`` for Linux, ``ico`` for Windows).

    Raises:
        MissingDependency: the installed package has no icon (a broken install).
    """
    icon = ASSETS / f"vlhub.{ext}"
    if not icon.is_file():
        raise MissingDependency(f"vlhub's icon ({icon}) is missing",
                                "reinstall vlhub (`pip install -e .` in a checkout)")
    return icon


def vlhub_script() -> Path:
    """The absolute path of this interpreter's ``vlhub`` console script (not resolved: a venv's stays in it).

    Raises:
        MissingDependency: no executable ``vlhub`` script belongs to this interpreter.
    """
    name = "vlhub.exe" if os.name == "nt" else "vlhub"
    folders = [sysconfig.get_path("scripts"), os.path.dirname(sys.executable)]
    try:  # `pip install --user`
        folders.append(sysconfig.get_path("scripts", sysconfig.get_preferred_scheme("user")))
    except (KeyError, AttributeError, ValueError):
        pass
    for folder in folders:
        candidate = Path(os.path.abspath(Path(folder) / name)) if folder else None
        if candidate is not None and candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise MissingDependency(f"this Python ({sys.executable}) has no `{name}` script to put in a shortcut",
                            "reinstall vlhub into it (`pip install -e .` in a checkout), then try again")


def launch_argv() -> list[str]:
    """The command the shortcut runs: ``[env VAR=VALUE ...] /abs/vlhub launch``.

    ``VLHUB_HOME`` and ``VLHUB_ENVS_DIR`` are carried when they are set now (a desktop session does
    not read the shell's start-up files), so the shortcut opens the launcher of this home.
    """
    carried = [f"{name}={home_path() if name == 'VLHUB_HOME' else Path(os.environ[name]).expanduser().resolve()}"
               for name in LOCATION_VARS if os.environ.get(name)]
    return (["env", *carried] if carried else []) + [str(vlhub_script()), "launch"]


# ------------------------------------------------------------------ freedesktop
def applications_dir() -> Path:
    """``$XDG_DATA_HOME/applications``; ``~/.local/share/applications`` when XDG_DATA_HOME is unset or
    not absolute (the XDG Base Directory spec ignores relative paths)."""
    data_home = os.environ.get("XDG_DATA_HOME", "")
    base = Path(data_home) if data_home and os.path.isabs(data_home) else Path.home() / ".local" / "share"
    return base / "applications"


def entry_path() -> Path:
    """Where ``--install-shortcut`` writes the desktop entry on Linux."""
    return applications_dir() / ENTRY_NAME


def _string(value: str, what: str) -> str:
    """A Desktop Entry ``string`` value: backslash escaped; control characters refused."""
    if any(ch in value for ch in "\n\r\t\0"):
        raise BadInput(f"{what} {value!r} contains a control character, which a desktop entry cannot hold",
                       "install vlhub in a folder whose path has no tabs or newlines")
    return value.replace("\\", "\\\\")


def exec_quote(arg: str) -> str:
    """One ``Exec`` argument: double-quoted when it holds a reserved character, ``%`` doubled.

    Inside quotes, ``"``, `````, ``$`` and ``\\`` get a backslash; the result is then escaped as a
    ``string`` value (so a backslash is written ``\\\\``), as the spec's "The Exec key" says.
    """
    arg = arg.replace("%", "%%")
    if any(ch in _RESERVED for ch in arg):
        arg = '"' + "".join("\\" + ch if ch in '"`$\\' else ch for ch in arg) + '"'
    return _string(arg, "the command")


def desktop_entry(argv: Iterable[str], icon: Path) -> str:
    """The text of vlhub's desktop entry (Desktop Entry Specification 1.4)."""
    argv = list(argv)
    script = argv[-2]  # [env VAR=VALUE ...] SCRIPT launch
    lines = [
        "# Written by `vlhub launch --install-shortcut`; `vlhub launch --remove-shortcut` removes it.",
        "[Desktop Entry]",
        "Type=Application",
        "Version=1.4",
        "Name=vlhub",
        "GenericName=InternVL fine-tuning launcher",
        "GenericName[zh_CN]=InternVL 微调启动器",
        "Comment=Prepare data, fine-tune, convert, chat with and publish InternVL models",
        "Comment[zh_CN]=准备数据、微调、转换、对话并发布 InternVL 模型",
        "Exec=" + " ".join(exec_quote(arg) for arg in argv),
        "TryExec=" + _string(script, "the vlhub script"),
        "Icon=" + _string(str(icon), "the icon"),
        "Terminal=false",
        "StartupNotify=false",
        "Categories=Development;",
        "Keywords=InternVL;VLM;AI;fine-tune;LLaVA;",
        MARKER,
    ]
    return "\n".join(lines) + "\n"


def is_vlhub_entry(path: Path) -> bool:
    """Whether ``path`` is a desktop entry vlhub wrote (it holds the :data:`MARKER` line)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return any(line.strip() == MARKER for line in text.splitlines())


def install_linux(say: Say = print) -> Path:
    """Write vlhub's desktop entry; an entry vlhub wrote before is replaced.

    Returns:
        The entry's path.

    Raises:
        BadInput: a file of that name exists that vlhub did not write (it is left as it is).
    """
    path = entry_path()
    if path.exists() and not is_vlhub_entry(path):
        raise BadInput(f"{path} exists and was not written by vlhub (no `{MARKER}` line), so it is left as it is",
                       "move it away, then run `vlhub launch --install-shortcut` again")
    argv = launch_argv()
    atomic_write_text(path, desktop_entry(argv, icon_path("png")))
    say(f"installed the desktop entry {path}: \"vlhub\" in your applications menu runs `{shlex.join(argv)}` "
        "(remove it with `vlhub launch --remove-shortcut`)")
    return path


def remove_linux(say: Say = print) -> list[Path]:
    """Remove vlhub's desktop entry, only when it holds the :data:`MARKER` line.

    Returns:
        The paths removed (none when there was no entry, or a foreign one, which stays).
    """
    path = entry_path()
    if not path.exists():
        say(f"no vlhub desktop entry at {path}; nothing to remove")
        return []
    if not is_vlhub_entry(path):
        say(f"{path} was not written by vlhub (no `{MARKER}` line); left as it is")
        return []
    path.unlink()
    say(f"removed the desktop entry {path}")
    return [path]


# ------------------------------------------------------------------ Windows and macOS (pyshortcuts; untested)
def _pyshortcuts():  # noqa: ANN202 - the module, imported lazily
    try:
        import pyshortcuts
    except ImportError as exc:
        raise MissingDependency("desktop shortcuts on Windows and macOS are made by the pyshortcuts package, "
                                "which is not installed",
                                f'install it into this Python: "{sys.executable}" -m pip install pyshortcuts') from exc
    return pyshortcuts


def _foreign_paths(pyshortcuts) -> list[Path]:  # noqa: ANN001
    folders = pyshortcuts.get_folders()
    ext = "app" if sys.platform == "darwin" else "lnk"
    dirs = [folders.desktop] + ([folders.startmenu] if sys.platform != "darwin" and folders.startmenu else [])
    return [Path(folder) / f"vlhub.{ext}" for folder in dirs if folder]


def _made_by_vlhub(path: Path) -> bool:
    """A shortcut pyshortcuts made for vlhub: it runs a ``vlhub`` script with ``launch``."""
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    for file in files:
        try:
            data = file.read_bytes()[:1_000_000]
        except OSError:
            continue
        for encoding in ("utf-8", "utf-16-le"):
            if "vlhub".encode(encoding) in data and "launch".encode(encoding) in data:
                return True
    return False


def install_other(say: Say = print) -> list[Path]:
    """A desktop (and Windows Start Menu) shortcut through pyshortcuts, running ``vlhub launch`` in a console."""
    pyshortcuts = _pyshortcuts()
    script = vlhub_script()
    if sys.platform == "darwin":
        from PIL import Image

        icon = Path(tempfile.mkdtemp(prefix="vlhub-icon-")) / "vlhub.icns"  # copied into the .app bundle
        Image.open(icon_path("png")).save(icon)
        executable = "'" + str(script).replace("'", "'\\''") + "'"  # the bundle runs it through a shell
    else:
        icon, executable = icon_path("ico"), str(script)
    scut = pyshortcuts.make_shortcut("launch", name="vlhub", description="vlhub: the InternVL fine-tuning launcher",
                                     icon=str(icon), executable=executable, terminal=True, desktop=True,
                                     startmenu=sys.platform != "darwin")
    if sys.platform == "darwin":
        shutil.rmtree(icon.parent, ignore_errors=True)
    made = [p for p in (Path(scut.desktop_dir) / scut.target, Path(scut.startmenu_dir or "") / scut.target)
            if p.exists()]
    for path in made:
        say(f"installed the shortcut {path} (remove it with `vlhub launch --remove-shortcut`)")
    if any(os.environ.get(name) for name in LOCATION_VARS):
        say(f"note: the shortcut does not carry {' or '.join(LOCATION_VARS)}; set them for your user "
            "account if the launcher should use them")
    return made


def remove_other(say: Say = print) -> list[Path]:
    """Remove the shortcuts :func:`install_other` made; any other file of that name stays."""
    removed = []
    for path in _foreign_paths(_pyshortcuts()):
        if not path.exists():
            continue
        if not _made_by_vlhub(path):
            say(f"{path} was not made by vlhub; left as it is")
            continue
        shutil.rmtree(path) if path.is_dir() else path.unlink()
        say(f"removed the shortcut {path}")
        removed.append(path)
    if not removed:
        say("no vlhub shortcut found; nothing to remove")
    return removed


def uses_desktop_entry() -> bool:
    """Whether this system takes freedesktop desktop entries (everything but Windows and macOS)."""
    return os.name != "nt" and sys.platform != "darwin"


def install(say: Say = print) -> list[Path]:
    """Install vlhub's shortcut for this system (see the module's description).

    Returns:
        The files written.

    Raises:
        BadInput: a foreign file has the desktop entry's name (Linux).
        MissingDependency: no ``vlhub`` script, or pyshortcuts is missing (Windows, macOS).
    """
    return [install_linux(say)] if uses_desktop_entry() else install_other(say)


def remove(say: Say = print) -> list[Path]:
    """Remove the shortcut :func:`install` wrote, and nothing else.

    Returns:
        The files removed (none when there was nothing of vlhub's).

    Raises:
        MissingDependency: pyshortcuts is missing (Windows, macOS).
    """
    return remove_linux(say) if uses_desktop_entry() else remove_other(say)
