"""The three example plugins of examples/ (a dataset format, a publisher, a chat backend), pip-installed as
third-party distributions and driven end to end: through the CLI verbs (`vlhub data prepare`, `vlhub publish`
with the tests' git + LFS server, `vlhub chat` with the tests' OpenAI-compatible server) and through the pages
(AppTest). Each declares one secret and one option; both show in `vlhub plugins --json`, `--help`, `vlhub
doctor`, and the pages."""
from __future__ import annotations

import importlib
import json
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from typing import Any, Iterator

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from conftest import ROOT, run_vlhub
from publish_helpers import MB, make_model, sha256
from servers.git_lfs import GitLfsServer
from servers.openai_api import OpenAITestServer
from test_pages_data import settle

#: distribution -> (entry-point name, family, object, option, secret variable, option's zh label)
EXAMPLES = {
    "vlhub-example-dataset": ("csv-vqa", "datasets", "csv-vqa", "val_fraction", "EXAMPLE_CSV_TOKEN", "验证集比例"),
    "vlhub-example-plugin": ("folder-hub", "publishers", "folder", "verify", "EXAMPLE_BUCKET_TOKEN", "复制后校验"),
    "vlhub-example-backend": ("relay", "chat_backends", "relay", "endpoint", "EXAMPLE_RELAY_KEY", "接口地址"),
}
BUCKET_TOKEN = "bucket-canary-0b7d4e21"
RELAY_KEY = "relay-canary-5a8c2f90"
CSV_TOKEN = "csv-canary-71e3d6b4"
GIT_TOKEN = "git-canary-c41f9a3e"
VIEWS = ROOT / "streamlit_app" / "views"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three examples pip-installed (offline: no dependencies, no build isolation) into one folder."""
    site = tmp_path_factory.mktemp("examples-site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), *(str(ROOT / "examples" / dist) for dist in EXAMPLES)], check=True)
    return site


@pytest.fixture(scope="module")
def job_python(site: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An interpreter that sees this venv's packages and the examples, for the pages' jobs: they run
    ``sys.executable -m vlhub.core.jobs`` without PYTHONPATH (:func:`vlhub.core.stage.clean_env`), so the
    examples are found as if they were installed in the venv, which stays untouched for other tests."""
    venv = tmp_path_factory.mktemp("job-venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "vlhub_examples.pth").write_text(
        f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r}); site.addsitedir({str(site)!r})\n")
    return python


