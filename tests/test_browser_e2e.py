"""End to end in a real headless Chromium, in English and in 中文: `vlhub launch`, then data → train → convert →
chat → publish as a user walks it. Every action button is double-clicked (one job each: one prepared folder,
one training run, one stop, one resume, one conversion, one loaded model, one preflight, one publish) and
every page is reloaded (its fields and the language stay). Training runs the tests' stand-in for
`xtuner train` (tests/fixtures/fake_trainer.py) in the train env, saving real checkpoints of the tiny
model, so the conversion, the chat and the publish work on what the run produced. Pages are checked by
their text; each is saved as a screenshot in tests/_artifacts/screenshots/ (LANG-NN-page.png).
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from playwright.sync_api import expect, sync_playwright

from conftest import ROOT, train_python
from fixtures.datasets import make_foodieqa
from fixtures.fake_trainer import FAKE_XTUNER_CHECKPOINTS, TOTAL
from servers.git_lfs import GitLfsServer
from vlhub.core import runs, train
from vlhub.core.chat import workers_dir
from vlhub.core.lifecycle import refresh
from vlhub.plugins.devtools.tiny_model import make_tiny_model
from vlhub.streamlit_app import pipeline
from vlhub.streamlit_app.text import catalogue

SHOTS = ROOT / "tests" / "_artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TOKEN = "canary-browser-5a2e9c71"
SLOW = 240_000  # ms: planning, building the model, converting, loading it on a busy CPU
SETTINGS = {"batch_size": "1", "grad_accum": "1", "save_steps": "2"}


@pytest.fixture
def launcher(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """`vlhub launch --no-browser --port 0` in a process group of its own; yields its URL. Its output goes to
    tests/_artifacts/launcher-LANG.log (read there, never left to fill a pipe)."""
    monkeypatch.setenv("VLHUB_GIT_TOKEN", TOKEN)
    monkeypatch.setenv("VLHUB_GIT_USER", "user")
    log = SHOTS.parent / f"launcher-{request.node.callspec.params['lang']}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).parent / "vlhub"
    with open(log, "w") as out:
        proc = subprocess.Popen([str(exe), "launch", "--no-browser", "--port", "0"], stderr=out,
                                stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (found := re.search(r"vlhub launcher: (http://\S+)", log.read_text(errors="replace"))):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the launcher did not print its URL (exit code {proc.poll()}): see {log}")
            time.sleep(0.2)
        yield found.group(1)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)


@pytest.fixture
def browser_page() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is missing: run `make test` (scripts/setup.sh --test installs Debian's chromium)")

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 2000})  # the app scrolls inside
        page.set_default_timeout(60_000)
        yield page
        browser.close()


class Walk:
    """The browser on the launcher, in one language: the page's words come from its catalogue."""

    def __init__(self, page: Any, url: str, lang: str) -> None:
        self.page, self.url, self.lang = page, url, lang
        self.text = catalogue(lang)
        self.options = {o.name: o for o in train.options("xtuner")}

    def t(self, key: str, **fields: Any) -> str:
        return self.text[key].format(**fields) if fields else self.text[key]

    def pattern(self, key: str, **fields: str) -> re.Pattern[str]:
        """The catalogue text of ``key`` as a pattern: ``fields`` as given (patterns), the others any text."""
        parts = re.split(r"(\{[a-z_]+\})", self.text[key])
        return re.compile("".join(fields.get(p[1:-1], ".+?") if p.startswith("{") else re.escape(p) for p in parts))

    def option(self, name: str) -> str:
        """The Train page's label of a trainer option in this language."""
        opt = self.options[name]
        return opt.labels.get(self.lang) or opt.label or name.replace("_", " ")

    def idle(self) -> None:
        """Wait until the page's script run has ended (a click while it still draws may hit a button that is
        being replaced)."""
        self.page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=SLOW)

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.idle()
        self.page.screenshot(path=str(SHOTS / f"{self.lang}-{name}.png"))

    def open(self, key: str, heading: str) -> None:
        self.page.get_by_test_id("stSidebarNav").get_by_role("link", name=self.t(key), exact=True).click()
        self.heading(heading)

    def heading(self, key: str) -> None:
        self.page.get_by_role("heading", name=self.t(key)).wait_for(timeout=SLOW)

    def field(self, label: str) -> Any:
        return self.page.get_by_label(label, exact=True)

    def enter(self, label: str, value: str) -> None:
        """Type ``value`` into a field and wait until the page has taken it: the value appears in a code block
        (the command preview) or a caption, and the page's run has ended."""
        box = self.field(label)
        box.fill(value)
        box.press("Enter")
        self.page.locator('[data-testid="stCode"], [data-testid="stCaptionContainer"]') \
            .filter(has_text=value).first.wait_for(state="attached", timeout=SLOW)
        self.idle()

    def pick(self, label: str, option: str) -> None:
        """Choose ``option`` in the selectbox or multiselect ``label``."""
        self.idle()
        self.page.get_by_label(label, exact=False).first.click()
        self.page.get_by_role("option", name=option, exact=True).click()
        listbox = self.page.get_by_role("listbox")
        if listbox.count():  # a multiselect stays open
            self.page.keyboard.press("Escape")
        listbox.wait_for(state="detached")

    def click_text(self, text: str) -> None:
        """Click an expander's title or a checkbox's label, once the page is drawn."""
        self.idle()
        self.page.get_by_text(text, exact=True).click()

    def double_click(self, key: str) -> None:
        """A double click on the action button ``key``'s label (the second click lands while the first runs)."""
        self.idle()
        self.page.get_by_role("button", name=self.t(key), exact=True).first.dblclick()

    def see(self, text: str | re.Pattern[str], timeout: float = SLOW) -> Any:
        """Wait until ``text`` is shown (not only in a collapsed expander, e.g. the command preview)."""
        found = self.page.get_by_text(text).filter(visible=True).first
        found.wait_for(timeout=timeout)
        return found

    def reload(self, heading: str, fields: dict[str, str]) -> None:
        """Reload the page: the language and the fields' values stay."""
        self.page.reload()
        self.heading(heading)
        for label, value in fields.items():
            expect(self.field(label)).to_have_value(value, timeout=30_000)


