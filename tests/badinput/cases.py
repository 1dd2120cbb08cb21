"""The bad-input corpus: one :class:`Case` per input a user can get wrong, over every stage.

A case builds its inputs in a fresh folder (``Ctx.work``, the user's folder) and returns the
``vlhub`` arguments; the runner (``test_badinput.py``) checks the exit code, that stderr holds
exactly one ``Error: ... Fix: ...`` line containing ``expect`` and no traceback, and that no
file in the user's folders changed.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from fixtures.datasets import corrupt_png_pixels, make_clot, make_foodieqa, truncate, write_image
from publish_helpers import MB, make_model, write_random

GB = 1024 ** 3


@dataclass
class Shared:
    """Module-wide inputs: the tiny model and its checkpoint, prepared data, test servers."""

    root: Path
    model: Path
    checkpoint: Path
    other_checkpoint: Path
    prepared: Path
    git: Any          # GitLfsServer
    hub: Any          # HubApiServer (+ validate-yaml)
    openai: Any       # OpenAITestServer
    can_mount: bool


@dataclass
class Ctx:
    """One case's folder and the shared inputs; ``after`` runs once the command has ended."""

    work: Path
    name: str
    shared: Shared
    env: dict[str, str] = field(default_factory=dict)
    after: list[Callable[[], None]] = field(default_factory=list)


@dataclass(frozen=True)
class Case:
    """Inputs + command (``build``), the expected fragment of the one-line error, and the exit code."""

    id: str
    stage: str
    build: Callable[[Ctx], list[str]]
    expect: str
    code: int = 2
    max_rss_mb: int | None = None   # peak memory bound of the vlhub process, when it matters


# ------------------------------------------------------------------ data
RECORD = {"image": "a.jpg", "conversations": [{"from": "human", "value": "<image>\nWhat is this?"},
                                               {"from": "gpt", "value": "A red square."}]}


def _images(ctx: Ctx) -> Path:
    """The source folder ``src/`` with one good image, ``a.jpg``; data files go beside it."""
    root = ctx.work / "src"
    write_image(root / "a.jpg", 1)
    return root


def _record(image: str, human: str = "<image>\nWhat is this?", gpt: str = "A red square.") -> dict[str, Any]:
    return {"image": image, "conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": gpt}]}


def _validate(name: str, text: str | bytes, *extra: str) -> Callable[[Ctx], list[str]]:
    def build(ctx: Ctx) -> list[str]:
        root = _images(ctx)
        path = root / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return ["data", "validate", str(path), "--images", str(root), *extra]
    return build


def _strict(record_of: Callable[[Ctx, Path], dict[str, Any]]) -> Callable[[Ctx], list[str]]:
    """``data validate --strict`` of a file with one good record and the bad one."""
    def build(ctx: Ctx) -> list[str]:
        root = _images(ctx)
        path = root / "train.json"
        path.write_text(json.dumps([RECORD, record_of(ctx, root)], ensure_ascii=False))
        return ["data", "validate", str(path), "--images", str(root), "--strict"]
    return build


def _sparse_2gb(ctx: Ctx) -> Path:
    """A 2 GiB JSON file that costs no disk: one record, then a hole (NUL bytes) to 2 GiB."""
    path = _images(ctx) / "huge.json"
    with open(path, "wb") as out:
        out.write(b"[" + json.dumps(RECORD).encode() + b",\n")
        out.truncate(2 * GB)
    return path


def _truncated(ctx: Ctx, root: Path) -> dict[str, Any]:
    truncate(write_image(root / "cut.jpg", 7, size=(128, 96)))
    return _record("cut.jpg")


def _zero_bytes(ctx: Ctx, root: Path) -> dict[str, Any]:
    (root / "zero.jpg").write_bytes(b"")
    return _record("zero.jpg")


def _escaping_symlink(ctx: Ctx, root: Path) -> dict[str, Any]:
    os.symlink(write_image(ctx.work / "private" / "secret.jpg", 3), root / "link.jpg")
    return _record("link.jpg")


def _absolute(ctx: Ctx, root: Path) -> dict[str, Any]:
    return _record(str(write_image(ctx.work / "elsewhere" / "b.jpg", 4)))


def _prepare(name: str, source: Callable[[Ctx], Path], *extra: str) -> Callable[[Ctx], list[str]]:
    def build(ctx: Ctx) -> list[str]:
        return ["data", "prepare", name, "--source", str(source(ctx)), "--out", str(ctx.work / "prepared"), *extra]
    return build


def _llava_file(ctx: Ctx) -> Path:
    path = _images(ctx) / "chat.json"
    path.write_text(json.dumps([RECORD] * 3))
    return path


def _existing_out(ctx: Ctx) -> Path:
    (ctx.work / "prepared").mkdir()
    (ctx.work / "prepared" / "keep.txt").write_text("mine")
    return _llava_file(ctx)


