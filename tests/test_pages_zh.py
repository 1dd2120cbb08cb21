"""Every page in 中文 (AppTest) shows no English outside a fixed list of proper and package names.

The pages are rendered through the app's own navigation with real content: a dataset prepared by a Data
page job, a training run started from the Train page (the tests' stand-in for ``xtuner train``) and
finished, a converted model folder, a preflight and a publish to the test git + LFS server, a chat and an
evaluation on the test OpenAI-compatible endpoint; and with failing actions (a missing source folder, a
start the trainer refuses, a file that is not a checkpoint, a bad repository name), so their errors render.
Every text of every element is collected (titles, labels, help, placeholders, options, captions,
markdown, alerts, metric labels and values, expander, tab and status titles, table headers and cells,
chart axis titles) and its English words are compared with :data:`ALLOWED`, which names products,
packages, file formats and units only: a UI word is never added there, it is translated.

English that is data (paths, URLs, run ids, file names, identifiers with digits, underscores or dots,
plugin and template names from the registry, command lines in code blocks) is not a UI word. A third-party
plugin's text that has no Chinese is shown in English and marked as such (``text.untranslated``).
"""
from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from conftest import ROOT, train_python
from fixtures.datasets import DISHES, make_foodieqa
from fixtures.fake_trainer import FAKE_XTUNER
from publish_helpers import make_model
from servers.git_lfs import GitLfsServer
from servers.openai_api import OpenAITestServer
from vlhub.core import chat as chatapi
from vlhub.core import hookimpl, plugins, runs, stage
from vlhub.core.fsutil import atomic_write_json
from vlhub.core.options import Option
from vlhub.core.lifecycle import refresh
from vlhub.plugins.devtools.tiny_model import make_tiny_model
from vlhub.streamlit_app import jobs, pipeline
from vlhub.streamlit_app.text import catalogue

APP = str(ROOT / "streamlit_app" / "app.py")
ZH = catalogue("zh")
TOKEN = "canary-zh-3f9b1c27"
MODELS = ("internvl2-base", "internvl2-tuned")  # the endpoint's model names

#: Names that stay English in Chinese text: products, packages, formats, file kinds, units and standard
#: abbreviations. Fixed: a UI word found in a page is translated, never added here.
ALLOWED = frozenset(w.lower() for w in (
    # products, packages and services
    "InternVL", "InternVL2", "InternLM", "Qwen", "xtuner", "ms-swift", "LMDeploy", "TurboMind", "PyTorch", "torch",
    "transformers", "vLLM", "DeepSpeed", "bitsandbytes", "flash-attn", "mmengine", "torchrun", "srun", "vlhub",
    "Python", "Streamlit", "OpenAI", "Hugging", "Face", "ModelScope", "OpenXLab", "GitHub", "git", "LFS",
    "TensorBoard", "SwanLab", "VS", "Code", "FoodieQA", "CLoT", "LLaVA", "ShareGPT", "NVIDIA", "CUDA",
    # methods, formats, protocols and standard abbreviations
    "LoRA", "QLoRA", "ZeRO", "LLM", "ViT", "AdamW", "Top-p", "chrF", "token", "tokens", "GPU", "GPUs", "CPU",
    "JSON", "JSONL", "YAML", "Markdown", "PNG", "JPEG", "WebP", "UTF", "HTTP", "SSH", "API", "SDK", "URL", "README",
    "ID", "NCCL",
    # units, and the language's own name in the language switch
    "MB", "KB", "GB", "KiB", "MiB", "GiB", "it/s", "s/it", "English",
))
#: Markdown and Streamlit markup that is not text.
MARKUP = [re.compile(p, re.S) for p in (
    r"```.*?```", r"`[^`]*`", r"<!--.*?-->", r"\]\([^)]*\)", r":material/[a-z_]+:", r":[a-z]+\[", r"https?://\S+",
    r"\$[A-Z_][A-Z0-9_]*", r"\{[a-z_]+\}")]
TOKENS = re.compile(r"[A-Za-z0-9_.\-/:@~+'#=]+")
WORD = re.compile(r"[A-Za-z]+(?:['-][A-Za-z]+)*")
#: Fields of element protos that hold text a user reads (the value of a field is the user's own).
TEXT_FIELDS = {"label", "help", "placeholder", "body", "options", "text", "caption", "title", "message",
               "delta", "description", "clear_label"}
