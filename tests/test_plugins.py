"""Plugin loading: built-ins via entry points, the contract checks, failures recorded, VLHUB_LOAD_PLUGINS,
the example plugin through the real CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, run_vlhub
from publish_helpers import make_model, sha256

BUILTINS = {"datasets", "trainers", "converters", "templates", "publishers", "backends", "devtools"}
#: tests/fixtures/bad_plugins: module -> entry-point name; each breaks the contract one way
BAD_PLUGINS = {"vlhub_misspelled_hook": "misspelled", "vlhub_bad_signature": "narrow",
               "vlhub_import_error": "import-error", "vlhub_too_new": "too-new"}
#: the example publisher's secret ($EXAMPLE_BUCKET_TOKEN)
BUCKET_TOKEN = "bucket-token-3c9e1f07"


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


def test_example_plugin_installs_and_publishes(example_site: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
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
    folder_hub = mod.FolderHub()
    monkeypatch.setenv("EXAMPLE_BUCKET_TOKEN", BUCKET_TOKEN)  # the publisher's declared secret
    first = folder_hub.publish(folder_hub.preflight(model, str(hub), {}), {})
    assert first.bytes_sent == 4098 and first.changed
    again = folder_hub.publish(folder_hub.preflight(model, str(hub), {}), {})
    assert again.bytes_sent == 0 and not again.changed
    manifest = json.loads((hub / "manifest.json").read_text())
    assert set(manifest["files"]) == {"config.json", "model.safetensors"}


def test_contract_breaking_plugins_are_named_with_the_reason(example_site: Path, tmp_path: Path) -> None:
    from vlhub.core import PLUGIN_API_VERSION

    for module, ep_name in BAD_PLUGINS.items():
        body = (ROOT / "tests" / "fixtures" / "bad_plugins" / f"{module}.py").read_text()
        _fake_distribution(tmp_path, module.replace("_", "-"), module, body, ep_name)
    env = {"PYTHONPATH": f"{tmp_path}:{example_site}"}
    proc = run_vlhub("plugins", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["plugin_api_version"] == PLUGIN_API_VERSION
    failures = {f["plugin"]: f for f in report["failures"]}
    assert set(failures) == set(BAD_PLUGINS.values())
    assert failures["misspelled"] == {"plugin": "misspelled", "stage": "register", "error":
                                      "unknown hook 'register_publisher' (did you mean 'register_publishers'?)"}
    assert failures["narrow"]["stage"] == "register_publishers"
    assert failures["narrow"]["error"] == (
        "publisher 'narrow' (vlhub_bad_signature.NarrowHub) does not implement the publisher interface: "
        "preflight: expected preflight(folder, target, options, progress=None), found preflight(folder)")
    assert failures["import-error"]["stage"] == "import" and "nonexistent-sdk" in failures["import-error"]["error"]
    assert failures["too-new"]["stage"] == "requires"
    assert f"vlhub_requires = '>=2.0' does not match this vlhub's plugin API {PLUGIN_API_VERSION}" \
        in failures["too-new"]["error"]

    listed = {p["name"]: p for p in report["plugins"]}
    assert BUILTINS <= set(listed) and not {"misspelled", "import-error", "too-new"} & set(listed)
    assert listed["narrow"]["registered"] == {}
    assert listed["folder-hub"]["registered"] == {"publishers": ["folder"]}
    assert {"hf", "modelscope", "openxlab", "git"} <= set(listed["publishers"]["registered"]["publishers"])

    human = run_vlhub("plugins", env=env)
    assert human.returncode == 0, human.stderr
    assert "FAILED misspelled (register): unknown hook 'register_publisher' (did you mean " \
           "'register_publishers'?)" in human.stdout
    assert "FAILED too-new (requires): vlhub_requires = '>=2.0'" in human.stdout
    assert "FAILED import-error (import): ImportError: vlhub_import_error needs" in human.stdout
    assert "FAILED narrow (register_publishers): publisher 'narrow'" in human.stdout
    assert human.stdout.startswith(f"vlhub plugin API {PLUGIN_API_VERSION}\n")

    refused = run_vlhub("publish", str(make_model(tmp_path / "model")), "--to", "narrow:x", "--dry-run", env=env)
    assert refused.returncode == 2 and "no publisher named 'narrow'" in refused.stdout + refused.stderr


def test_example_publisher_through_the_cli(example_site: Path, tmp_path: Path) -> None:
    model = make_model(tmp_path / "model", {"model-00001-of-00002.safetensors": 300_000,
                                            "model-00002-of-00002.safetensors": 200_000})
    sizes = {p.relative_to(model).as_posix(): p.stat().st_size for p in model.rglob("*") if p.is_file()}
    hub = tmp_path / "hub" / "org" / "food"
    env = {"PYTHONPATH": str(example_site), "EXAMPLE_BUCKET_TOKEN": BUCKET_TOKEN}

    dry = run_vlhub("publish", str(model), "--to", f"folder:{hub}", "--dry-run", "--json", env=env)
    assert dry.returncode == 0, dry.stderr
    target = json.loads(dry.stdout)["targets"][0]
    assert target["ok"] and target["preflight"]["bytes_to_send"] == sum(sizes.values())
    assert {f["path"]: f["size"] for f in target["preflight"]["files"]} == sizes
    assert not hub.exists()

    real = run_vlhub("publish", str(model), "--to", f"folder:{hub}", env=env)
    assert real.returncode == 0, real.stderr
    assert f"folder:{hub}: {hub.as_uri()}" in real.stderr  # `say` writes the human report to stderr
    manifest = json.loads((hub / "manifest.json").read_text())["files"]
    assert manifest == {rel: {"size": size, "sha256": sha256(model / rel)} for rel, size in sizes.items()}
    assert all(sha256(hub / "files" / rel) == sha256(model / rel) for rel in sizes)

    again = run_vlhub("publish", str(model), "--to", f"folder:{hub}", "--json", env=env)
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)["targets"][0]["result"]
    assert result["bytes_sent"] == 0 and result["changed"] is False


def test_register_module_refuses_plugins_that_break_the_contract() -> None:
    from vlhub.core import PLUGIN_API_VERSION, __version__, hookimpl, plugins

    class Misspelled:
        @hookimpl
        def register_chat_backend(self, register: Any) -> None:
            raise AssertionError("never called")

    class ExtraArgument:
        @hookimpl
        def register_publishers(self, register: Any, cli: Any) -> None:
            raise AssertionError("never called")

    class TooOld:
        vlhub_requires = "<1"

        @hookimpl
        def register_publishers(self, register: Any) -> None:
            raise AssertionError("never called")

    class NotASpecifier:
        vlhub_requires = "version one"

    class Compatible:
        vlhub_requires = f"=={PLUGIN_API_VERSION}"

        @hookimpl
        def register_trainers(self, register: Any) -> None:
            pass

    host = plugins.host()
    for plugin, name in ((Misspelled(), "misspelled"), (ExtraArgument(), "extra-argument"), (TooOld(), "too-old"),
                         (NotASpecifier(), "not-a-specifier")):
        assert host.register_module(plugin, name) is False
        assert host.pm.get_plugin(name) is None and name not in host.info
    assert host.register_module(Compatible(), "compatible") is True
    failures = {f.plugin: (f.stage, f.error) for f in host.failures}
    assert failures["misspelled"] == ("register", "unknown hook 'register_chat_backend' "
                                                  "(did you mean 'register_chat_backends'?)")
    assert failures["extra-argument"][0] == "register" and "{'cli'}" in failures["extra-argument"][1]
    assert failures["too-old"] == ("requires", f"vlhub_requires = '<1' does not match this vlhub's plugin API "
                                               f"{PLUGIN_API_VERSION} (vlhub {__version__})")
    assert failures["not-a-specifier"] == ("requires", "vlhub_requires = 'version one' is not a version "
                                                       "specifier such as '>=1.0,<2'")
    assert {"hf", "git"} <= set(host.registry("publishers")) and "xtuner" in host.registry("trainers")
    assert len(host.failures) == 4


class _Hub:
    name = "hub"
    description = "A publisher."
    options: tuple[Any, ...] = ()

    def preflight(self, folder: Any, target: Any, options: Any, progress: Any = None) -> None: ...

    def publish(self, plan: Any, options: Any, progress: Any = None) -> None: ...


def _variant(**members: Any) -> object:
    return type("Variant", (_Hub,), members)()


@pytest.mark.parametrize("obj", [
    _Hub(),
    _variant(preflight=lambda self, folder, target, options, progress=None, retries=3: None),
    _variant(preflight=lambda self, *args, **kwargs: None),
    _variant(preflight=lambda self, folder, target, options, progress=None, **kwargs: None),
    _variant(preflight=staticmethod(lambda folder, target, options, progress=None: None)),
    _variant(options=[]),
    _variant(publish=lambda self, folder, target, options, progress=None: None),
], ids=["exact", "extra-with-default", "args-kwargs", "extra-kwargs", "staticmethod", "options-list",
        "publish-0.1"])
def test_signature_check_accepts_compatible_methods(obj: object) -> None:
    from vlhub.core.plugins import check_interface
    from vlhub.core.types import Publisher

    assert check_interface(obj, Publisher) == []


@pytest.mark.parametrize("obj, problem", [
    (_variant(preflight=lambda self, folder: None),
     "preflight: expected preflight(folder, target, options, progress=None), found preflight(folder)"),
    (_variant(preflight=lambda self, target, folder, options, progress=None: None),
     "found preflight(target, folder, options, progress=None)"),
    (_variant(preflight=lambda self, folder, target, options, progress: None),
     "found preflight(folder, target, options, progress)"),
    (_variant(publish=lambda self, plan, options, progress=None, *, token: None),
     "publish: expected publish(plan, options, progress=None) or publish(folder, target, options, progress=None), "
     "found publish(plan, options, progress=None, *, token)"),
    (_variant(preflight=lambda self, folder, target, options, **kwargs: None),  # vlhub passes progress positionally
     "found preflight(folder, target, options, **kwargs)"),
    (_variant(preflight=None), "no method preflight(folder, target, options, progress=None)"),
    (_variant(publish="upload"), "publish = 'upload' is not callable"),
    (_variant(name=""), "name is empty"),
    (_variant(name=7), "name = 7 is not a str"),
    (_variant(options=("private",)), "options = ('private',) is not a Sequence[Option]"),
    (_variant(options="private"), "options = 'private' is not a Sequence[Option]"),
    (_variant(description=None), "description = None is not a str"),
], ids=["too-few", "renamed", "progress-required", "extra-required", "progress-in-kwargs", "missing",
        "not-callable", "empty-name", "name-not-str", "options-not-option", "options-str", "no-description"])
def test_signature_check_names_the_method_expected_and_found(obj: object, problem: str) -> None:
    from vlhub.core.plugins import check_interface
    from vlhub.core.types import Publisher

    problems = check_interface(obj, Publisher)
    assert len(problems) == 1 and problem in problems[0], problems


def test_a_bad_object_is_left_out_and_the_plugins_other_objects_register() -> None:
    from vlhub.core import hookimpl, plugins

    class Plugin:
        @hookimpl
        def register_publishers(self, register: Any) -> None:
            register(_variant(name="narrow", preflight=lambda self, folder: None))
            register(_variant(name="wide"))
            register(_variant(name="git"))

    host = plugins.host()
    assert host.register_module(Plugin(), "mixed")
    assert "wide" in host.registry("publishers") and "narrow" not in host.registry("publishers")
    assert host.info["mixed"].registered == {"publishers": ["wide"]}
    host.register_module(type("Other", (), {})(), "other")  # the registries are collected again
    errors = [f.error for f in host.failures if f.plugin == "mixed"]
    assert len(errors) == 2, errors
    assert errors[0].startswith("publisher 'narrow' (test_plugins.Variant) does not implement the publisher "
                                "interface: preflight: expected")
    assert errors[1] == ("publisher 'git' (test_plugins.Variant) is left out: the name 'git' is taken by the plugin "
                         "'publishers'")