def jobs_of(action: str, **match: Any) -> list[runs.Run]:
    return [r for r in runs.list_runs(action) if r.data.get("action") == action
            and all((r.data.get("spec") or {}).get(k) == v for k, v in match.items())]


def status(run_id: str) -> str:
    """A run's status, read fresh (an active run whose process is gone is recorded as ended)."""
    return refresh(runs.load_run(run_id)).status


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = SLOW / 1000) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_data_train_convert_chat_publish_in_chromium(lang: str, launcher: str, browser_page: Any,
                                                    tmp_path: Path) -> None:
    python = train_python()  # the stand-in trainer, the conversion and the transformers backend run in it
    source = make_foodieqa(tmp_path / "src")
    model = make_tiny_model(tmp_path / "InternVL2-tiny")
    fake = tmp_path / "fake_xtuner.py"  # `xtuner train` needs a GPU: the documented launch_command seam
    fake.write_text(FAKE_XTUNER_CHECKPOINTS.replace("time.sleep(0.5)", "time.sleep(2.0)"))  # time to stop it
    walk = Walk(browser_page, launcher, lang)
    try:
        with GitLfsServer(tmp_path / "git", token=TOKEN) as srv:
            walk_through(walk, srv, python, source, model, fake)
    except BaseException:
        SHOTS.mkdir(parents=True, exist_ok=True)
        walk.page.screenshot(path=str(SHOTS / f"{lang}-failed.png"))  # where it stopped
        raise