SKIPPED = {"code", "json"}  # command lines, logs and JSON documents: shown as they are


# ------------------------------------------------------------------ what a page shows
def _proto_texts(message: Any) -> Iterator[str]:
    for field, value in message.ListFields():
        items = list(value) if isinstance(value, Iterable) and not isinstance(value, (str, bytes)) \
            and not hasattr(value, "ListFields") else [value]
        if field.type == field.TYPE_MESSAGE:
            for item in items:
                yield from _proto_texts(item)
        elif field.type == field.TYPE_STRING and field.name in TEXT_FIELDS:
            yield from items


def _chart_titles(spec: str) -> Iterator[str]:
    """The axis and legend titles of a chart (a channel's ``title``, else its ``field``)."""
    found = json.loads(spec or "{}")
    for layer in [found, *found.get("layer", [])]:
        for name, channel in (layer.get("encoding") or {}).items():
            if name in ("x", "y", "color") and isinstance(channel, dict):
                title = channel.get("title", channel.get("field"))
                if isinstance(title, str):
                    yield title


def shown_texts(at: AppTest) -> Iterator[tuple[str, str]]:
    """``(element type, text)`` of everything the page shows (main area and sidebar); the model card the
    Publish page previews is the document that will be sent, not the page's text: its body is left out."""
    yield from _node_texts(at._tree, card=False)


def _node_texts(node: Any, card: bool) -> Iterator[tuple[str, str]]:
    kind = getattr(node, "type", "")
    proto = getattr(node, "proto", None)
    if kind == "tab" and proto is not None and proto.label == ZH["publish.card_preview"]:
        card = True
    if proto is not None and kind not in SKIPPED and not (card and kind == "markdown"):
        yield from _element_texts(node, kind, proto)
    for child in getattr(node, "children", {}).values():
        yield from _node_texts(child, card)


def _element_texts(node: Any, kind: str, proto: Any) -> Iterator[tuple[str, str]]:
    if kind == "dataframe":
        frame = node.value
        for column in frame.columns:
            yield kind, str(column)
        for value in frame.to_numpy().ravel():
            if isinstance(value, str):
                yield kind, value
    elif kind == "vega_lite_chart":
        for title in _chart_titles(proto.spec):
            yield kind, title
    elif kind in ("error", "warning", "info", "success"):
        yield kind, proto.body
    else:
        for text in _proto_texts(proto):
            yield kind, text
    if kind in ("selectbox", "multiselect") and not proto.placeholder:  # what Streamlit shows in its stead
        if not proto.options:
            yield kind, "No options to select"
        elif kind == "multiselect" or not proto.HasField("default"):
            yield kind, "Choose options" if kind == "multiselect" else "Choose an option"


def english_words(text: str, flags: bool = True) -> list[str]:
    """The English words of ``text`` that are not in :data:`ALLOWED` (markup, code, URLs, paths and
    identifiers left out); ``flags=False`` leaves out ``--flag`` words too (a page puts its field's label there)."""
    for pattern in MARKUP:
        text = pattern.sub(" ", text)
    words = []
    for token in TOKENS.findall(text):
        if not flags and token.startswith("--"):
            continue
        token = token.rstrip(".:'-#=+~").lstrip("'-#=+~")
        if token.lower() in ALLOWED or "." in token:  # a file name, a version, a host
            continue
        parts = token.split("/") if not token.startswith(("/", "~")) else [token]
        for part in parts:
            if WORD.fullmatch(part) and len(part) > 1 and part.lower() not in ALLOWED | registered_names():
                words.append(part)
    return words


def registered_names() -> frozenset[str]:
    """Names of registered plugins, of what they registered (dataset, trainer, publisher, backend, template
    names) and of the stage environments they declare: identifiers a user types, shown as they are; and the
    categories of the fixture dataset's dishes (data, shown in the evaluation's tables)."""
    report = plugins.host().describe()
    names = {p["name"] for p in report["plugins"]} | set(stage.names()) | {s["name"] for s in report["secrets"]}
    names |= {n for p in report["plugins"] for items in p["registered"].values() for n in items}
    names |= {food_type for food_type, _ in DISHES.values()}
    return frozenset(n.lower() for n in names)