def _layout_mismatch(ctx: Ctx) -> Path:
    """Image paths written for another folder layout: the images are under ``pics/``, not beside the file."""
    root = ctx.work / "src"
    for n in range(3):
        write_image(root / "pics" / "images" / "dishes" / f"{n}.png", n, fmt="PNG")
    path = root / "chat.json"
    path.write_text(json.dumps([_record(f"images\\dishes\\{n}.png") for n in range(3)]))
    return path


def _with_records(*records: dict[str, Any]) -> Callable[[Ctx], Path]:
    def build(ctx: Ctx) -> Path:
        path = _images(ctx) / "chat.json"
        path.write_text(json.dumps(list(records), ensure_ascii=False))
        return path
    return build


#: A system turn after the question: only a first system turn is a record's own system prompt.
SYSTEM_LATE = {"image": "a.jpg", "conversations": [*RECORD["conversations"], {"from": "system", "value": "Be brief."}]}
SYSTEM_LATE_MESSAGES = {"image": "a.jpg", "messages": [{"role": "user", "content": "<image>\nWhat is this?"},
                                                       {"role": "assistant", "content": "A red square."},
                                                       {"role": "system", "content": "Be brief."}]}


def _outside_tmp(ctx: Ctx) -> Path:
    """A folder outside the user's folder (special files there are never hashed), removed afterwards."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="vlhub-badinput-"))
    ctx.after.append(lambda: shutil.rmtree(folder, ignore_errors=True))
    return folder


def _fifo_root(ctx: Ctx) -> list[str]:
    """``data validate --strict`` against an image root (outside the user's folder) holding a named pipe."""
    root = _outside_tmp(ctx)
    write_image(root / "a.jpg", 1)
    os.mkfifo(root / "pipe.jpg")
    path = ctx.work / "train.json"
    path.write_text(json.dumps([RECORD, _record("pipe.jpg")]))
    return ["data", "validate", str(path), "--images", str(root), "--strict"]


def _link_to_fifo(ctx: Ctx, root: Path) -> dict[str, Any]:
    pipe = _outside_tmp(ctx) / "pipe.jpg"
    os.mkfifo(pipe)
    os.symlink(pipe, root / "pipe-link.jpg")
    return _record("pipe-link.jpg")


def _fifo_data_file(ctx: Ctx) -> list[str]:
    pipe = _outside_tmp(ctx) / "train.json"
    os.mkfifo(pipe)
    return ["data", "validate", str(pipe), "--images", str(_images(ctx))]


def _png_bad_pixels(ctx: Ctx, root: Path) -> dict[str, Any]:
    corrupt_png_pixels(write_image(root / "pixels.png", 8, size=(96, 64), fmt="PNG"))
    return _record("pixels.png")


def _nfd_name(ctx: Ctx) -> list[str]:
    """The file is named in NFD, the record in NFC: found; the other record's URL is refused by name."""
    import unicodedata

    root = _images(ctx)
    write_image(root / unicodedata.normalize("NFD", "café.jpg"), 2)
    path = root / "train.json"
    path.write_text(json.dumps([_record(unicodedata.normalize("NFC", "café.jpg")), _record("http://x.invalid/a.jpg")],
                               ensure_ascii=False))
    return ["data", "validate", str(path), "--images", str(root), "--strict"]


DATA = [
    Case("broken-json", "data", _validate("train.json", '[{"image": "a.jpg", "conversations": ['),
         "train.json: not valid JSON (line 1, column 39"),
    Case("jsonl-one-bad-line", "data", _validate("train.jsonl", json.dumps(RECORD) + "\n{oops\n" + json.dumps(RECORD)),
         "train.jsonl: line 2 is not valid JSON"),
    Case("non-utf8", "data", _validate("train.json", json.dumps([_record("a.jpg", gpt="红烧肉")], ensure_ascii=False)
                                      .encode("gbk")), "not UTF-8 (invalid byte at offset"),
    Case("zero-byte-json", "data", _validate("train.json", ""), "not valid JSON (line 1, column 1"),
    Case("json-not-a-list", "data", _validate("train.json", '{"image": "a.jpg"}'), "expected a list of records"),
    Case("json-2gb-sparse-validate", "data",
         lambda ctx: ["data", "validate", str(_sparse_2gb(ctx)), "--images", str(_images(ctx))],
         "huge.json: not valid JSON (line 2, column 1", max_rss_mb=200),
    Case("json-2gb-sparse-prepare", "data",
         lambda ctx: ["data", "prepare", "llava-json", "--source", str(_sparse_2gb(ctx)), "--out",
                      str(ctx.work / "prepared"), "--opt", f"image_root={_images(ctx)}"],
         "not valid JSON (line 2, column 1", max_rss_mb=200),
    Case("missing-image", "data", _strict(lambda ctx, root: _record("gone.jpg")), "image not found", code=1),
    Case("truncated-image", "data", _strict(_truncated), "truncated", code=1),
    Case("zero-byte-image", "data", _strict(_zero_bytes), "empty (0 bytes)", code=1),
    Case("dotdot-path", "data", _strict(lambda ctx, root: _record("../imgs/a.jpg")), "contains '..'", code=1),
    Case("absolute-path", "data", _strict(_absolute), "absolute image path", code=1),
    Case("escaping-symlink", "data", _strict(_escaping_symlink), "resolves outside the image root", code=1),
    Case("image-count-mismatch", "data", _strict(lambda ctx, root: _record("a.jpg", human="<image>\n<image>\nTwo?")),
         "2 <image> placeholder(s) for 1 image(s)", code=1),
    Case("empty-turn", "data", _strict(lambda ctx, root: _record("a.jpg", gpt="  ")), "turn 1 (gpt) is empty", code=1),
    Case("roles-out-of-order", "data", _strict(lambda ctx, root: {"image": "a.jpg", "conversations": [
        {"from": "gpt", "value": "<image>"}, {"from": "human", "value": "hi"}]}), "expected 'human'", code=1),
    Case("foodieqa-broken-strict", "data", _prepare("foodieqa", lambda ctx: make_foodieqa(ctx.work, broken=True),
                                                     "--strict"), "records failed validation", code=1),
    Case("clot-broken-strict", "data", _prepare("clot", lambda ctx: make_clot(ctx.work, broken=True), "--strict"),
         "records failed validation", code=1),
    Case("prepare-missing-source", "data", _prepare("llava-json", lambda ctx: ctx.work / "nope.json"),
         "does not exist. Fix: check the --source path"),
    Case("prepare-out-inside-source", "data", lambda ctx: ["data", "prepare", "llava-json", "--source",
                                                            str(_llava_file(ctx)), "--out", str(ctx.work / "src" / "o")],
         "overlaps the source folder"),
    Case("prepare-force-replaces-user-folder", "data",
         lambda ctx: ["data", "prepare", "llava-json", "--source", str(_existing_out(ctx)), "--out",
                      str(ctx.work / "prepared"), "--opt", f"image_root={ctx.work / 'src'}", "--force"],
         "holds files vlhub did not write (no prepared.json)"),
    Case("prepare-out-exists", "data", lambda ctx: ["data", "prepare", "llava-json", "--source",
                                                     str(_existing_out(ctx)), "--out", str(ctx.work / "prepared"),
                                                     "--opt", f"image_root={ctx.work / 'src'}"],
         "already exists and is not empty"),
    Case("prepare-unknown-option", "data", _prepare("llava-json", _llava_file, "--opt", "colour=red"),
         "unknown option 'colour'"),
    Case("prepare-bad-option-value", "data", _prepare("llava-json", _llava_file, "--opt", "sample=many"),
         "sample='many' is not a valid int"),
    Case("prepare-val-fraction-out-of-range", "data", _prepare("clot", lambda ctx: make_clot(ctx.work), "--opt",
                                                                "val_fraction=1.5"), "outside [0, 1)"),
    Case("prepare-unknown-dataset", "data", _prepare("cats", _llava_file), "no dataset named 'cats'"),
    Case("foodieqa-wrong-folder", "data", _prepare("foodieqa", _images), "has no sivqa_tidy.json"),
    Case("stats-not-prepared", "data", lambda ctx: ["data", "stats", str(_images(ctx))],
         "is not a prepared dataset folder"),
    Case("validate-images-folder-missing", "data", lambda ctx: ["data", "validate", str(_llava_file(ctx)),
                                                                 "--images", str(ctx.work / "pics")],
         "does not exist. Fix: pass the folder the image paths are relative to"),
    # an empty or nearly empty result is a failure (exit 1, nothing written), naming what the misses share
    Case("images-for-another-layout", "data", _prepare("llava-json", _layout_mismatch),
         "all 3 records were dropped: every one names an image not found under the image root", code=1),
    Case("images-for-another-layout-validate", "data",
         lambda ctx: ["data", "validate", str(_layout_mismatch(ctx)), "--images", str(ctx.work / "src")],
         "--images DIR", code=1),
    Case("all-records-system-late", "data", _prepare("llava-json", _with_records(SYSTEM_LATE, SYSTEM_LATE)),
         "all 2 records were dropped; first: record 0 (chat.json: conversations[2].from): turn 2 is a system turn "
         "after the first turn", code=1),
    Case("all-messages-system-late", "data", _prepare("llava-json", _with_records(SYSTEM_LATE_MESSAGES,
                                                                                    SYSTEM_LATE_MESSAGES)),
         "all 2 records were dropped; first: record 0 (chat.json: conversations[2].from): turn 2 is a system turn "
         "after the first turn", code=1),
    Case("empty-record-list", "data", _prepare("llava-json", _with_records()), "chat.json: holds no records", code=1),
    Case("fewer-than-min-kept", "data", _prepare("llava-json", _with_records(RECORD, _record("gone.jpg")),
                                                 "--min-kept", "2"),
         "only 1 of 2 records is kept (fewer than --min-kept 2)", code=1),
    Case("min-kept-negative", "data", _prepare("llava-json", _llava_file, "--min-kept", "-3"),
         "--min-kept -3 is negative"),
    # paths as users write them
    Case("url-image", "data", _strict(lambda ctx, root: _record("https://example.org/a.jpg")),
         "URLs are not downloaded; download the images and give a local path", code=1),
    Case("nfd-name-found-url-refused", "data", _nfd_name, "record 1 (train.json: image): image "
         "'http://x.invalid/a.jpg' is a URL", code=1),
    # special files are never opened
    Case("fifo-image", "data", _fifo_root, "image 'pipe.jpg' is not a regular file: it is a named pipe", code=1),
    Case("symlink-to-outside-fifo", "data", _strict(_link_to_fifo), "resolves outside the image root", code=1),
    Case("fifo-data-file", "data", _fifo_data_file, "train.json: is not a regular file: it is a named pipe"),
    # pixels are decoded
    Case("png-pixels-do-not-decode", "data", _strict(_png_bad_pixels), "image pixels.png does not decode", code=1),
    # turns
    Case("image-in-gpt-turn", "data", _strict(lambda ctx, root: _record("a.jpg", gpt="Look: <image>")),
         "turn 1 (gpt) contains <image>: images belong in the question", code=1),
    Case("content-part-unknown-type", "data", _strict(lambda ctx, root: {"image": "a.jpg", "conversations": [
        {"from": "human", "value": [{"type": "audio", "audio": "a.wav"}]}, {"from": "gpt", "value": "?"}]}),
         "turn 0 (human): value is a list of content parts; part 0 has type 'audio'", code=1),
    Case("turn-value-not-text", "data", _strict(lambda ctx, root: {"image": "a.jpg", "conversations": [
        {"from": "human", "value": 7}, {"from": "gpt", "value": "?"}]}), "turn 0 (human): value is a JSON number",
         code=1),
]


# ------------------------------------------------------------------ training
def _model_without(*names: str) -> Callable[[Ctx], Path]:
    def build(ctx: Ctx) -> Path:
        import shutil

        model = ctx.work / "model"
        shutil.copytree(ctx.shared.model, model)
        for pattern in names:
            for path in model.glob(pattern):
                path.unlink()
        return model
    return build


def _llama(ctx: Ctx) -> Path:
    model = ctx.work / "llama"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}))
    (model / "model.safetensors").write_bytes(b"\0" * 64)
    return model