def walk_through(walk: Walk, srv: GitLfsServer, python: Path, source: Path, model: Path, fake: Path) -> None:
    """Data → train → convert → chat → publish, then the environment and the home page."""
    page, lang, launcher = walk.page, walk.lang, walk.url
    english = catalogue("en")
    page.goto(launcher)
    page.get_by_role("heading", name=english["home.heading"]).wait_for(timeout=SLOW)  # a new home starts in English
    if lang == "zh":
        walk.pick(english["lang.label"], "中文")
    walk.heading("home.heading")
    walk.see(walk.t("next.data"))
    walk.reload("home.heading", {})  # the language is remembered
    walk.shot("01-home")

    # Data: prepare the fixture dataset
    walk.open("stage.data", "data.title")
    walk.pick(walk.t("data.plugin"), "foodieqa")
    walk.enter(walk.t("data.source"), str(source))
    walk.double_click("data.prepare")
    walk.see(walk.pattern("data.prepared", total="17"))
    walk.see(walk.t("data.preview"))
    page.locator('[data-testid="stImage"] img').nth(7).wait_for()  # the preview grid: two rows of four
    assert len(jobs_of("data.prepare")) == 1
    walk.reload("data.title", {walk.t("data.source"): str(source)})
    walk.see(walk.pattern("data.prepared", total="17"))
    walk.shot("02-data")

    # Train: start (the stand-in trainer), stop, resume, to the end
    walk.open("stage.train", "train.title")
    walk.see(walk.t("train.no_runs"))
    walk.enter(walk.t("train.model"), str(model))
    walk.see(walk.pattern("train.data_summary", total="17"))  # the data, before planning
    for name, value in SETTINGS.items():
        walk.field(walk.option(name)).fill(value)
    walk.click_text(walk.t("train.all_settings"))
    walk.enter(walk.option("launch_command"), f"{python} {fake} {{config}} {{work_dir}}")
    walk.double_click("train.start")
    walk.see(walk.pattern("train.started"))
    assert len(jobs_of("train.plan")) == 1 and len(runs.list_runs("train")) == 1
    run = runs.list_runs("train")[0]
    wait_until(lambda: (run.dir / "work" / "iter_2.pth").is_file() or status(run.id) == "finished",
               "the first checkpoint")
    if status(run.id) == "running":
        walk.double_click("train.stop")
        wait_until(lambda: status(run.id) == "stopped", "the run to stop")
        walk.see(walk.t("train.resume"))
        assert len(jobs_of("train.stop")) == 1
        walk.double_click("train.resume")
        wait_until(lambda: jobs_of("train.resume") and status(run.id) in ("running", "finished"),
                   "the run to resume")
        assert len(jobs_of("train.resume")) == 1 and len(runs.list_runs("train")) == 1
    wait_until(lambda: status(run.id) == "finished", "the run to finish")
    walk.see(walk.pattern("train.progress", it=str(TOTAL), total=str(TOTAL)))
    assert "run=" in page.url
    walk.reload("train.title", {walk.option(n): v for n, v in SETTINGS.items()})
    walk.see(walk.pattern("train.progress", it=str(TOTAL), total=str(TOTAL)))  # the same run, from the URL
    page.get_by_test_id("stVegaLiteChart").nth(1).wait_for()  # loss, lr
    walk.shot("03-train")

    # Convert: the run's last checkpoint (verified in English; the Chinese walk saves the minute)
    walk.open("stage.convert", "convert.title")
    out = str(pipeline.models_dir() / f"{run.id}-iter_{TOTAL}")  # the run's last checkpoint, chosen:
    page.locator('[data-testid="stCode"]').filter(has_text=out).first.wait_for(state="attached")  # in the preview
    if lang == "zh":
        walk.click_text(walk.t("convert.verify"))
    walk.double_click("convert.start")
    walk.see(walk.t("convert.verified" if lang == "en" else "convert.not_verified", out=out))
    assert len(jobs_of("convert")) == 1 and (Path(out) / "vlhub_provenance.json").is_file()
    walk.reload("convert.title", {walk.t("convert.out"): out})
    walk.shot("04-convert")

    # Chat: the converted model, prefilled, on the transformers backend (CPU)
    walk.open("chat.nav", "chat.title")
    expect(walk.field(walk.t("chat.model_dir"))).to_have_value(out)
    walk.double_click("chat.start")
    prompt = page.get_by_placeholder(walk.t("chat.input"))
    prompt.wait_for(timeout=SLOW)
    assert len(list(workers_dir().glob("*.json"))) == 1  # one model loaded
    tokens = walk.field(walk.t("chat.max_new_tokens"))
    tokens.fill("24")  # the tiny model's weights are random: a short answer is enough
    tokens.press("Enter")
    walk.idle()
    prompt.fill("这是什么菜？")
    prompt.press("Enter")
    messages = page.get_by_test_id("stChatMessage")
    messages.nth(1).wait_for(timeout=SLOW)
    page.get_by_role("button", name=walk.t("chat.export_json")).wait_for(timeout=SLOW)  # the answer is complete
    assert "这是什么菜？" in messages.nth(0).inner_text() and messages.nth(1).inner_text().strip()
    walk.shot("05-chat")
    walk.reload("chat.title", {walk.t("chat.model_dir"): out})
    walk.see(walk.pattern("chat.loaded"))  # still loaded: Start reuses it
    walk.idle()
    page.get_by_role("button", name=walk.t("chat.unload"), exact=True, disabled=False).first.click()  # its own
    wait_until(lambda: not list(workers_dir().glob("*.json")), "the model to be unloaded")

    # Publish: the converted folder, prefilled, to the git + LFS server
    walk.open("stage.publish", "publish.title")
    expect(walk.field(walk.t("publish.folder"))).to_have_value(out)
    walk.pick(walk.t("publish.targets"), "git")
    repo = f"org/InternVL2-{lang}"
    walk.enter(walk.t("publish.target", name="git"), srv.repo_url(repo))
    walk.double_click("publish.preflight")
    walk.see(walk.t("publish.files_of", target=f"git:{srv.repo_url(repo)}"))
    assert srv.ls_tree(repo, "main") == [] and len(jobs_of("publish", dry_run=True)) == 1
    walk.double_click("publish.publish")
    walk.see(walk.pattern("publish.done", url=r"\S+", state=walk.pattern("publish.commit", commit="[0-9a-f]{12}")
                          .pattern))
    assert len(jobs_of("publish", dry_run=False)) == 1
    assert {"config.json", "README.md", "vlhub_provenance.json"} <= set(srv.ls_tree(repo, "main"))
    walk.reload("publish.title", {walk.t("publish.folder"): out,
                                  walk.t("publish.target", name="git"): srv.repo_url(repo)})
    walk.shot("06-publish")
    assert TOKEN not in page.content()

    walk.open("nav.plugins", "nav.plugins")
    walk.see(f"train — {walk.t('env.ready')}")
    walk.see(walk.t("tokens.found", source="$VLHUB_GIT_TOKEN"))
    walk.shot("07-environment")
    assert TOKEN not in page.content()

    walk.open("nav.home", "home.heading")
    walk.see(walk.t("next.done"))
    walk.shot("08-home-done")
