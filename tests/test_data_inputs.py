"""Inputs as users really give them, through the real `vlhub data` command.

Five kinds of fault, each checked by its general mechanism:

1. an empty or nearly empty result fails (exit 1, nothing written) and says what the dropped records share;
2. image paths as users write them (Windows separators, ``./``, ``//``, NFC/NFD, URLs) are resolved or
   refused by name, and two spellings of one file are one image for the split;
3. non-regular files (named pipes, devices, sockets) are never opened, and containment comes first;
4. images are decoded, not only verified;
5. ``<image>`` only in human turns, OpenAI content lists in either shape, one rule for system turns.

Every failure is one ``Error: ... Fix: ...`` line, no traceback, the user's folders unchanged.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import subprocess
import unicodedata
from pathlib import Path

import pytest

from conftest import run_vlhub
from fixtures.datasets import corrupt_png_pixels, llava_record, make_clot, make_foodieqa, write_image, write_json
from vlhub.core import data
from vlhub.core.prepared.images import check_images
from vlhub.core.prepared.validate import TooFewRecords

#: a command that blocks on a named pipe fails the test instead of hanging it
HANG_S = 60


def tree(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (content hash, link target, or the kind of a special file), never opening
    anything that is not a regular file."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            mode = path.lstat().st_mode
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(mode):
                out[rel] = "link:" + os.readlink(path)
            elif stat.S_ISREG(mode):
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest() + f":{mode:o}"
            else:
                out[rel] = f"mode:{mode:o}"
    return out


def vlhub(*args: str) -> subprocess.CompletedProcess:
    return run_vlhub(*args, timeout=HANG_S)


def one_error(proc: subprocess.CompletedProcess, code: int, *words: str) -> str:
    """The single ``Error:`` line of a failed command, checked: exit code, fix, no traceback, ``words``."""
    shown = f"exit {proc.returncode}\n{proc.stderr[-3000:]}"
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert proc.returncode == code, shown
    assert len(errors) == 1 and "Fix:" in errors[0], shown
    assert "Traceback" not in proc.stderr + proc.stdout, shown
    for word in words:
        assert word in errors[0], (word, errors[0])
    return errors[0]


def load(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))


def images_of(records: list[dict]) -> list[str]:
    return [ref for r in records for ref in ([r["image"]] if isinstance(r.get("image"), str) else r.get("image", []))]


def nothing_written(out: Path) -> None:
    """No output folder, and no temporary sibling left beside it."""
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


# ---------------------------------------------------------------- 1. empty results fail
def test_images_for_another_layout_fail_with_the_root_searched(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for n in range(3):
        write_image(src / f"pics/images/dishes/{n}.png", n, fmt="PNG")
    write_json(src / "chat.json", [llava_record(f"images\\dishes\\{n}.png") for n in range(3)])
    before = tree(tmp_path)
    proc = vlhub("data", "prepare", "llava-json", "--source", str(src / "chat.json"), "--out", str(tmp_path / "out"))
    line = one_error(proc, 1, "all 3 records were dropped", f"image root {src}", "'images\\\\dishes\\\\0.png'",
                     f"looked for {src}/images/dishes/0.png",
                     "Fix: pass the folder the image paths are relative to: --opt image_root=DIR")
    assert line.endswith(f"(images/dishes/0.png is under {src / 'pics'}: --opt image_root={src / 'pics'})")
    assert "image not found" in proc.stderr  # the records are listed above the error
    nothing_written(tmp_path / "out")
    assert tree(tmp_path) == before
    # following the fix works, and the paths are written as found on disk
    ok = vlhub("data", "prepare", "llava-json", "--source", str(src / "chat.json"), "--out", str(tmp_path / "out"),
               "--opt", f"image_root={src / 'pics'}")
    assert ok.returncode == 0, ok.stderr
    assert images_of(load(tmp_path / "out/train.json")) == [f"images/dishes/{n}.png" for n in range(3)]


def test_missing_images_name_the_plugins_own_fix(tmp_path: Path) -> None:
    clot = make_clot(tmp_path / "a", count=3)
    (clot / "ex_images").rename(clot / "pictures")
    proc = vlhub("data", "prepare", "clot", "--source", str(clot), "--out", str(tmp_path / "out"))
    one_error(proc, 1, "all 3 records were dropped", f"image root {clot}", "ex_images/0000.jpg", "CLoT_cn_2000 folder")
    food = make_foodieqa(tmp_path / "b")
    (food / "images").rename(food / "photos")
    proc = vlhub("data", "prepare", "foodieqa", "--source", str(food), "--out", str(tmp_path / "out"))
    one_error(proc, 1, "all 17 records were dropped", f"image root {food}", "FoodieQA folder", "--source")
    proc = vlhub("data", "validate", str(clot / "ex_cn.json"), "--images", str(tmp_path))
    one_error(proc, 1, "all 3 records were dropped", "--images")
    nothing_written(tmp_path / "out")


@pytest.mark.parametrize("shape", ["conversations", "messages"])
def test_records_all_dropped_for_another_reason(tmp_path: Path, shape: str) -> None:
    """Every record has a system turn after its question (only a first system turn can be trained)."""
    src = tmp_path / "src"
    write_image(src / "a.jpg", 1)
    if shape == "conversations":
        rows = [{"image": "a.jpg", "conversations": [*llava_record(None)["conversations"],
                                                     {"from": "system", "value": "Be brief."}]}] * 3
    else:
        rows = [{"image": "a.jpg", "messages": [{"role": "user", "content": "<image>\nWhat is this?"},
                                                {"role": "assistant", "content": "A cat."},
                                                {"role": "system", "content": "Be brief."}]}] * 3
    write_json(src / "chat.json", rows)
    proc = vlhub("data", "prepare", "llava-json", "--source", str(src / "chat.json"), "--out", str(tmp_path / "out"))
    one_error(proc, 1, "all 3 records were dropped; first: record 0 (chat.json: conversations[2].from): turn 2 is "
                       "a system turn after the first turn", "--opt system=drop")
    nothing_written(tmp_path / "out")
    ok = vlhub("data", "prepare", "llava-json", "--source", str(src / "chat.json"), "--out", str(tmp_path / "out"),
               "--opt", "system=drop")
    assert ok.returncode == 0, ok.stderr
    assert [t["from"] for t in load(tmp_path / "out/train.json")[0]["conversations"]] == ["human", "gpt"]


def test_min_kept_and_an_empty_source(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_image(src / "a.jpg", 1)
    write_json(src / "chat.json", [llava_record("a.jpg"), llava_record("a.jpg"), llava_record("gone.jpg")])
    args = ["data", "prepare", "llava-json", "--source", str(src / "chat.json"), "--out", str(tmp_path / "out")]
    proc = vlhub(*args, "--min-kept", "3")
    one_error(proc, 1, "only 2 of 3 records are kept (fewer than --min-kept 3): the 1 dropped names an image not "
                       f"found under the image root {src} (e.g. record 2 (chat.json: image) names 'gone.jpg'",
              "Fix: add the missing images, or fix their paths in the records, or lower --min-kept")
    nothing_written(tmp_path / "out")
    one_error(vlhub(*args, "--min-kept", "-1"), 2, "--min-kept -1 is negative")
    assert vlhub(*args, "--min-kept", "2").returncode == 0
    # a failed prepare with --force leaves the previous folder as it was
    before = tree(tmp_path / "out")
    one_error(vlhub(*args, "--min-kept", "5", "--force"), 1, "only 2 of 3")
    assert tree(tmp_path / "out") == before
    write_json(src / "empty.json", [])
    proc = vlhub("data", "prepare", "llava-json", "--source", str(src / "empty.json"), "--out", str(tmp_path / "o2"))
    one_error(proc, 1, f"{src / 'empty.json'}: holds no records")
    nothing_written(tmp_path / "o2")
    empty = data.prepare("llava-json", src / "empty.json", tmp_path / "o3", min_kept=0)  # asked for: accepted
    assert empty.records == {"train": 0}
    with pytest.raises(TooFewRecords):
        data.prepare("llava-json", src / "chat.json", tmp_path / "o4", {"min_kept": "3"})


# ---------------------------------------------------------------- 2. paths as users write them
def test_path_spellings_resolve_and_urls_are_named(tmp_path: Path) -> None:
    src = tmp_path / "src"
    nfd = unicodedata.normalize("NFD", "café.jpg")
    write_image(src / "dishes" / nfd, 1)
    write_image(src / "a.jpg", 2)
    write_image(src / "sub/b.jpg", 3)
    rows = [llava_record("dishes\\" + unicodedata.normalize("NFC", "café.jpg")), llava_record("./a.jpg"),
            llava_record("sub//b.jpg"), llava_record(".\\sub\\.\\b.jpg"),
            llava_record("https://example.org/a.jpg"), llava_record("file:///etc/a.jpg")]
    write_json(src / "chat.json", rows)
    result = data.prepare("llava-json", src / "chat.json", tmp_path / "out")
    assert images_of(load(tmp_path / "out/train.json")) == [f"dishes/{nfd}", "a.jpg", "sub/b.jpg", "sub/b.jpg"]
    assert [(p.index, p.reason) for p in result.problems] == [
        (4, "image 'https://example.org/a.jpg' is a URL: URLs are not downloaded; download the images and give a "
            "local path relative to the image root"),
        (5, "image 'file:///etc/a.jpg' is a URL: URLs are not downloaded; download the images and give a local path "
            "relative to the image root")]
    assert data.stats(tmp_path / "out")["images"] == 3  # one image per file, whatever the spelling
    proc = vlhub("data", "validate", str(src / "chat.json"), "--images", str(src), "--strict")
    one_error(proc, 1, "record 4 (chat.json: image): image 'https://example.org/a.jpg' is a URL: URLs are not "
                       "downloaded; download the images and give a local path")


@pytest.mark.parametrize("seed", range(6))
def test_two_spellings_of_one_file_never_straddle_the_split(tmp_path: Path, seed: int) -> None:
    src = tmp_path / "src"
    spellings = []
    for n in range(6):
        name = unicodedata.normalize("NFD", f"plat-{n}-é.jpg")
        write_image(src / "imgs" / name, n)
        spellings += [f"imgs/{name}", f"imgs\\{unicodedata.normalize('NFC', name)}", f"./imgs//{name}"]
    write_json(src / "chat.json", [llava_record(ref, gpt=f"answer {i}") for i, ref in enumerate(spellings)])
    data.prepare("llava-json", src / "chat.json", tmp_path / "out", {"val_fraction": 0.5, "seed": seed})
    train, val = load(tmp_path / "out/train.json"), load(tmp_path / "out/val.json")
    assert len(train) + len(val) == 18 and train and val
    real = {ref: (src / ref).resolve() for ref in images_of(train) + images_of(val)}
    assert not {real[r] for r in images_of(train)} & {real[r] for r in images_of(val)}
    # FoodieQA: the same photo named two ways under two dish names is one group
    root = make_foodieqa(tmp_path / "food")
    sivqa = load(root / "sivqa_tidy.json")
    twin = json.loads(json.dumps(sivqa[0]))
    twin["food_meta"]["food_file"] = "images\\000.jpg"
    twin["food_meta"]["food_name"] = "另一道菜"
    write_json(root / "sivqa_tidy.json", [*sivqa, twin])
    data.prepare("foodieqa", root, tmp_path / "fout", {"val_fraction": 0.5, "seed": seed})
    ftrain, fval = load(tmp_path / "fout/train.json"), load(tmp_path / "fout/val.json")
    assert not set(images_of(ftrain)) & set(images_of(fval))
    assert "images\\000.jpg" not in images_of(ftrain) + images_of(fval)
    mc = load(tmp_path / "fout/val_mc.json")
    assert all(m["image"] == r["image"] for m, r in zip(mc, fval))


# ---------------------------------------------------------------- 3. special files
def test_named_pipes_devices_and_sockets_are_never_opened(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_image(src / "a.jpg", 1)
    os.mkfifo(src / "pipe.jpg")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    os.mkfifo(outside / "pipe.jpg")
    os.symlink(outside / "pipe.jpg", src / "link.jpg")
    os.symlink(src / "pipe.jpg", src / "inner-link.jpg")
    os.symlink("/dev/zero", src / "zero.jpg")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(src / "sock.jpg"))
        refs = ["pipe.jpg", "link.jpg", "inner-link.jpg", "zero.jpg", "sock.jpg"]
        write_json(src / "chat.json", [llava_record("a.jpg")] + [llava_record(ref) for ref in refs])
        before = tree(tmp_path)
        proc = vlhub("data", "prepare", "llava-json", "--source", str(src / "chat.json"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    reasons = {p["index"]: p["reason"] for p in load(tmp_path / "out/report.json")["problems"]}
    assert reasons == {
        1: "image 'pipe.jpg' is not a regular file: it is a named pipe; give the path of an image file",
        2: f"image 'link.jpg' resolves outside the image root {src} (through a symlink, to {outside / 'pipe.jpg'})",
        3: "image 'inner-link.jpg' is not a regular file: it is a named pipe; give the path of an image file",
        4: f"image 'zero.jpg' resolves outside the image root {src} (through a symlink, to /dev/zero)",
        5: "image 'sock.jpg' is not a regular file: it is a socket; give the path of an image file"}
    assert {k: v for k, v in tree(tmp_path).items() if not k.startswith("out")} == before
    assert load(tmp_path / "out/train.json")[0]["image"] == "a.jpg"
    proc = vlhub("data", "validate", str(src / "chat.json"), "--images", str(src), "--strict")
    one_error(proc, 1, "5 of 6 records failed validation", "record 1 (chat.json: image): image 'pipe.jpg' is not a "
                                                          "regular file: it is a named pipe")
    # the data file itself may be a named pipe: refused before it is opened
    os.mkfifo(outside / "chat.json")
    proc = vlhub("data", "validate", str(outside / "chat.json"), "--images", str(src))
    one_error(proc, 2, f"{outside / 'chat.json'}: is not a regular file: it is a named pipe")
    proc = vlhub("data", "prepare", "llava-json", "--source", str(outside / "chat.json"), "--out",
                 str(tmp_path / "o2"), "--opt", f"image_root={src}")
    one_error(proc, 2, "is not a regular file")


def test_named_pipes_as_source_files_and_image_root(tmp_path: Path) -> None:
    clot = tmp_path / "clot"
    clot.mkdir()
    os.mkfifo(clot / "ex_cn.json")
    one_error(vlhub("data", "prepare", "clot", "--source", str(clot), "--out", str(tmp_path / "o")), 2,
              f"{clot / 'ex_cn.json'}: is not a regular file: it is a named pipe")
    food = make_foodieqa(tmp_path / "food")
    (food / "textqa_tidy.json").unlink()
    os.mkfifo(food / "textqa_tidy.json")
    one_error(vlhub("data", "prepare", "foodieqa", "--source", str(food), "--out", str(tmp_path / "o"),
                    "--subsets", "sivqa,textqa"), 2, "textqa_tidy.json: is not a regular file: it is a named pipe")
    write_json(tmp_path / "chat.json", [llava_record("a.jpg")])
    one_error(vlhub("data", "validate", str(tmp_path / "chat.json"), "--images", str(clot / "ex_cn.json")), 2,
              "is not a folder")
    nothing_written(tmp_path / "o")


def test_image_root_slash_is_no_false_symlink_diagnosis(tmp_path: Path) -> None:
    write_image(tmp_path / "a.jpg", 1)
    os.mkfifo(tmp_path / "pipe.jpg")
    rel = str(tmp_path.resolve()).lstrip("/")
    write_json(tmp_path / "chat.json", [llava_record(f"{rel}/a.jpg"), llava_record(f"{rel}//a.jpg"),
                                        llava_record(f"{rel}/pipe.jpg"), llava_record("dev/null")])
    report = data.validate(tmp_path / "chat.json", Path("/"))
    assert report["usable"] == 2, report["problems"]
    assert [p["reason"] for p in report["problems"]] == [
        f"image '{rel}/pipe.jpg' is not a regular file: it is a named pipe; give the path of an image file",
        "image 'dev/null' is not a regular file: it is a character device; give the path of an image file"]
    proc = vlhub("data", "validate", str(tmp_path / "chat.json"), "--images", "/", "--json")
    assert proc.returncode == 0 and "outside the image root" not in proc.stdout + proc.stderr


# ---------------------------------------------------------------- 4. decoding
def test_png_whose_chunks_verify_but_pixels_do_not_decode(tmp_path: Path) -> None:
    write_image(tmp_path / "ok.png", 1, fmt="PNG")
    corrupt_png_pixels(write_image(tmp_path / "bad.png", 2, size=(96, 64), fmt="PNG"))
    found = check_images(str(tmp_path), ["ok.png", "bad.png"], workers=1)
    assert not found["ok.png"].error and found["bad.png"].code == "undecodable"
    assert found["bad.png"].error.startswith("image bad.png does not decode")
    write_json(tmp_path / "chat.json", [llava_record("ok.png"), llava_record("bad.png")])
    proc = vlhub("data", "validate", str(tmp_path / "chat.json"), "--images", str(tmp_path), "--strict")
    one_error(proc, 1, "record 1 (chat.json: image): image bad.png does not decode")


# ---------------------------------------------------------------- 5. turns
def test_turn_rules_and_content_lists(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_image(src / "a.jpg", 1)
    parts = [{"type": "text", "text": "<image>\nWhat is this?"}]
    rows = [
        llava_record("a.jpg", gpt="Here: <image>"),
        {"image": "a.jpg", "conversations": [{"from": "human", "value": parts}, {"from": "gpt", "value": "A cat."}]},
        {"conversations": [{"from": "human", "value": [{"type": "image_url", "image_url": {"url": "a.jpg"}},
                                                       {"type": "text", "text": "And this?"}]},
                           {"from": "gpt", "value": [{"type": "text", "text": "A dog."}]}]},
        {"image": "a.jpg", "conversations": [{"from": "human", "value": [{"type": "audio", "audio": "x.wav"}]},
                                             {"from": "gpt", "value": "?"}]},
        {"image": "a.jpg", "conversations": [{"from": "human", "value": ["<image>\nWhat?"]},
                                             {"from": "gpt", "value": "?"}]},
        {"image": "a.jpg", "conversations": [{"from": "human", "value": 42}, {"from": "gpt", "value": "?"}]},
        {"image": "a.jpg", "messages": [{"role": "user", "content": parts}, {"role": "assistant", "content": "A cat."}]},
        llava_record(None, human="<image>\nNo image here?"),
    ]
    write_json(src / "chat.json", rows)
    report = data.validate(src / "chat.json", src)
    found = {p["index"]: (p["field"], p["reason"]) for p in report["problems"]}
    assert found == {
        0: ("chat.json: conversations[1].value",
            "turn 1 (gpt) contains <image>: images belong in the question; move the placeholder to a human turn"),
        3: ("chat.json: conversations[0].value", "turn 0 (human): value is a list of content parts; part 0 has type "
                                                 "'audio' (only 'text', 'image' and 'image_url' parts are converted)"),
        4: ("chat.json: conversations[0].value", "turn 0 (human): value is a list of content parts; part 0 is a JSON "
            "string, not an object like {\"type\": \"text\", \"text\": ...} or {\"type\": \"image_url\", \"image_url\": "
            "{\"url\": PATH}}"),
        5: ("chat.json: conversations[0].value", "turn 0 (human): value is a JSON number, not text"),
        7: ("chat.json: conversations", "1 <image> placeholder(s) for 0 image(s) (a text-only record: remove the "
                                        "placeholder, or add its image)"),
    }
    assert not any("is empty" in reason for _, reason in found.values())
    assert report["usable"] == 3
    data.prepare("llava-json", src / "chat.json", tmp_path / "out")
    kept = load(tmp_path / "out/train.json")
    assert [r["conversations"][0]["value"] for r in kept] == ["<image>\nWhat is this?", "<image>\nAnd this?",
                                                               "<image>\nWhat is this?"]
    assert [r.get("image") for r in kept] == ["a.jpg", "a.jpg", "a.jpg"]
    proc = vlhub("data", "validate", str(src / "chat.json"), "--images", str(src), "--strict")
    one_error(proc, 1, "record 0 (chat.json: conversations[1].value): turn 1 (gpt) contains <image>: images belong in "
                       "the question")


def test_system_turns_follow_one_rule_in_both_shapes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_image(src / "a.jpg", 1)
    conversations = {"image": "a.jpg", "conversations": [{"from": "system", "value": "Be brief."},
                                                         {"from": "human", "value": "<image>\nWhat?"},
                                                         {"from": "gpt", "value": "A cat."}]}
    messages = {"image": "a.jpg", "messages": [{"role": "system", "content": "Be brief."},
                                               {"role": "user", "content": "<image>\nWhat?"},
                                               {"role": "assistant", "content": "A cat."}]}
    write_json(src / "chat.json", [conversations, messages, llava_record("a.jpg")])
    kept = data.prepare("llava-json", src / "chat.json", tmp_path / "out")  # default: the record's own system prompt
    records = load(tmp_path / "out/train.json")
    assert kept.dropped == 0 and records[0]["conversations"] == records[1]["conversations"]
    assert records[0]["conversations"][0] == {"from": "system", "value": "Be brief."}
    rejected = data.prepare("llava-json", src / "chat.json", tmp_path / "out1", {"system": "reject"})
    assert [(p.index, p.field) for p in rejected.problems] == [(0, "chat.json: conversations[0]"),
                                                               (1, "chat.json: messages[0]")]
    assert rejected.problems[0].reason == rejected.problems[1].reason
    dropped = data.prepare("llava-json", src / "chat.json", tmp_path / "out2", {"system": "drop"})
    records = load(tmp_path / "out2/train.json")
    assert dropped.dropped == 0 and records[0]["conversations"] == records[1]["conversations"]
    assert records[0]["conversations"][0]["from"] == "human"
    proc = vlhub("data", "prepare", "llava-json", "--source", str(src / "chat.json"), "--out",
                 str(tmp_path / "o3"), "--opt", "system=later")
    one_error(proc, 2, "system='later' is not one of keep, reject, drop")
