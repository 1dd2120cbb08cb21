"""The floors: core is the ground floor, pages stand on core, never on the built-in plugins.

Every import statement is read from the source (an AST scan, so imports inside functions count),
with relative imports resolved to absolute names.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import ROOT

#: folder -> the package name it is installed as (setup.cfg's package_dir)
PACKAGES = {"core": "vlhub.core", "plugins": "vlhub.plugins", "streamlit_app": "vlhub.streamlit_app"}
#: folder -> packages its modules must never import
FORBIDDEN = {"core": ("vlhub.plugins", "vlhub.streamlit_app"), "streamlit_app": ("vlhub.plugins",)}


def _imports(path: Path, folder: str) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in ``path`` (``from vlhub import x`` -> ``vlhub.x``)."""
    module = ".".join([PACKAGES[folder], *path.relative_to(ROOT / folder).with_suffix("").parts])
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    if path.name == "__init__.py":
        module = module.removesuffix(".__init__")
        package = module
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found += [(node.lineno, f"{base}.{alias.name}" if base else alias.name) for alias in node.names]
            found.append((node.lineno, base))
    return found


def _violations(folder: str) -> list[str]:
    bad: dict[str, str] = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        for line, name in _imports(path, folder):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[folder]):
                bad.setdefault(f"{path.relative_to(ROOT)}:{line}", name)
    return [f"{where} imports {name}" for where, name in bad.items()]


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_floor_does_not_import_the_floors_above(folder: str) -> None:
    assert _violations(folder) == []


def test_the_scan_sees_function_level_and_relative_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scanner itself: it must catch the forms that hid v0.1's upward imports."""
    fake = ROOT / "core" / "_import_graph_probe.py"
    fake.write_text("def f():\n    from vlhub.plugins.datasets import x\n    from ..plugins import y\n"
                    "    import vlhub.streamlit_app.jobs\n    from vlhub import streamlit_app\n")
    try:
        bad = _violations("core")
    finally:
        fake.unlink()
    probe = [b for b in bad if "_import_graph_probe" in b]
    assert len(probe) == 4, probe
