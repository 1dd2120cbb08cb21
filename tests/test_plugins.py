"""Plugin loading: built-ins via entry points, failures recorded, VLHUB_LOAD_PLUGINS, the example plugin."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_vlhub

BUILTINS = {"datasets", "trainers", "converters", "templates", "publishers", "backends", "devtools"}


def _fake_distribution(site: Path, dist: str, module: str, body: str, ep_name: str) -> None:
    """Write a real installed distribution (dist-info + entry point) into ``site``."""
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[vlhub]\n{ep_name} = {module}\n")
    (site / f"{module}.py").write_text(body)


def test_builtins_are_listed_as_json() -> None:
    report = json.loads(run_vlhub("plugins", "--json", check=True).stdout)
    names = {p["name"] for p in report["plugins"] if p["builtin"]}
    assert BUILTINS <= names
    assert report["failures"] == []


def test_broken_plugin_is_reported_and_vlhub_keeps_working(tmp_path: Path) -> None:
    _fake_distribution(tmp_path, "vlhub-broken", "vlhub_broken", "raise ImportError('boom: missing dep')\n", "broken")
    _fake_distribution(tmp_path / "x", "vlhub-raiser", "vlhub_raiser",
                       "from vlhub.core import hookimpl\n@hookimpl\ndef register_publishers(register):\n"
                       "    raise RuntimeError('hook exploded')\n", "raiser")
    env = {"PYTHONPATH": f"{tmp_path}:{tmp_path / 'x'}"}
    proc = run_vlhub("plugins", "--json", env=env)
    assert proc.returncode == 0
    report = json.loads(proc.stdout)
    failures = {f["plugin"]: f for f in report["failures"]}
    assert failures["broken"]["stage"] == "import" and "boom: missing dep" in failures["broken"]["error"]
    assert failures["raiser"]["stage"] == "register_publishers" and "hook exploded" in failures["raiser"]["error"]
    assert BUILTINS <= {p["name"] for p in report["plugins"]}
    human = run_vlhub("plugins", env=env)
    assert human.returncode == 0 and "FAILED broken (import)" in human.stdout


def test_load_plugins_restricts_third_party_only(tmp_path: Path) -> None:
    _fake_distribution(tmp_path, "vlhub-broken", "vlhub_broken", "raise ImportError('boom')\n", "broken")
    env = {"PYTHONPATH": str(tmp_path), "VLHUB_LOAD_PLUGINS": ""}
    report = json.loads(run_vlhub("plugins", "--json", env=env, check=True).stdout)
    assert report["failures"] == []
    assert BUILTINS <= {p["name"] for p in report["plugins"]}
    env["VLHUB_LOAD_PLUGINS"] = "broken"
    report = json.loads(run_vlhub("plugins", "--json", env=env, check=True).stdout)
    assert [f["plugin"] for f in report["failures"]] == ["broken"]


def test_registering_a_non_publisher_is_a_recorded_failure() -> None:
    from vlhub.core import hookimpl, plugins

    class Plugin:
        @hookimpl
        def register_publishers(self, register):
            register(object())

    host = plugins.host()
    host.register_module(Plugin(), "bad-publisher")
    host.registry("publishers")
    assert any(f.plugin == "bad-publisher" and "publisher interface" in f.error for f in host.failures)


@pytest.fixture(scope="module")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("example-site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(ROOT / "examples" / "vlhub-example-plugin")], check=True)
    return site


def test_example_plugin_installs_and_publishes(example_site: Path, tmp_path: Path) -> None:
    env = {"PYTHONPATH": str(example_site)}
    report = json.loads(run_vlhub("plugins", "--json", env=env, check=True).stdout)
    example = next(p for p in report["plugins"] if p["name"] == "folder-hub")
    assert example["builtin"] is False and example["distribution"] == "vlhub-example-plugin"
    assert example["registered"] == {"publishers": ["folder"]}
    assert example["hooks"] == ["register_publishers"]

    sys.path.insert(0, str(example_site))
    try:
        import vlhub_example_plugin as mod
    finally:
        sys.path.remove(str(example_site))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"\x00" * 4096)
    hub = tmp_path / "hub" / "org" / "m"
    first = mod.FolderHub().publish(model, str(hub), {})
    assert first.bytes_sent == 4098 and first.changed
    again = mod.FolderHub().publish(model, str(hub), {})
    assert again.bytes_sent == 0 and not again.changed
    manifest = json.loads((hub / "manifest.json").read_text())
    assert set(manifest["files"]) == {"config.json", "model.safetensors"}