def _internlm_llm(ctx: Ctx) -> Path:
    """An InternVL-format folder whose LLM xtuner 0.2.0 cannot train (Qwen2: InternVL2.5)."""
    model = _model_without()(ctx)
    config = json.loads((model / "config.json").read_text())
    config["llm_config"]["architectures"] = ["Qwen2ForCausalLM"]
    (model / "config.json").write_text(json.dumps(config))
    return model


def _train(model: Callable[[Ctx], Path], *flags: str) -> Callable[[Ctx], list[str]]:
    def build(ctx: Ctx) -> list[str]:
        return ["train", "--model", str(model(ctx)), "--data", str(ctx.shared.prepared), "--dry-run", *flags]
    return build


def _shared_model(ctx: Ctx) -> Path:
    return ctx.shared.model


def _deleted_run(*verb: str) -> Callable[[Ctx], list[str]]:
    """A run that existed (``run.json`` and all) and whose folder the user then deleted."""
    def build(ctx: Ctx) -> list[str]:
        import shutil

        from vlhub.core import runs

        run = runs.new_run("train").update(status="stopped")
        shutil.rmtree(run.dir)
        return [*verb, run.id]
    return build


TRAIN = [
    Case("model-missing", "train", _train(lambda ctx: ctx.work / "no-model"), "no such folder"),
    Case("model-without-config", "train", _train(_model_without("config.json")), "no config.json"),
    Case("model-without-weights", "train", _train(_model_without("*.safetensors")),
         "missing weights (*.safetensors or *.bin)"),
    Case("model-without-tokenizer", "train", _train(_model_without("tokenizer.json", "tokenizer.model")),
         "missing tokenizer.model or tokenizer.json"),
    Case("model-not-internvl", "train", _train(_llama), "not an InternVL model"),
    Case("model-llm-xtuner-cannot-train", "train", _train(_internlm_llm), "its LLM is Qwen2ForCausalLM"),
    Case("template-does-not-fit", "train", _train(_shared_model, "--template", "internlm2_chat"),
         "--template internlm2_chat does not fit the model"),
    Case("batch-larger-than-data", "train", _train(_shared_model, "--batch-size", "64", "--grad-accum", "8"),
         "samples per optimizer step, but the data has"),
    Case("batch-size-zero", "train", _train(_shared_model, "--batch-size", "0"), "--batch-size 0 is too small"),
    Case("data-not-prepared", "train", lambda ctx: ["train", "--model", str(ctx.shared.model), "--data",
                                                     str(_images(ctx)), "--dry-run"], "no prepared.json or train.json"),
    Case("deleted-run-resume", "train", _deleted_run("train", "--resume"), "the folder may have been deleted"),
    Case("deleted-run-show", "train", _deleted_run("run", "show"), "the folder may have been deleted"),
    Case("deleted-run-stop", "train", _deleted_run("run", "stop"), "the folder may have been deleted"),
    # the trainer's own record check (in the train env): a record xtuner would strip the <image> of
    Case("record-xtuner-cannot-train", "train",
         lambda ctx: ["train", "--model", str(ctx.shared.model), "--data",
                      _strict(lambda c, root: {"conversations": RECORD["conversations"]})(ctx)[2],
                      "--dry-run", "--batch-size", "1", "--grad-accum", "1"],
         "1 of 2 records cannot be trained by xtuner (first: record 1 (conversations): 1 <image> placeholder(s) "
         "for 0 image(s)"),
    Case("max-length-cuts-image-tokens", "train", _train(_shared_model, "--max-length", "100", "--batch-size", "1"),
         "--max-length 100 would cut image tokens"),
    Case("trainer-check-without-model", "train",
         _validate("chat.json", json.dumps([RECORD]), "--trainer", "xtuner"), "--trainer xtuner needs --model"),
]


