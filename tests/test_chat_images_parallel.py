"""The images of a chat turn (issue 21): the client-side downscale keeps the tile grid InternVL would choose,
the images of one turn are prepared concurrently and once per session, each answer records the engine
that served it, and `vlhub eval` sends requests together to a session that batches them.

Concurrency is proven without timing: the decoder (or the server) waits on a ``threading.Barrier`` sized
to the number of images (requests), which only concurrent calls can pass; its timeout makes a serial
implementation fail instead of hang. The grid rule is checked against InternVL's own code, copied below.
"""
from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import ROOT, run_vlhub, train_python
from servers.openai_api import OpenAITestServer, last_user_text
from vlhub.core.chat import Conversation, export
from vlhub.core.eval import evaluate, load_eval, load_set
from vlhub.core.runs import load_run
from vlhub.core.types import GenerationSettings
from vlhub.plugins.backends.openai_backend import OpenAISession
from vlhub.plugins.devtools.tiny_model import make_tiny_model
from vlhub.plugins.workers import chat_tiling
from vlhub.plugins.workers.chat_tiling import Tiling, closest_grid, fitted_size, tile_count, upload

WORKERS = ROOT / "plugins" / "workers"
BARRIER_S = 30  # a serial implementation waits this long at the barrier, then fails
INTERNVL2 = Tiling(448, 1, 12, True)
TILINGS = [INTERNVL2, Tiling(448, 1, 6, True), Tiling(224, 1, 6, True), Tiling(448, 1, 24, True),
           Tiling(448, 1, 40, False), Tiling(448, 2, 12, True), Tiling(448, 4, 12, True)]


# ------------------------------------------------------------------ InternVL's rule, verbatim
def find_closest_aspect_ratio(aspect_ratio, target_ratios, width, height, image_size):  # type: ignore[no-untyped-def]
    """Copied from https://huggingface.co/OpenGVLab/InternVL-Chat-V1-5 (as in lmdeploy/vl/model/internvl.py)."""
    best_ratio_diff = float('inf')
    best_ratio = (1, 1)
    area = width * height
    for ratio in target_ratios:
        target_aspect_ratio = ratio[0] / ratio[1]
        ratio_diff = abs(aspect_ratio - target_aspect_ratio)
        if ratio_diff < best_ratio_diff:
            best_ratio_diff = ratio_diff
            best_ratio = ratio
        elif ratio_diff == best_ratio_diff:
            if area > 0.5 * image_size * image_size * ratio[0] * ratio[1]:
                best_ratio = ratio
    return best_ratio


@lru_cache(maxsize=None)
def target_ratios(min_num: int, max_num: int) -> tuple[tuple[int, int], ...]:
    """``dynamic_preprocess``'s candidate grids, built as it builds them."""
    ratios = set((i, j) for n in range(min_num, max_num + 1) for i in range(1, n + 1) for j in range(1, n + 1) if
                 i * j <= max_num and i * j >= min_num)
    return tuple(sorted(ratios, key=lambda x: x[0] * x[1]))


def reference_grid(width: int, height: int, tiling: Tiling) -> tuple[int, int]:
    """The (cols, rows) ``dynamic_preprocess`` picks for a ``width`` x ``height`` image."""
    return find_closest_aspect_ratio(width / height, target_ratios(tiling.min_tiles, tiling.max_tiles), width,
                                     height, tiling.image_size)


def sizes() -> list[tuple[int, int]]:
    """Image sizes: a sweep of aspect ratios and sizes, the usual camera and screen sizes, and sizes a pixel
    either side of the midpoint between two grid ratios (where rounding could move an image to another grid)."""
    found = [(w, h) for w in range(40, 6200, 173) for h in range(40, 6200, 157)]
    found += [(4032, 3024), (3024, 4032), (4000, 3000), (1920, 1080), (1080, 1920), (3840, 2160), (4096, 4096),
              (2000, 1000), (5000, 1200), (1344, 1344), (1792, 1344), (896, 448), (12000, 3000)]
    ratios = sorted({a / b for a, b in target_ratios(1, 12)})
    for low, high in zip(ratios, ratios[1:]):
        for h in (900, 1511, 2999, 4001):
            w = int((low + high) / 2 * h)
            found += [(w, h), (w + 1, h)]
    return found


