"""Packaging: one `vlhub` namespace in site-packages, and a light core."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import ROOT

HEAVY = ("torch", "transformers", "xtuner", "lmdeploy", "deepspeed", "mmengine", "streamlit")


def test_wheel_has_only_the_vlhub_namespace(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path), str(ROOT)], check=True)
    wheel = next(tmp_path.glob("vlhub-*.whl"))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True)
    assert sorted(p.name for p in site.iterdir() if not p.name.endswith(".dist-info")) == ["bin", "vlhub"]
    code = ("import vlhub.core, vlhub.plugins.datasets, vlhub.streamlit_app.text as t; "
            "print(vlhub.core.__file__); print(t.catalogue('zh')['stage.data'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(site)}, cwd=tmp_path).stdout.split()
    assert out[0].startswith(str(site)) and out[1] == "数据"  # the installed copy, package data included
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.startswith("vlhub-")}
    assert tops == {"vlhub"}
    for expected in ("vlhub/core/hookspecs.py", "vlhub/plugins/workers/_protocol.py",
                     "vlhub/streamlit_app/app.py", "vlhub/streamlit_app/i18n/zh.json"):
        assert expected in names
    assert not any(n.endswith("launcher.py") for n in names)


def test_core_import_pulls_no_heavy_stack() -> None:
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import vlhub.core.plugins, vlhub.core.cli"],
                         capture_output=True, text=True, check=True).stderr
    imported = {line.split("|")[-1].strip().split(".")[0] for line in out.splitlines() if "|" in line}
    assert not imported & set(HEAVY), imported & set(HEAVY)


def test_all_plugins_import_light() -> None:
    code = ("import sys; from vlhub.core import plugins; plugins.host().describe(); "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