# ------------------------------------------------------------------ conversion
def _full_disk(ctx: Ctx) -> list[str]:
    import subprocess

    disk = ctx.work / "small-disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], check=True)
    ctx.after.append(lambda: subprocess.run(["umount", str(disk)], check=True))
    return ["convert", str(ctx.shared.checkpoint), "--out", str(disk / "model"), "--no-verify"]


def _not_checkpoint(ctx: Ctx) -> list[str]:
    (ctx.work / "iter_9.pth").write_text("not a torch archive")
    return ["convert", str(ctx.work / "iter_9.pth"), "--out", str(ctx.work / "out")]


def _empty_ds(ctx: Ctx) -> list[str]:
    (ctx.work / "iter_9.pth").mkdir()
    return ["convert", str(ctx.work / "iter_9.pth"), "--out", str(ctx.work / "out")]


def _fake_ds(ctx: Ctx) -> Path:
    folder = ctx.work / "work" / "iter_4.pth"
    folder.mkdir(parents=True)
    (folder / "mp_rank_00_model_states.pt").write_bytes(b"weights")
    (ctx.work / "work" / "config.py").write_text(ctx.shared.checkpoint.with_name("config.py").read_text())
    return folder


def _existing(ctx: Ctx) -> Path:
    (ctx.work / "model").mkdir()
    (ctx.work / "model" / "mine.txt").write_text("keep")
    return ctx.work / "model"