def leaks(at: AppTest, page: str) -> list[str]:
    """``page: word in “text”`` for every English word the page shows outside :data:`ALLOWED`."""
    assert not at.exception, at.exception
    found = {}
    for kind, text in shown_texts(at):
        words = english_words(text)
        if words:
            found[f"{page} [{kind}] {text[:150]!r}"] = ", ".join(dict.fromkeys(words))
    return [f"{where}: {words}" for where, words in found.items()]


# ------------------------------------------------------------------ the world the pages show
def wait_job(job_id: str, timeout: float = 180) -> jobs.Job:
    deadline = time.monotonic() + timeout
    job = jobs.load(job_id)
    while job.active:
        assert time.monotonic() < deadline, f"job {job_id} still running"
        time.sleep(0.3)
        job = jobs.load(job_id)
    return job


def app(lang: str = "zh") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["lang"] = lang
    at.run()
    assert not at.exception, at.exception
    return at


def go(at: AppTest, page: str) -> AppTest:
    at.switch_page(f"views/{page}.py").run()
    assert not at.exception, at.exception
    return at


def settled(at: AppTest, action: str) -> jobs.Job:
    """Wait for the newest job of ``action`` to end, then draw the page again (what its poll does)."""
    job = wait_job(jobs.latest(action).id)
    at.run()
    assert not at.exception, at.exception
    return job


def click(at: AppTest, key: str) -> None:
    at.button(key=key).click().run()
    assert not at.exception, at.exception


def by_label(at: AppTest, label: str) -> Any:
    return next(b for b in at.button if b.label == label)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A prepared dataset, a base model, the stand-in for ``xtuner train``, a git + LFS server and an
    OpenAI-compatible endpoint (answers in Chinese)."""
    train_python()
    monkeypatch.setenv("VLHUB_GIT_TOKEN", TOKEN)
    monkeypatch.setenv("VLHUB_GIT_USER", "user")
    st.cache_data.clear()
    fake = tmp_path / "fake_xtuner.py"
    fake.write_text(FAKE_XTUNER)
    with GitLfsServer(tmp_path / "git", token=TOKEN) as git, \
            OpenAITestServer(models=MODELS, answer=lambda model, messages: f"{model}：川菜。") as endpoint:
        yield {"source": make_foodieqa(tmp_path / "src"), "base": make_tiny_model(tmp_path / "InternVL2-tiny"),
               "launch": f"{sys.executable} {fake} {{config}} {{work_dir}}", "git": git, "endpoint": endpoint,
               "tmp": tmp_path}
    for entry in list(chatapi._LOADED.values()):
        entry.unload()


def converted_model(run: runs.Run, base: Path) -> Path:
    """A model folder converted from ``run``'s last checkpoint, as the Convert page leaves it."""
    folder = make_model(pipeline.models_dir() / f"{run.id}-iter_8")
    atomic_write_json(folder / "vlhub_provenance.json", {
        "format": "vlhub-provenance/2", "format_version": 2, "converter": "internvl-official",
        "base_model": str(base), "run": {"id": run.id, "dir": str(run.dir)}, "checkpoint": "iter_8.pth"})
    return folder