@pytest.fixture
def installed(site: Path, job_python: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The examples visible to this process (the pages) and to the processes it starts (jobs)."""
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(sys, "executable", str(job_python))
    importlib.invalidate_caches()
    from vlhub.core import plugins

    plugins.reset()
    return site


def csv_source(folder: Path) -> Path:
    """A CSV of image,question,answer rows: 6 good rows on 4 images (one text-only), one missing image,
    one row without an answer."""
    (folder / "img").mkdir(parents=True)
    for n, colour in enumerate(("red", "green", "blue", "white")):
        Image.new("RGB", (32, 24), colour).save(folder / "img" / f"{n}.png")
    (folder / "qa.csv").write_text(
        "image,question,answer\n"
        "img/0.png,What colour is it?,Red\nimg/1.png,What colour is it?,Green\nimg/2.png,What colour is it?,Blue\n"
        "img/3.png,What colour is it?,White\nimg/0.png,Is it red?,Yes\n,What is 2+2?,4\n"
        "img/9.png,Is it there?,No\nimg/1.png,Is it green?,\n", encoding="utf-8")
    return folder


def one_line_error(proc: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == code, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in proc.stderr, proc.stderr
    assert all(n in lines[0] for n in needles), lines[0]
    return lines[0]


# ------------------------------------------------------------------ declarations: plugins --json, --help, doctor
def test_plugins_json_lists_each_example_with_its_option_and_secret(site: Path) -> None:
    report = json.loads(run_vlhub("plugins", "--json", env={"PYTHONPATH": str(site)}, check=True).stdout)
    assert report["failures"] == []
    listed = {p["name"]: p for p in report["plugins"]}
    secrets = {s["name"]: s for s in report["secrets"]}
    for dist, (ep, family, name, option, variable, zh) in EXAMPLES.items():
        plugin = listed[ep]
        assert plugin["distribution"] == dist and plugin["builtin"] is False
        assert plugin["registered"] == {family: [name]}
        [obj] = plugin["objects"][family]
        assert [(o["name"], o["labels"]) for o in obj["options"]] == [(option, {"zh": zh})]
        assert [s["env"] for s in obj["secrets"]] == [[variable]]
        assert secrets[obj["secrets"][0]["name"]]["env"] == [variable]
        assert len(secrets[obj["secrets"][0]["name"]]["declared_by"]) == 1
    # the built-ins declare theirs the same way
    assert secrets["hf"]["env"] == ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"] and secrets["hf"]["login"]
    assert secrets["modelscope"]["env"] == ["MODELSCOPE_API_TOKEN"] and secrets["modelscope"]["login"]
    assert {secrets[n]["env"][0] for n in ("openxlab", "git", "openai")} == \
        {"OPENXLAB_TOKEN", "VLHUB_GIT_TOKEN", "OPENAI_API_KEY"}
    human = run_vlhub("plugins", env={"PYTHONPATH": str(site)}, check=True).stdout
    assert "secret folder-hub (publisher folder): $EXAMPLE_BUCKET_TOKEN" in human


def test_help_shows_the_examples_options(site: Path) -> None:
    env = {"PYTHONPATH": str(site)}
    publish = run_vlhub("publish", "--help", env=env, check=True).stdout
    assert "--verify / --no-verify" in publish and "publisher folder" in publish
    assert "--private" in publish and "--via" in publish  # the built-ins' common options keep their flags
    chat = run_vlhub("chat", "--help", env=env, check=True).stdout
    assert "--endpoint TEXT" in chat and "chat backend relay" in chat and "--base-url" in chat
    prepare = run_vlhub("data", "prepare", "--help", env=env, check=True).stdout
    assert "csv-vqa:" in prepare and "--val-fraction FLOAT" in prepare
    listed = run_vlhub("data", "list", env=env, check=True).stdout
    assert "secret csv-vqa: $EXAMPLE_CSV_TOKEN" in listed


def test_doctor_lists_every_declared_secret_never_the_value(site: Path) -> None:
    proc = run_vlhub("doctor", "--json", env={"PYTHONPATH": str(site), "EXAMPLE_BUCKET_TOKEN": BUCKET_TOKEN},
                     check=True)
    report = json.loads(proc.stdout)
    assert report["tokens"]["folder-hub"] == {"hub": "folder-hub", "found": True, "source": "$EXAMPLE_BUCKET_TOKEN"}
    assert report["tokens"]["relay"] == {"hub": "relay", "found": False, "source": "not found"}
    assert report["tokens"]["csv-vqa"]["found"] is False
    assert {"hf", "modelscope", "openxlab", "git", "openai"} <= set(report["tokens"])
    assert report["secrets"]["relay"]["env"] == ["EXAMPLE_RELAY_KEY"]
    assert report["secrets"]["folder-hub"]["declared_by"] == ["publisher folder"]
    human = run_vlhub("doctor", env={"PYTHONPATH": str(site), "EXAMPLE_BUCKET_TOKEN": BUCKET_TOKEN}, check=True)
    assert "folder-hub" in human.stdout and "$EXAMPLE_BUCKET_TOKEN" in human.stdout
    assert BUCKET_TOKEN not in proc.stdout + proc.stderr + human.stdout + human.stderr


def test_redact_scrubs_the_values_of_declared_secret_variables(installed: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from vlhub.core.secrets import TOKEN_ENV, redact

    monkeypatch.setenv("EXAMPLE_RELAY_KEY", RELAY_KEY)
    assert TOKEN_ENV["relay"] == ("EXAMPLE_RELAY_KEY",)
    assert redact(f"key={RELAY_KEY}") == "key=***"


def test_a_bad_or_conflicting_secret_declaration_is_a_recorded_failure() -> None:
    from vlhub.core import hookimpl, plugins
    from vlhub.core.types import Secret

    class Hub:
        description, options = "A publisher.", ()

        def __init__(self, name: str, secrets: Any) -> None:
            self.name, self.secrets = name, secrets

        def preflight(self, folder: Any, target: Any, options: Any, progress: Any = None) -> None: ...

        def publish(self, plan: Any, options: Any, progress: Any = None) -> None: ...

    class Plugin:
        @hookimpl
        def register_publishers(self, register: Any) -> None:
            register(Hub("plain-text", "MY_TOKEN"))
            register(Hub("other-git", (Secret("git", ("OTHER_GIT_TOKEN",)),)))
            register(Hub("shared", (Secret("mine", "MY_OWN_TOKEN"),)))

    host = plugins.host()
    assert host.register_module(Plugin(), "secretive")
    assert "plain-text" not in host.registry("publishers") and "other-git" in host.registry("publishers")
    assert host.secrets()["git"].env == ("VLHUB_GIT_TOKEN",) and host.secrets()["mine"].env == ("MY_OWN_TOKEN",)
    errors = [f.error for f in host.failures if f.plugin == "secretive"]
    assert any("secrets = 'MY_TOKEN' is not a Sequence[Secret]" in e for e in errors), errors
    assert any("declares the secret 'git' (OTHER_GIT_TOKEN) differently from publisher git (VLHUB_GIT_TOKEN)" in e
               for e in errors), errors


# ------------------------------------------------------------------ the dataset format through the CLI
def test_dataset_example_prepares_through_the_cli(site: Path, tmp_path: Path) -> None:
    source, out, env = csv_source(tmp_path / "src"), tmp_path / "prepared", {"PYTHONPATH": str(site)}
    proc = run_vlhub("data", "prepare", "csv-vqa", "--source", str(source), "--out", str(out),
                     "--val-fraction", "0.3", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert sum(result["records"].values()) == 6 and result["records"]["val"] >= 1 and result["dropped"] == 2
    stats = json.loads(run_vlhub("data", "stats", str(out), "--json", env=env, check=True).stdout)
    assert stats["dataset"] == "csv-vqa" and stats["records_total"] == 6 and stats["images"] == 4
    train = json.loads((out / "train.json").read_text())
    assert {"from": "human", "value": "What is 2+2?"} in [t for r in train + json.loads((out / "val.json").read_text())
                                                          for t in r["conversations"]]
    again = run_vlhub("data", "prepare", "csv-vqa", "--source", str(source / "qa.csv"), "--out", str(tmp_path / "o2"),
                      "--opt", "val_fraction=0", env=env)
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "o2" / "prepared.json").read_text())["records"] == {"train": 6}
    one_line_error(run_vlhub("data", "prepare", "csv-vqa", "--source", str(source), "--out", str(tmp_path / "o3"),
                             "--opt", "val_fraction=2", env=env), 2, "val_fraction=2.0 is outside [0, 1)")


def test_dataset_example_downloads_with_its_own_secret(site: Path, tmp_path: Path) -> None:
    source = csv_source(tmp_path / "src")
    bundle = tmp_path / "bundle.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        for path in sorted(source.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(source).as_posix())
    env = {"PYTHONPATH": str(site), "EXAMPLE_CSV_URL": bundle.as_uri()}
    one_line_error(run_vlhub("data", "download", "csv-vqa", "--out", str(tmp_path / "dl"), env=env), 2,
                   "EXAMPLE_CSV_TOKEN is not set")
    proc = run_vlhub("data", "download", "csv-vqa", "--out", str(tmp_path / "dl"), "--json",
                     env={**env, "EXAMPLE_CSV_TOKEN": CSV_TOKEN})
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "dl" / "qa.csv").is_file() and CSV_TOKEN not in proc.stdout + proc.stderr
    run_vlhub("data", "prepare", "csv-vqa", "--source", json.loads(proc.stdout)["source"],
              "--out", str(tmp_path / "prepared"), env=env, check=True)


# ------------------------------------------------------------------ the publisher through the CLI
def test_publisher_example_publishes_beside_the_git_lfs_server(site: Path, tmp_path: Path) -> None:
    model = make_model(tmp_path / "model", {"model.safetensors": 2 * MB})
    hub = tmp_path / "hub" / "org" / "food"
    env = {"PYTHONPATH": str(site), "EXAMPLE_BUCKET_TOKEN": BUCKET_TOKEN, "VLHUB_GIT_TOKEN": GIT_TOKEN,
           "VLHUB_GIT_USER": "user"}
    with GitLfsServer(tmp_path / "srv", token=GIT_TOKEN) as git:
        targets = ["--to", f"folder:{hub}", "--to", f"git:{git.repo_url('org/food')}"]
        first = run_vlhub("publish", str(model), *targets, "--no-verify", "--json", env=env)
        assert first.returncode == 0, first.stderr
        results = {t["target"].split(":", 1)[0]: t["result"] for t in json.loads(first.stdout)["targets"]}
        assert results["folder"]["changed"] and results["git"]["changed"]
        assert sha256(hub / "files" / "model.safetensors") == sha256(model / "model.safetensors")
        assert "model.safetensors" in git.ls_tree("org/food", "main")

        again = run_vlhub("publish", str(model), *targets, "--verify", "--json", env=env)
        assert again.returncode == 0, again.stderr
        assert [(t["result"]["changed"], t["result"]["bytes_sent"]) for t in json.loads(again.stdout)["targets"]] \
            == [(False, 0), (False, 0)]

    missing = {k: v for k, v in env.items() if k != "EXAMPLE_BUCKET_TOKEN"}
    one_line_error(run_vlhub("publish", str(model), "--to", f"folder:{hub}", env=missing), 2,
                   f"folder:{hub}", "EXAMPLE_BUCKET_TOKEN is not set")
    one_line_error(run_vlhub("publish", str(model), "--to", f"folder:{hub}",
                             env={**env, "EXAMPLE_BUCKET_TOKEN": "another-token-123"}), 2,
                   "EXAMPLE_BUCKET_TOKEN is not the token of the bucket")
    one_line_error(run_vlhub("publish", str(model), "--to", f"folder:{hub}", "--opt", "verify=perhaps", env=env), 2,
                   "verify='perhaps' is not a valid true/false value")
    one_line_error(run_vlhub("publish", str(model), "--to", "git:http://127.0.0.1:9/o/n.git", "--no-verify",
                             env=env), 2, "--verify is an option of the publisher folder")
    stored = "".join(p.read_text(errors="replace") for p in hub.rglob("*.json"))
    assert BUCKET_TOKEN not in stored and "token_sha256" in stored


# ------------------------------------------------------------------ the chat backend through the CLI
def test_chat_example_answers_through_the_cli(site: Path, tmp_path: Path) -> None:
    Image.new("RGB", (32, 24), "red").save(tmp_path / "a.png")
    env = {"PYTHONPATH": str(site), "EXAMPLE_RELAY_KEY": RELAY_KEY}
    with OpenAITestServer(models=("base",), api_key=RELAY_KEY) as srv:
        proc = run_vlhub("chat", "base", "--backend", "relay", "--endpoint", srv.base_url,
                         "--image", str(tmp_path / "a.png"), "-m", "hi", env=env)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "base saw 1 image(s) and read: hi"
        request = srv.requests[-1]
        assert {k.lower(): v for k, v in request["headers"].items()}["authorization"] == f"Bearer {RELAY_KEY}"
        assert RELAY_KEY not in request["raw"] and RELAY_KEY not in proc.stdout + proc.stderr

        pairs = run_vlhub("chat", "base", "--backend", "relay", "--opt", f"endpoint={srv.base_url}", "-m", "again",
                          env=env)
        assert pairs.returncode == 0 and pairs.stdout.strip() == "base saw 0 image(s) and read: again", pairs.stderr
        one_line_error(run_vlhub("chat", "base", "--backend", "relay", "--endpoint", srv.base_url, "-m", "hi",
                                 env={"PYTHONPATH": str(site)}), 2, "EXAMPLE_RELAY_KEY is not set")
        one_line_error(run_vlhub("chat", "base", "--backend", "relay", "--endpoint", srv.base_url, "-m", "hi",
                                 env={**env, "EXAMPLE_RELAY_KEY": "wrong-key-000000"}), 2, "refused EXAMPLE_RELAY_KEY")
        one_line_error(run_vlhub("chat", "--backend", "openai", "--base-url", srv.base_url, "--endpoint", srv.base_url,
                                 "-m", "hi", env=env), 2, "--endpoint is an option of the chat backend relay")


# ------------------------------------------------------------------ the pages (AppTest)
def page(name: str, lang: str = "en") -> AppTest:
    at = AppTest.from_file(str(VIEWS / f"{name}.py"), default_timeout=60)
    at.session_state["lang"] = lang
    at.run()
    assert not at.exception, at.exception
    return at


def test_data_page_offers_and_prepares_the_example_dataset(installed: Path, tmp_path: Path) -> None:
    zh = page("data", "zh")
    assert "csv-vqa" in zh.selectbox(key="data.name").options
    zh.selectbox(key="data.name").set_value("csv-vqa").run()
    assert zh.text_input(key="data.opt.csv-vqa.val_fraction").label == "验证集比例"

    source, out = csv_source(tmp_path / "src"), tmp_path / "prepared"
    at = page("data")
    at.selectbox(key="data.name").set_value("csv-vqa").run()
    assert at.text_input(key="data.opt.csv-vqa.val_fraction").label == "val fraction"
    at.text_input(key="data.source").set_value(str(source))
    at.text_input(key="data.out.csv-vqa").set_value(str(out))
    next(b for b in at.button if b.label == "Prepare").click().run()
    job = settle(at, "data.prepare")
    assert job.status == "done", job.error
    assert json.loads((out / "prepared.json").read_text())["dataset"] == "csv-vqa"
    assert any(s.value.startswith("Prepared 6 records") for s in at.success)


def test_publish_page_offers_and_publishes_to_the_example_target(installed: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXAMPLE_BUCKET_TOKEN", BUCKET_TOKEN)
    model, hub = make_model(tmp_path / "model", {"model.safetensors": MB}), tmp_path / "hub" / "org" / "m"
    zh = page("publish", "zh")
    assert "folder" in zh.multiselect(key="publish.publishers").options
    zh.multiselect(key="publish.publishers").set_value(["folder"]).run()
    assert zh.checkbox(key="publish.opt.verify").label == "复制后校验"

    at = page("publish")
    at.text_input(key="publish.folder").set_value(str(model))
    at.multiselect(key="publish.publishers").set_value(["folder"]).run()
    at.text_input(key="publish.target.folder").set_value(str(hub))
    at.checkbox(key="publish.opt.verify").uncheck()
    at.run()
    logins = " ".join(str(d.value.to_dict()) for d in at.dataframe)
    assert "folder-hub" in logins and "$EXAMPLE_BUCKET_TOKEN" in logins
    next(b for b in at.button if b.label == "Publish").click().run()
    job = settle(at, "publish")
    assert job.status == "done", job.error
    assert job.args["options"] == {"verify": False}
    assert any(f"folder:{hub}" in s.value for s in at.success), [s.value for s in at.success]
    assert sha256(hub / "files" / "model.safetensors") == sha256(model / "model.safetensors")


@pytest.fixture
def relay(installed: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAITestServer]:
    with OpenAITestServer(models=("base",), api_key=RELAY_KEY) as srv:
        monkeypatch.setenv("EXAMPLE_RELAY_KEY", RELAY_KEY)
        monkeypatch.setenv("EXAMPLE_RELAY_URL", srv.base_url)  # the page has no field for a plugin's option yet
        yield srv


def test_chat_page_offers_and_answers_with_the_example_backend(relay: OpenAITestServer) -> None:
    at = page("chat")
    assert "relay" in at.selectbox(key="chat.backend.0").options
    at.selectbox(key="chat.backend.0").set_value("relay").run()
    at.text_input(key="chat.model.0").set_value("base")
    next(b for b in at.button if b.label == "Start / restart").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    at.chat_input[0].set_value("What dish is this?").run()
    assert not at.exception
    answers: list[Any] = [m.markdown[-1].value for m in at.chat_message if m.name == "assistant"]
    assert answers == ["base saw 0 image(s) and read: What dish is this?"]
    at.session_state["chat.comparison"].close()


def test_environment_page_lists_every_declared_secret(installed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXAMPLE_RELAY_KEY", RELAY_KEY)
    at = page("environment")
    shown = " ".join(m.value for m in at.markdown)
    for name in ("csv-vqa", "folder-hub", "relay", "hf", "git", "openai"):
        assert f"**{name}**" in shown, name
    assert "$EXAMPLE_RELAY_KEY" in shown and RELAY_KEY not in shown