def _damaged(name: str, text: str, *argv: str) -> Callable[[Ctx], list[str]]:
    """A copy of the shared prepared folder with ``name`` replaced by ``text``; ``argv`` after ``{}`` = the copy."""
    def build(ctx: Ctx) -> list[str]:
        folder = ctx.work / "prepared"
        shutil.copytree(ctx.shared.prepared, folder)
        (folder / name).write_text(text)
        return [str(folder) if a == "{}" else a for a in argv]
    return build


def _damaged_run(text: str) -> Callable[[Ctx], list[str]]:
    def build(ctx: Ctx) -> list[str]:
        home = ctx.work / "vhome"
        (home / "runs" / "20260101-000000-train-dead").mkdir(parents=True)
        (home / "runs" / "20260101-000000-train-dead" / "run.json").write_text(text)
        ctx.env["VLHUB_HOME"] = str(home)
        return ["run", "show", "20260101-000000-train-dead"]
    return build


STATE = [
    Case("stats-json-truncated", "state", _damaged("stats.json", '{"records": ', "data", "stats", "{}"),
         "stats.json is damaged: not valid JSON"),
    Case("prepared-json-a-list", "state", _damaged("prepared.json", "[]", "data", "stats", "{}"),
         "prepared.json is damaged: a JSON object was expected, found array"),
    Case("val-mc-truncated", "state", lambda ctx: _damaged("val_mc.json", "[{", "eval", "base", "--data", "{}",
                                                           "--backend", "openai", "--base-url",
                                                           ctx.shared.openai.base_url)(ctx),
         "val_mc.json is damaged: not valid JSON"),
    Case("run-json-truncated", "state", _damaged_run('{"id": "20260101-000000-train-dead", "sta'),
         "run.json is damaged: not valid JSON"),
    Case("run-json-a-string", "state", _damaged_run('"running"'), "run.json is damaged: a JSON object was expected"),
    Case("provenance-truncated", "state", lambda ctx: _pub(_repo, env=_git_env, folder=_provenance('{"base_model": '))(ctx),
         "vlhub_provenance.json is damaged: not valid JSON"),
]


def _provenance(text: str) -> Callable[[Ctx], Path]:
    def folder(ctx: Ctx) -> Path:
        model = make_model(ctx.work / "model")
        (model / "vlhub_provenance.json").write_text(text)
        return model
    return folder