def test_every_page_in_chinese_has_no_english(world: dict[str, Any]) -> None:
    found: list[str] = []
    at = app("zh")
    found += leaks(at, "home (empty)")

    # Data: prepare the fixture dataset; its result, report and preview
    go(at, "data")
    at.selectbox(key="data.name").set_value("foodieqa").run()
    at.text_input(key="data.source").set_value(str(world["source"])).run()
    click(at, "data.prepare")
    prepared = settled(at, "data.prepare")
    assert prepared.status == "done", prepared.error
    found += leaks(at, "data")

    # Train: a run started (the stand-in trainer), followed to its end
    go(at, "train")
    at.text_input(key="train.model").set_value(str(world["base"]))
    for name, value in {"batch_size": "1", "grad_accum": "1", "save_steps": "2",
                        "launch_command": world["launch"]}.items():
        at.text_input(key=f"train.opt.xtuner.{name}").set_value(value)
    at.run()
    click(at, "train.start")
    if jobs.latest("train.plan").active:  # planning: the job's status box and what it does first
        found += leaks(at, "train (planning)")
    started = settled(at, "train.plan")
    assert started.status == "done", started.error
    run = runs.load_run(started.result["run_id"])
    deadline = time.monotonic() + 120
    while refresh(run).status != "finished":
        assert time.monotonic() < deadline, run.data
        time.sleep(0.5)
    at.run()
    found += leaks(at, "train (a finished run)")

    model = converted_model(run, world["base"])
    found += leaks(go(at, "home"), "home (a run)")

    # Convert: the run's checkpoints; the stand-in's checkpoint is no real one: the conversion fails
    go(at, "convert")
    click(at, "convert.start")
    failed = settled(at, "convert")
    assert failed.status == "failed" and at.error
    found += leaks(at, "convert (failed)")

    # Publish: a bad repository name fails its preflight; then a preflight and a publish to the git server
    go(at, "publish")
    at.text_input(key="publish.folder").set_value(str(model))
    at.multiselect(key="publish.publishers").set_value(["git", "hf"]).run()
    at.text_input(key="publish.target.git").set_value(world["git"].repo_url("org/InternVL2-zh"))
    at.text_input(key="publish.target.hf").set_value("x1/y2/z3").run()  # not OWNER/NAME
    click(at, "publish.preflight")
    assert settled(at, "publish").status == "done"
    assert at.error
    found += leaks(at, "publish (preflight)")
    at.multiselect(key="publish.publishers").set_value(["git"]).run()
    click(at, "publish.publish")
    published = settled(at, "publish")
    assert published.status == "done", published.error
    lines = [s.value for s in at.success if world["git"].repo_url("org/InternVL2-zh") in s.value]
    assert lines and all(re.search(r"\]\(http[^)\s]+\)（", line) for line in lines), \
        lines  # a link of its own: the Chinese text after the URL is not part of it
    found += leaks(at, "publish (published)")

    # Chat: two models on the OpenAI-compatible endpoint, a question, an evaluation
    go(at, "chat")
    at.toggle(key="chat.compare").set_value(True).run()
    for side in range(2):
        at.selectbox(key=f"chat.backend.{side}").set_value("openai")
    at.run()
    for side, name in enumerate(MODELS):
        at.text_input(key=f"chat.model.{side}").set_value(name)
        at.text_input(key=f"chat.base_url.{side}").set_value(world["endpoint"].base_url)
    by_label(at, ZH["chat.start"]).click().run()
    for entry in at.session_state["chat.entries"]:
        assert entry.wait(10)
    at.run()
    at.chat_input[0].set_value("图中是什么菜？").run()
    by_label(at, ZH["chat.eval_run"]).click().run()
    assert not at.error, [e.value for e in at.error]
    found += leaks(at, "chat")

    found += leaks(go(at, "environment"), "environment")
    found += leaks(go(at, "home"), "home (published)")

    # failing actions: a start the trainer refuses, a source folder that does not exist
    go(at, "train")
    at.text_input(key="train.opt.xtuner.launch_command").set_value("").run()
    click(at, "train.start")
    refused = settled(at, "train.plan")
    assert refused.status == "failed" and at.error
    assert [r.id for r in runs.list_runs("train")] == [run.id]  # the refused start left no planned run
    found += leaks(at, "train (refused start)")
    go(at, "data")
    at.text_input(key="data.source").set_value(str(world["tmp"] / "nowhere")).run()
    at.text_input(key="data.out.foodieqa").set_value(str(world["tmp"] / "prepared-2")).run()
    click(at, "data.prepare")
    assert settled(at, "data.prepare").status == "failed" and at.error
    found += leaks(at, "data (missing source)")
    assert not found, "English on the 中文 pages:\n" + "\n".join(dict.fromkeys(found))


# ------------------------------------------------------------------ every text there is, without rendering it
def chinese_texts() -> Iterator[tuple[str, str]]:
    """``(where, text)`` of every Chinese text vlhub has: the pages' catalogue, the core's and the plugins'
    keyed messages (placeholders filled with a digit), the built-in plugins' option labels, help, choice
    names and dataset descriptions."""
    from vlhub.core import data, messages

    for key, text in ZH.items():
        yield f"zh.json {key}", text
    plugins.host().load()
    for key, entry in messages.CATALOG.items():
        for part in entry.get("zh", ()):
            yield f"message {key}", re.sub(r"\{[a-z_]+(![rs])?\}", "0", part)
    for family in ("datasets", "trainers", "publishers", "chat_backends"):
        for name, obj in plugins.registry(family).items():
            for option in getattr(obj, "options", None) or train_options(family, name):
                yield f"{family} {name} option {option.name}", option.labels.get("zh", "")
                yield f"{family} {name} option {option.name} help", option.helps.get("zh", "")
                for choice, text in option.choice_labels.get("zh", {}).items():
                    yield f"{family} {name} option {option.name} choice {choice}", text
    for spec in data.datasets():
        yield f"dataset {spec['name']} description", spec["descriptions"].get("zh", "")