def test_fitted_size_keeps_the_grid_internvl_would_choose_and_shrinks_large_images() -> None:
    for tiling in TILINGS:
        shrunk = large = 0
        for width, height in sizes():
            grid = reference_grid(width, height, tiling)
            assert closest_grid(width, height, tiling) == grid, (width, height, tiling)
            fw, fh = fitted_size(width, height, tiling)
            assert reference_grid(fw, fh, tiling) == grid, (width, height, fw, fh, tiling)
            assert fw <= width and fh <= height
            need_w, need_h = tiling.image_size * grid[0], tiling.image_size * grid[1]
            if (fw, fh) != (width, height):  # covers the resize InternVL makes, aspect ratio kept to a pixel
                shrunk += 1
                assert fw >= need_w and fh >= need_h, (width, height, fw, fh)
                assert abs(fw * height - fh * width) <= 2.5 * max(width, height), (width, height, fw, fh)
            if width > need_w + 2 and height > need_h + 2:
                large += 1
        assert large > 500 and shrunk >= 0.95 * large, (tiling, shrunk, large)


# ------------------------------------------------------------------ images made here
def photo(path: Path, width: int, height: int, seed: int) -> Path:
    """A photo-like JPEG: smooth colour with grain (compresses like a camera picture)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 64 + 2, width // 64 + 2, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR), dtype=np.int16)
    grain = rng.integers(-8, 9, (height, width, 3), dtype=np.int16)
    Image.fromarray(np.clip(smooth + grain, 0, 255).astype(np.uint8)).save(path, quality=90)
    return path


def grain(path: Path, width: int, height: int, seed: int) -> Path:
    """A PNG of a photo (every pixel its own colour: it compresses badly)."""
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path, compress_level=1)
    return path


def drawing(path: Path, width: int, height: int) -> Path:
    image = Image.new("RGB", (width, height), (250, 250, 245))
    draw = ImageDraw.Draw(image)
    for k in range(0, width, 97):
        draw.line((k, 0, width - k, height), fill=(k % 255, 40, 120), width=5)
    image.save(path)
    return path


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pictures")
    return {"phone": photo(folder / "phone.jpg", 2600, 1950, 1), "tall": photo(folder / "tall.jpg", 1500, 3400, 2),
            "pano": photo(folder / "pano.jpg", 3600, 900, 3), "screen": grain(folder / "screen.png", 3000, 800, 4),
            "wide": drawing(folder / "wide.png", 4000, 1000),
            "small": drawing(folder / "small.png", 448, 448)}


def decoded(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def test_upload_shrinks_large_images_and_keeps_the_tile_grid(pictures: dict[str, Path]) -> None:
    for name in ("phone", "tall", "pano", "screen"):
        path = pictures[name]
        original = Image.open(path).size
        sent = upload(path, INTERNVL2)
        image = decoded(sent.data)
        assert image.size == sent.size == fitted_size(*original, INTERNVL2) != original, name
        assert len(sent.data) < path.stat().st_size == sent.original_bytes, name
        assert reference_grid(*image.size, INTERNVL2) == reference_grid(*original, INTERNVL2), name
        assert tile_count(*image.size, INTERNVL2) == tile_count(*original, INTERNVL2)
        assert sent.mime == ("image/png" if name == "screen" else "image/jpeg")
        assert sent.data_url().startswith(f"data:{sent.mime};base64,")
    # as it is: small already, the model unknown, or a drawing whose smaller PNG would take more bytes
    assert fitted_size(4000, 1000, INTERNVL2) == (1792, 448)
    for path, tiling in ((pictures["small"], INTERNVL2), (pictures["phone"], None), (pictures["wide"], INTERNVL2)):
        sent = upload(path, tiling)
        assert sent.data == path.read_bytes() and sent.size == sent.original_size


# ------------------------------------------------------------------ the images of one turn, at once
class BarrierDecoder:
    """``chat_tiling.decode`` that, while ``waiting``, only returns once ``parties`` calls are inside it."""

    def __init__(self, parties: int) -> None:
        self.real = chat_tiling.decode
        self.barrier = threading.Barrier(parties, timeout=BARRIER_S)
        self.waiting = True
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, source: Any, size: tuple[int, int] | None = None) -> Image.Image:
        with self.lock:
            self.calls.append(str(source))
        if self.waiting:
            self.barrier.wait()
        return self.real(source, size)


def sent_images(request: dict[str, Any]) -> list[str]:
    return [part["image_url"]["url"] for m in request["body"]["messages"] if isinstance(m["content"], list)
            for part in m["content"] if part["type"] == "image_url"]


def test_openai_session_encodes_the_images_of_a_turn_at_once_and_each_once(
        pictures: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    photos = [pictures["phone"], pictures["tall"], pictures["pano"]]
    decoder = BarrierDecoder(len(photos))
    monkeypatch.setattr(chat_tiling, "decode", decoder)
    with OpenAITestServer(models=("m",)) as srv:
        # the session the lmdeploy backend opens on its server: the model's tiling known
        session = OpenAISession(srv.base_url, "m", tiling=INTERNVL2)
        with Conversation("m", "openai", session=session) as chat:
            assert chat.answer("Compare these photos.", photos) == "m saw 3 image(s) and read: Compare these photos."
            assert len(decoder.calls) == 3  # each photo decoded once, all three at the same time
            first = sent_images(srv.requests[-1])
            assert [decoded(base64.b64decode(u.split(",", 1)[1])).size for u in first] == \
                [fitted_size(*Image.open(p).size, INTERNVL2) for p in photos]

            decoder.waiting = False
            chat.prepare([pictures["wide"]])  # attached before the question: encoded in the background
            chat.answer("And this drawing?", [pictures["wide"]])
            chat.answer("Which one is the brightest?")
            assert len(decoder.calls) == 4  # later turns resend the photos from the session's cache
            assert [sent_images(r)[:3] for r in srv.requests[-2:]] == [first, first]

            Image.open(pictures["phone"]).save(pictures["phone"], quality=80)  # the file changed: encoded again
            chat.answer("And now?")
            assert len(decoder.calls) == 5 and sent_images(srv.requests[-1])[0] != first[0]


WORKER_SCRIPT = r'''
import json, sys, threading
sys.path.insert(0, sys.argv[1])
import torch, torchvision.transforms as T
from torchvision.transforms.functional import InterpolationMode
from PIL import Image
import chat_images, chat_tiling

paths, small = sys.argv[2:5], sys.argv[5]
real, barrier, calls = chat_tiling.decode, threading.Barrier(len(paths), timeout=float(sys.argv[6])), []

def waiting(source, size=None):
    calls.append(str(source))
    if len(calls) <= len(paths):
        barrier.wait()
    return real(source, size)

chat_tiling.decode = waiting
tiling = chat_tiling.Tiling(448, 1, 12, True)
cache = chat_images.tile_cache(tiling)
first = cache.get_all(paths)
again = cache.get_all(paths)
decoded = len(calls)

# the official load_image (model card): dynamic_preprocess, then torchvision's transform per tile
def official(path):
    transform = T.Compose([T.Resize((448, 448), interpolation=InterpolationMode.BICUBIC), T.ToTensor(),
                           T.Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))])
    image = Image.open(path).convert("RGB")
    cols, rows = chat_tiling.closest_grid(*image.size, tiling)
    resized = image.resize((448 * cols, 448 * rows))
    tiles = [resized.crop((c * 448, r * 448, (c + 1) * 448, (r + 1) * 448)) for r in range(rows) for c in range(cols)]
    if cols * rows > 1:
        tiles.append(image.resize((448, 448)))
    return torch.stack([transform(t) for t in tiles])

exact = (official(small) - chat_images.load_image(small, tiling)).abs().max().item()
photo = (official(paths[0]) - first[0]).abs().mean().item()
print(json.dumps({"calls": decoded, "tiles": [t.shape[0] for t in first], "cached": all(a is b for a, b in
                  zip(first, again)), "small_max_diff": exact, "photo_mean_diff": photo}))
'''


def test_transformers_worker_tiles_the_images_of_a_turn_at_once_as_the_official_code(
        pictures: dict[str, Path]) -> None:
    python = train_python()
    photos = [pictures["phone"], pictures["tall"], pictures["pano"]]
    proc = subprocess.run([str(python), "-c", WORKER_SCRIPT, str(WORKERS), *map(str, photos), str(pictures["wide"]),
                           str(BARRIER_S)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found["calls"] == 3 and found["cached"]  # three at once past the barrier; the second turn decodes none
    assert found["tiles"] == [tile_count(*Image.open(p).size, INTERNVL2) for p in photos]
    assert found["small_max_diff"] < 1e-5  # a PNG decoded at full size: the official numbers
    assert found["photo_mean_diff"] < 0.05  # a JPEG decoded at half scale (Image.draft) on the same grid


# ------------------------------------------------------------------ which engine answered
@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


def test_each_answer_records_the_engine_and_the_cli_shows_it(tiny: Path, pictures: dict[str, Path],
                                                              tmp_path: Path) -> None:
    train_python()
    with Conversation(str(tiny), "transformers", settings=GenerationSettings(0.0, 1.0, 4)) as chat:
        assert chat.engine == "transformers"
        chat.prepare([pictures["small"], pictures["tall"]])  # tiled by the worker before the question comes
        chat.answer("What is drawn here?", [pictures["small"], pictures["tall"]])
        tiling = Tiling(224, 1, 6, True)  # the tiny model's config
        assert chat.session.last["images"] == 2
        assert chat.session.last["tiles"] == sum(tile_count(*Image.open(p).size, tiling)
                                                 for p in (pictures["small"], pictures["tall"]))
        data = json.loads(export(chat, "json"))
        assert data["engine"] == "transformers" and data["turns"][1]["engine"] == "transformers"
        assert "engine" not in data["turns"][0]  # a question has none
        assert export(chat, "md").splitlines()[0] == f"# {tiny} (transformers, engine: transformers)"
    proc = run_vlhub("chat", str(tiny), "--backend", "transformers", "-m", "hi", "--max-new-tokens", "2",
                     "--export", str(tmp_path / "chat.json"), timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "engine: transformers (transformers backend)" in proc.stderr
    assert json.loads((tmp_path / "chat.json").read_text())["turns"][1]["engine"] == "transformers"


def test_an_endpoint_that_does_not_say_records_no_engine() -> None:
    with OpenAITestServer(models=("m",)) as srv:
        with Conversation("m", "openai", {"base_url": srv.base_url}) as chat:
            chat.answer("hi")
            data = chat.public()
    assert chat.engine == "" and "engine" not in data and "engine" not in data["turns"][1]


# ------------------------------------------------------------------ vlhub eval, requests together
def mc_file(folder: Path, n: int) -> Path:
    items = [{"id": f"q{k}", "question": f"Which dish is {k}?", "choices": ["饺子", "肠粉", "包子", "面条"],
              "answer": k % 4} for k in range(n)]
    path = folder / "val_mc.json"
    path.write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    return path


class Gate:
    """A server answer: the right letter for ``Which dish is K?`` (K mod 4), after the first ``parties``
    requests have all arrived (only requests sent together get past)."""

    def __init__(self, parties: int) -> None:
        self.barrier = threading.Barrier(parties, timeout=BARRIER_S)
        self.parties, self.seen = parties, 0
        self.lock = threading.Lock()

    def __call__(self, model: str, messages: list[dict[str, Any]]) -> str:
        with self.lock:
            self.seen += 1
            first = self.seen <= self.parties
        if first:
            self.barrier.wait()
        k = int(last_user_text(messages).split("Which dish is ")[1].split("?")[0])
        return "ABCD"[k % 4]


def test_eval_sends_items_together_to_a_session_that_batches(tmp_path: Path) -> None:
    path = mc_file(tmp_path, 10)
    with OpenAITestServer(models=("m",), answer=Gate(4)) as srv:
        proc = run_vlhub("eval", "m", "--data", str(path), "--base-url", srv.base_url, "--concurrency", "4")
    assert proc.returncode == 0, proc.stderr
    run = load_run(re.search(r"recorded as run (\S+)", proc.stderr).group(1))
    result = load_eval(run)["results"][0]
    assert [r["index"] for r in result["items"]] == list(range(10)) and result["correct"] == 10
    speed = run.data["throughput"]
    assert [(s["model"], s["items"], s["concurrency"]) for s in speed] == [("m", 10, 4)] and speed[0]["items_per_s"] > 0
    assert f"throughput: m {speed[0]['items_per_s']:.2f} items/s (4 at once" in proc.stderr

    items = load_set(path)["items"]
    with OpenAITestServer(models=("m",), answer=Gate(3)) as srv:  # the Python API, width given
        with Conversation("m", "openai", {"base_url": srv.base_url}) as chat:
            result = evaluate(chat, items, width=3)
            assert chat.history == [] and chat.settings == GenerationSettings()
    assert [r["picked"] for r in result["items"]] == [k % 4 for k in range(10)]


def test_eval_concurrency_below_one_is_refused_in_one_line(tmp_path: Path) -> None:
    proc = run_vlhub("eval", "m", "--data", str(mc_file(tmp_path, 2)), "--base-url", "http://127.0.0.1:9/v1",
                     "--concurrency", "0")
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "--concurrency 0 is below 1" in proc.stderr and "Traceback" not in proc.stderr