CONVERT = [
    Case("not-a-checkpoint", "convert", _not_checkpoint, "is not a checkpoint"),
    Case("empty-deepspeed-folder", "convert", _empty_ds, "no *model_states.pt in this folder"),
    Case("output-inside-checkpoint", "convert", lambda ctx: ["convert", str(_fake_ds(ctx)), "--out",
                                                              str(ctx.work / "work" / "iter_4.pth" / "hf")],
         "is inside (or contains) the checkpoint"),
    Case("output-exists", "convert", lambda ctx: ["convert", str(ctx.shared.checkpoint), "--out", str(_existing(ctx))],
         "already exists and is not empty"),
    Case("force-replaces-user-folder", "convert", lambda ctx: ["convert", str(ctx.shared.checkpoint), "--out",
                                                                str(_existing(ctx)), "--force", "--no-verify"],
         "holds files vlhub did not write (no vlhub_provenance.json)"),
    Case("unknown-run-id", "convert", lambda ctx: ["convert", "20260101-000000-train-none", "--out", str(ctx.work / "o")],
         "is neither a checkpoint path nor a run id"),
    Case("config-missing", "convert", lambda ctx: ["convert", str(ctx.shared.checkpoint), "--out", str(ctx.work / "o"),
                                                    "--config", str(ctx.work / "nope.py")], "--config"),
    Case("checkpoint-of-another-model", "convert", lambda ctx: ["convert", str(ctx.shared.other_checkpoint), "--out",
                                                                 str(ctx.work / "out"), "--no-verify"],
         "is not a checkpoint of an InternVL model"),
    Case("full-disk", "convert", _full_disk, "needs", code=1),  # refused before writing: "... needs N in DIR, but only M is free"
    # DeepSpeed folders xtuner's loader cannot read, and the usual mix-ups of what to pass
    Case("deepspeed-optim-states-deleted", "convert",
         lambda ctx: ["convert", str(_fake_ds(ctx)), "--out", str(ctx.work / "out")], "lacks its optimizer states"),
    Case("deepspeed-rank-missing", "convert",
         lambda ctx: ["convert", str((f := _fake_ds(ctx), [(f / f"bf16_zero_pp_rank_{r}_mp_rank_00_optim_states.pt")
                                                           .write_bytes(b"state") for r in (0, 2)])[0]),
                      "--out", str(ctx.work / "out")], "missing bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt"),
    Case("deepspeed-file-inside-folder", "convert",
         lambda ctx: ["convert", str(_fake_ds(ctx) / "mp_rank_00_model_states.pt"), "--out", str(ctx.work / "out")],
         "/, not a file inside it"),
    Case("work-folder-not-checkpoint", "convert",
         lambda ctx: ["convert", str(_fake_ds(ctx).parent), "--out", str(ctx.work / "out")],
         "is a training work folder, not a checkpoint: it holds 1 checkpoint: iter_4.pth/"),
    Case("checkpoint-path-trailing-colon", "convert",
         lambda ctx: ["convert", f"{_fake_ds(ctx)}:", "--out", str(ctx.work / "out")], "(the path ends in a stray ':')"),
    Case("config-base-model-moved", "convert",
         lambda ctx: ["convert", str((f := _fake_ds(ctx), (f / "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt")
                                      .write_bytes(b"state"), (f.parent / "config.py").write_text(
                                          (f.parent / "config.py").read_text().replace(
                                              str(ctx.shared.model), "/data/models/InternVL2-2B")))[0]),
                      "--out", str(ctx.work / "out")], "the base model folder /data/models/InternVL2-2B (line"),
    Case("config-base-model-hub-id", "convert",
         lambda ctx: ["convert", str((f := _fake_ds(ctx), (f / "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt")
                                      .write_bytes(b"state"), (f.parent / "config.py").write_text(
                                          (f.parent / "config.py").read_text().replace(
                                              str(ctx.shared.model), "OpenGVLab/InternVL2-2B")))[0]),
                      "--out", str(ctx.work / "out")], "OpenGVLab/InternVL2-2B (line"),
    Case("deepspeed-placeholder-states", "convert",
         lambda ctx: ["convert", str((f := _fake_ds(ctx), (f / "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt")
                                      .write_bytes(b"state"))[0]), "--out", str(ctx.work / "out")],
         "is damaged or not a DeepSpeed state file"),
]


# ------------------------------------------------------------------ chat
def _chat(*args: str, image: Callable[[Ctx], Path] | None = None) -> Callable[[Ctx], list[str]]:
    def build(ctx: Ctx) -> list[str]:
        extra = ["--image", str(image(ctx))] if image else []
        return ["chat", "--backend", "openai", "--base-url", ctx.shared.openai.base_url, "-m", "hi", *extra, *args]
    return build


def _text_as_png(ctx: Ctx) -> Path:
    (ctx.work / "photo.png").write_text("this is not a picture")
    return ctx.work / "photo.png"


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


