"""Image checks: formats, truncation, trailing data, the process pool, registration through the hook."""
from __future__ import annotations

from pathlib import Path

from fixtures.datasets import truncate, write_image
from vlhub.core import plugins
from vlhub.core.prepared.images import POOL_MIN, check_images


def test_formats_and_truncation(tmp_path: Path) -> None:
    write_image(tmp_path / "ok.png", 1, fmt="PNG")
    truncate(write_image(tmp_path / "cut.png", 2, fmt="PNG"))
    write_image(tmp_path / "ok.gif", 3, fmt="GIF")
    truncate(write_image(tmp_path / "cut.gif", 4, size=(256, 256), fmt="GIF"))
    tail = write_image(tmp_path / "tail.jpg", 5)
    tail.write_bytes(tail.read_bytes() + b"camera-maker trailer")  # data after the EOI marker is legal
    (tmp_path / "notes.jpg").write_text("not an image", encoding="utf-8")
    (tmp_path / "folder.jpg").mkdir()
    found = check_images(str(tmp_path), ["ok.png", "cut.png", "ok.gif", "cut.gif", "tail.jpg", "notes.jpg",
                                         "folder.jpg", "./ok.png"], workers=1)
    assert {ref: bool(info.error) for ref, info in found.items()} == {
        "ok.png": False, "cut.png": True, "ok.gif": False, "cut.gif": True, "tail.jpg": False,
        "notes.jpg": True, "folder.jpg": True, "./ok.png": False}
    assert found["tail.jpg"].format == "JPEG" and (found["ok.png"].width, found["ok.png"].height) == (64, 48)
    assert "does not decode" in found["notes.jpg"].error and "is a folder" in found["folder.jpg"].error


def test_pool_matches_serial_and_finds_duplicates(tmp_path: Path) -> None:
    refs = []
    for n in range(POOL_MIN + 20):
        ref = f"i/{n}.jpg"
        write_image(tmp_path / ref, n % (POOL_MIN // 2), size=(16, 12))  # each picture twice
        refs.append(ref)
    truncate(write_image(tmp_path / "i/cut.jpg", 9999, size=(128, 96)))
    refs += ["i/cut.jpg", "i/missing.jpg"]
    events = []
    pooled = check_images(str(tmp_path), refs, events.append, workers=2)
    serial = check_images(str(tmp_path), refs, workers=1)
    assert pooled == serial
    assert [ref for ref, info in pooled.items() if info.error] == ["i/cut.jpg", "i/missing.jpg"]
    assert pooled["i/0.jpg"].sha == pooled[f"i/{POOL_MIN // 2}.jpg"].sha != pooled["i/1.jpg"].sha
    assert events[-1].done == events[-1].total == len(refs)


def test_datasets_register_through_the_hook() -> None:
    registry = plugins.registry("datasets")
    assert {"foodieqa", "clot", "llava-json"} <= set(registry)
    info = plugins.host().info["datasets"]
    assert info.builtin and set(info.registered["datasets"]) == {"foodieqa", "clot", "llava-json"}