def train_options(family: str, name: str) -> list[Any]:
    from vlhub.core import train

    return list(train.options(name)) if family == "trainers" else []


def builtin(family: str, name: str) -> bool:
    owners = {n: p["builtin"] for p in plugins.host().describe()["plugins"]
              for n in p["registered"].get(family, [])}
    return owners.get(name, False)


def test_every_chinese_text_is_chinese() -> None:
    """What the scenario above does not draw is checked as text: every Chinese string vlhub ships, and every
    built-in option, choice and dataset has one."""
    found = []
    for where, text in chinese_texts():
        family, name = where.split()[:2]
        if not text and (where.startswith("dataset ") or builtin(family, name)):
            found.append(f"{where}: no Chinese text")
        words = english_words(text, flags=not where.startswith("message "))
        if words:
            found.append(f"{where}: {', '.join(words)} in {text!r}")
    for family in ("datasets", "trainers", "publishers", "chat_backends"):
        for name, obj in plugins.registry(family).items():
            for option in getattr(obj, "options", None) or train_options(family, name):
                untranslated = [c for c in option.choices if english_words(c)
                                and c not in option.choice_labels.get("zh", {})]
                if untranslated and builtin(family, name):
                    found.append(f"{family} {name} option {option.name}: choices {untranslated} have no Chinese name")
    assert not found, "\n".join(found)


class CsvRows:
    """A third-party dataset plugin that declares no Chinese texts."""

    name = "csv-rows"
    description = "Rows of a CSV file with an image column."
    options = (Option("delimiter", "Column separator of the file.", str, ","),
               Option("mode", "How rows are read.", str, "strict", ("strict", "loose")))

    def prepare(self, source: Path, out: Path, options: Any, progress: Any = None) -> Any:
        raise NotImplementedError("never called here")


class ThirdParty:
    @hookimpl
    def register_datasets(self, register: Any) -> None:
        register(CsvRows())


def test_a_third_party_plugin_without_chinese_is_shown_in_english_marked_as_such() -> None:
    st.cache_data.clear()
    assert plugins.host().register_module(ThirdParty(), "csv-rows-plugin")
    marker = ZH["text.untranslated"]
    at = app("zh")
    go(at, "data")
    at.selectbox(key="data.name").set_value("csv-rows").run()
    field = at.text_input(key="data.opt.csv-rows.delimiter")
    assert field.label == f"delimiter {marker}" and field.help == f"Column separator of the file. {marker}"
    assert at.selectbox(key="data.opt.csv-rows.mode").options == ["strict", "loose"]  # values, as the CLI takes them
    assert f"Rows of a CSV file with an image column. {marker}" in [c.value for c in at.caption]
    en = app("en")
    go(en, "data")
    en.selectbox(key="data.name").set_value("csv-rows").run()
    assert en.text_input(key="data.opt.csv-rows.delimiter").label == "delimiter"
    assert marker not in " ".join(c.value for c in en.caption) and "(English)" not in en.text_input(
        key="data.opt.csv-rows.delimiter").help


def test_the_check_finds_english() -> None:
    """The word check itself: English UI words are found, names and data are not."""
    assert english_words("已准备 17 条记录（records 15, dropped 2）") == ["records", "dropped"]
    assert english_words("Start training") == ["Start", "training"]
    assert english_words("用 LoRA 微调 InternVL2 · `vlhub train --lr 1e-4` · /tmp/data/c.json · "
                         "20261130-222944-train-244f · xtuner · foodieqa") == []
    assert english_words("“GPU 数” 1: the train environment sees 0 CUDA GPU(s)") == ["the", "environment", "sees"]
    assert english_words("foodieqa：17 条记录，见 [链接](https://example.invalid/x) .gitattributes") == []