CHAT = [
    Case("image-not-an-image", "chat", _chat("--model", "base", image=_text_as_png), "not a readable image"),
    Case("image-missing", "chat", _chat("--model", "base", image=lambda ctx: ctx.work / "gone.jpg"), "image not found"),
    Case("endpoint-unreachable", "chat", lambda ctx: ["chat", "--backend", "openai", "--base-url",
                                                       f"http://127.0.0.1:{_closed_port()}/v1", "--model", "m", "-m",
                                                       "hi"], "cannot reach the OpenAI-compatible endpoint", code=1),
    Case("endpoint-unknown-model", "chat", _chat("--model", "nosuch"), "model 'nosuch' not found"),
    Case("export-folder-missing", "chat", _chat("--model", "base", "--export", "no/such/folder/chat.json"),
         "does not exist. Fix: create it first"),
    Case("export-is-a-folder", "chat", lambda ctx: _chat("--model", "base", "--export", str(ctx.work))(ctx),
         "is a folder"),
    Case("model-folder-missing", "chat", lambda ctx: ["chat", str(ctx.work / "no-model"), "-m", "hi"], "no-model"),
    # --base-url mistakes: each names the URL and the right form (give the API root: http://HOST:PORT/v1)
    Case("endpoint-without-v1", "chat", lambda ctx: ["chat", "--base-url", ctx.shared.openai.base_url[:-3], "--model",
                                                      "base", "-m", "hi"], "is not the API root"),
    Case("endpoint-env-without-v1", "chat", lambda ctx: (ctx.env.update(OPENAI_BASE_URL=ctx.shared.openai.base_url[:-3]),
                                                          ["chat", "--model", "base", "-m", "hi"])[1],
         "OPENAI_BASE_URL http://127.0.0.1:"),
    Case("endpoint-with-chat-completions", "chat",
         lambda ctx: ["chat", "--base-url", ctx.shared.openai.base_url + "/chat/completions", "--model", "base", "-m",
                      "hi"], "ends with the request path /chat/completions"),
    Case("endpoint-without-scheme", "chat",
         lambda ctx: ["chat", "--base-url", ctx.shared.openai.base_url.split("://")[1].replace("/v1", ""), "--model",
                      "base", "-m", "hi"], "has no http:// or https:// in front. Fix: give the API root: http://"),
    Case("endpoint-https-on-plain-http", "chat",
         lambda ctx: ["chat", "--base-url", "https://" + ctx.shared.openai.base_url.split("://")[1], "--model", "base",
                      "-m", "hi"], "speaks plain HTTP, not https"),
    Case("endpoint-serves-html", "chat",
         lambda ctx: (ctx.env.update(_set(lambda c: c.shared.openai, html=True)(ctx)), _chat("--model", "base")(ctx))[1],
         "answered 200 with an HTML page"),
    Case("endpoint-forbidden", "chat",
         lambda ctx: (ctx.env.update(_set(lambda c: c.shared.openai, chat_status=403)(ctx)),
                      _chat("--model", "base")(ctx))[1], "denied access (403"),
    Case("endpoint-server-error", "chat",
         lambda ctx: (ctx.env.update(_set(lambda c: c.shared.openai, chat_status=500)(ctx)),
                      _chat("--model", "base")(ctx))[1], "answered 500", code=1),
]


# ------------------------------------------------------------------ publish
def _pub(target: Callable[[Ctx], str], *extra: str, folder: Callable[[Ctx], Path] | None = None,
         env: Callable[[Ctx], dict[str, str]] | None = None) -> Callable[[Ctx], list[str]]:
    def build(ctx: Ctx) -> list[str]:
        ctx.env.update(env(ctx) if env else {})
        model = folder(ctx) if folder else make_model(ctx.work / "model")
        return ["publish", str(model), "--to", target(ctx), *extra]
    return build


def _git_env(ctx: Ctx) -> dict[str, str]:
    return {"VLHUB_GIT_TOKEN": ctx.shared.git.token}


def _hub_env(ctx: Ctx) -> dict[str, str]:
    return {**ctx.shared.hub.env(), "MODELSCOPE_CACHE": str(ctx.work.parent / "ms-cache")}


def _set(server: Callable[[Ctx], Any], **values: Any) -> Callable[[Ctx], dict[str, str]]:
    """Flip test-server switches for this case (put back afterwards); the git token as environment."""
    def env(ctx: Ctx) -> dict[str, str]:
        srv = server(ctx)
        old = {k: getattr(srv, k) for k in values}
        for key, value in values.items():
            setattr(srv, key, value)
        ctx.after.append(lambda: [setattr(srv, k, v) for k, v in old.items()])
        return _hub_env(ctx) if srv is ctx.shared.hub else _git_env(ctx)
    return env


def _git(ctx: Ctx) -> Any:
    return ctx.shared.git


def _hub(ctx: Ctx) -> Any:
    return ctx.shared.hub


def _repo(ctx: Ctx) -> str:
    return f"git:{ctx.shared.git.repo_url('org/InternVL2-' + ctx.name)}"


def _empty(ctx: Ctx) -> Path:
    (ctx.work / "empty").mkdir()
    return ctx.work / "empty"


def _no_template(ctx: Ctx) -> Path:
    model = make_model(ctx.work / "model")
    (model / "tokenizer_config.json").write_text("{}")
    return model


def _with_big_plain_file(ctx: Ctx) -> Path:
    model = make_model(ctx.work / "model")
    write_random(model / "notes.txt", 2 * MB)
    return model


