"""End to end in a real headless Chromium: `vlhub launch`, prepare a fixture dataset on the Data page, chat with
the tiny model on the transformers backend, publish a tiny folder to the local git + LFS server, switch to
Chinese; a training run (with the test's stand-in for `xtuner train`) is started from the Train page,
followed live and reloaded. Every page is checked by its text and saved as a screenshot in tests/_artifacts/screenshots/.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import ROOT, train_python
from fixtures.datasets import make_foodieqa
from publish_helpers import MB, make_model
from servers.git_lfs import GitLfsServer
from fixtures.fake_trainer import FAKE_XTUNER, TOTAL
from vlhub.core import runs
from vlhub.core.lifecycle import refresh
from vlhub.plugins.devtools.tiny_model import make_tiny_model

SHOTS = ROOT / "tests" / "_artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TOKEN = "canary-browser-5a2e9c71"
REPO = "org/InternVL2-browser"
SLOW = 120_000  # ms: loading the model, preparing, publishing


@pytest.fixture
def launcher(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """`vlhub launch --no-browser --port 0` in a process group of its own; yields its URL."""
    monkeypatch.setenv("VLHUB_GIT_TOKEN", TOKEN)
    monkeypatch.setenv("VLHUB_GIT_USER", "user")
    exe = Path(sys.executable).parent / "vlhub"
    proc = subprocess.Popen([str(exe), "launch", "--no-browser", "--port", "0"], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, start_new_session=True)
    assert proc.stderr is not None
    try:
        for line in proc.stderr:
            found = re.search(r"vlhub launcher: (http://\S+)", line)
            if found:
                yield found.group(1)
                break
        else:
            pytest.fail(f"the launcher exited (code {proc.wait()}) without printing its URL")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)


@pytest.fixture
def browser_page() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: run `make test` (scripts/setup.sh --test installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 2000})  # the app scrolls inside
        page.set_default_timeout(30_000)
        yield page
        browser.close()


def shot(page: object, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=SLOW)  # the run ended
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def open_page(page: object, title: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True).click()


def enter(page: object, label: str, value: str) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(value)
    box.press("Enter")


def pick(page: object, label: str, option: str) -> None:
    page.get_by_label(label, exact=False).first.click()
    page.get_by_role("option", name=option, exact=True).click()


def test_launch_prepare_chat_publish_in_chromium(launcher: str, browser_page: object, tmp_path: Path) -> None:
    train_python()  # the transformers backend runs the tiny model in the train stage env
    source = make_foodieqa(tmp_path / "src")
    model = make_tiny_model(tmp_path / "tiny")
    folder = make_model(tmp_path / "to-publish", {"model.safetensors": MB})
    fake = tmp_path / "fake_xtuner.py"  # `xtuner train` needs a GPU: the documented launch_command seam
    fake.write_text(FAKE_XTUNER)
    page = browser_page
    with GitLfsServer(tmp_path / "git", token=TOKEN) as srv:
        page.goto(launcher)
        page.get_by_text("InternVL fine-tuning, from data to hub").wait_for()
        page.get_by_text("Next: prepare a dataset on the Data page.").wait_for()
        shot(page, "01-home")

        open_page(page, "Data")
        page.get_by_role("heading", name="Prepare a dataset").wait_for()
        pick(page, "Dataset plugin", "foodieqa")
        enter(page, "Source folder (or file)", str(source))
        page.get_by_role("button", name="Prepare", exact=True).click()
        page.get_by_text(re.compile(r"Prepared 17 records \(train \d+, val \d+\), 0 dropped")).wait_for(timeout=SLOW)
        page.get_by_text("Preview (train split)").wait_for()
        page.locator('[data-testid="stImage"] img').nth(7).wait_for()  # the preview grid: two rows of four
        shot(page, "02-data")

        open_page(page, "Train")
        page.get_by_role("heading", name="Fine-tune").wait_for()
        page.get_by_text("No training run yet.").wait_for()
        enter(page, "Base model folder (InternVL2)", str(model))
        page.get_by_text("foodieqa: 17 records (train 15, val 2), 9 images").wait_for()  # the data, before planning
        for label, value in {"batch size": "1", "grad accum": "1", "save steps": "2"}.items():
            page.get_by_label(label, exact=True).fill(value)
        page.get_by_text("All settings").click()
        page.get_by_label("launch command", exact=True).fill(f"{sys.executable} {fake} {{config}} {{work_dir}}")
        page.get_by_role("button", name="Start training").click()
        page.get_by_text(re.compile(r"Started run \S+-train-\S+")).wait_for(timeout=SLOW)
        shown = page.get_by_text(re.compile(rf"iteration [1-{TOTAL - 2}] / {TOTAL}"))
        first = int(shown.inner_text(timeout=SLOW).split()[1])
        later = page.get_by_text(re.compile(rf"iteration [{first + 1}-{TOTAL}] / {TOTAL}"))
        later.wait_for(timeout=SLOW)  # the live view polls the run folder by itself
        assert "run=" in page.url
        page.reload()  # a reload shows the same run, progress and charts
        page.get_by_text(re.compile(rf"iteration [4-8] / {TOTAL}")).wait_for(timeout=SLOW)
        page.get_by_test_id("stVegaLiteChart").nth(2).wait_for()  # loss, lr, GPU memory
        shot(page, "03-train")

        open_page(page, "Convert")
        page.get_by_role("heading", name="Convert a checkpoint").wait_for()
        shot(page, "04-convert")

        open_page(page, "Chat")
        page.get_by_role("heading", name="Chat with a model").wait_for()
        pick(page, "Backend", "transformers")
        enter(page, "Model folder", str(model))
        page.get_by_role("button", name="Start / restart").click()
        prompt = page.get_by_placeholder("Ask about the images ...")
        prompt.wait_for(timeout=SLOW)
        prompt.fill("这是什么菜？")
        prompt.press("Enter")
        messages = page.get_by_test_id("stChatMessage")
        messages.nth(1).wait_for(timeout=SLOW)
        assert "这是什么菜？" in messages.nth(0).inner_text()
        page.get_by_role("button", name="Export JSON").wait_for(timeout=SLOW)  # the answer is complete
        assert messages.nth(1).inner_text().strip()
        shot(page, "05-chat")

        open_page(page, "Publish")
        page.get_by_role("heading", name="Publish a model").wait_for()
        enter(page, "Model folder", str(folder))
        pick(page, "Targets (several at once)", "git")
        page.keyboard.press("Escape")
        enter(page, "git target", srv.repo_url(REPO))
        page.get_by_role("button", name="Preflight (send nothing)").click()
        page.get_by_text("Files for git:").wait_for(timeout=SLOW)
        assert srv.ls_tree(REPO, "main") == []
        page.get_by_role("button", name="Publish", exact=True).click()
        page.get_by_text(re.compile(r"git:\S+: \S+ \(commit [0-9a-f]{12}; sent")).wait_for(timeout=SLOW)
        assert {"model.safetensors", "README.md", "config.json"} <= set(srv.ls_tree(REPO, "main"))
        assert srv.is_pointer(REPO, "main", "model.safetensors")
        shot(page, "06-publish")
        assert TOKEN not in page.content()

        open_page(page, "Plugins & environment")
        page.get_by_text("train — ready").wait_for()
        page.get_by_text("found ($VLHUB_GIT_TOKEN)").wait_for()
        shot(page, "07-environment")
        assert TOKEN not in page.content()

        run = runs.list_runs("train")[0]
        deadline = time.monotonic() + 60
        while refresh(run).status != "finished":
            assert time.monotonic() < deadline, run.data
            time.sleep(0.5)
        pick(page, "Language", "中文")
        open_page(page, "首页")
        page.get_by_text("InternVL 微调：从数据到模型仓库").wait_for()
        page.get_by_text("下一步：在“转换”页把最后一个检查点转换为模型文件夹。").wait_for()
        shot(page, "08-home-zh")