def _with_shard(ctx: Ctx) -> Path:
    return make_model(ctx.work / "model", {"model.safetensors": 3 * MB})


PUBLISH = [
    Case("hf-name-with-space", "publish", _pub(lambda ctx: "hf:not a name"), "not a valid repository name"),
    Case("hf-name-double-dash", "publish", _pub(lambda ctx: "hf:org/na--me"), "not a valid repository name"),
    Case("modelscope-name-three-parts", "publish", _pub(lambda ctx: "modelscope:org/name/extra"),
         "not a valid repository name"),
    Case("openxlab-name-leading-dash", "publish", _pub(lambda ctx: "openxlab:-org/name"),
         "not a valid repository name"),
    Case("git-url-with-password", "publish", _pub(lambda ctx: "git:https://u:hunter2-secret@example.invalid/o/n.git"),
         "contains a password or token"),
    Case("git-not-a-url", "publish", _pub(lambda ctx: "git:just words"), "is not a git remote URL"),
    Case("unknown-hub", "publish", _pub(lambda ctx: "nohub:org/name"), "no publisher named 'nohub'"),
    Case("target-without-hub", "publish", _pub(lambda ctx: "hf"), "is not NAME:TARGET"),
    Case("folder-missing", "publish", _pub(_repo, folder=lambda ctx: ctx.work / "nothing", env=_git_env),
         "is not a folder"),
    Case("empty-folder", "publish", _pub(_repo, folder=_empty, env=_git_env), "is empty: nothing to publish"),
    Case("no-chat-template", "publish", _pub(_repo, folder=_no_template, env=_git_env), "no chat template"),
    Case("keyword-missing", "publish", _pub(lambda ctx: f"git:{ctx.shared.git.repo_url('org/plain')}",
                                            "--require-keyword", "InternVL", env=_git_env),
         "does not contain 'InternVL'"),
    Case("openxlab-no-token", "publish", _pub(lambda ctx: "openxlab:org/InternVL2-x"), "no OpenXLab token"),
    Case("git-token-rejected", "publish", _pub(_repo, env=lambda ctx: {"VLHUB_GIT_TOKEN": "wrong-token-1234"}),
         "rejected the credentials"),
    Case("hf-token-rejected", "publish", _pub(lambda ctx: "hf:tester/InternVL2-x", env=_set(_hub, reject_token=True)),
         "Hugging Face token was rejected"),
    Case("modelscope-token-rejected", "publish", _pub(lambda ctx: "modelscope:tester/InternVL2-x",
                                                      env=_set(_hub, reject_token=True)),
         "ModelScope token was rejected"),
    Case("remote-read-only", "publish", _pub(_repo, env=_set(_git, read_only=True)), "refused the push"),
    Case("file-over-limit-without-lfs", "publish", _pub(_repo, folder=_with_big_plain_file,
                                                        env=_set(_git, max_blob_bytes=MB)),
         "must be stored with Git LFS", code=1),
    Case("git-network-drops-mid-upload", "publish", _pub(_repo, folder=_with_shard,
                                                         env=_set(_git, drop_lfs_upload_after=MB,
                                                                  drop_lfs_upload_count=100)),
         "rerunning resumes", code=1),
    Case("weights-lfs-pointer", "publish", _pub(_repo, "--dry-run", env=_git_env, folder=lambda ctx: (
        m := make_model(ctx.work / "model"), (m / "model.safetensors").write_bytes(
            b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64 + b"\nsize 9\n"))[0]),
         "model.safetensors is a Git LFS pointer"),
    Case("weights-safetensors-truncated", "publish", _pub(_repo, "--dry-run", env=_git_env, folder=lambda ctx: (
        m := make_model(ctx.work / "model"), os.truncate(m / "model.safetensors", MB))[0]),
         "the file is truncated"),
    Case("weights-html-page", "publish", _pub(_repo, "--dry-run", env=_git_env, folder=lambda ctx: (
        m := make_model(ctx.work / "model"), (m / "pytorch_model.bin").write_bytes(b"<html><body>502</body></html>"))[0]),
         "pytorch_model.bin is an HTML page"),
    Case("config-auto-map-missing-module", "publish", _pub(_repo, "--dry-run", env=_git_env, folder=lambda ctx: (
        m := make_model(ctx.work / "model"), (m / "config.json").write_text(json.dumps(
            {"architectures": ["InternVLChatModel"], "auto_map": {"AutoModel": "modeling_x.InternVLChatModel"}})))[0]),
         "needs modeling_x.py, which is not in the folder"),
    Case("readme-broken-yaml", "publish", _pub(_repo, "--dry-run", env=_git_env, folder=lambda ctx: (
        m := make_model(ctx.work / "model"), (m / "README.md").write_text("---\nlicense: [mit\n---\n# x\n"))[0]),
         "README.md line 2: its YAML metadata does not parse"),
]

CASES: list[Case] = DATA + TRAIN + CONVERT + CHAT + PUBLISH + STATE
