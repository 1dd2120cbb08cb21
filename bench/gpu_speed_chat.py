"""Chat speed on the GPU: LMDeploy (vlhub's api_server worker) vs transformers (vlhub's transformers worker).

Run with the serve env's Python from the repo root (bench/gpu_speed.sh does):
    python bench/gpu_speed_chat.py MODEL_DIR WORK_DIR OUT_JSON [--tokens 256] [--repeat 7] [--warmup 2]
        [--variants lmdeploy,eager,s4096]

WORK_DIR receives the test images (made here, deterministic). Measures:

- time to first token (TTFT), from the same starting point on both sides: the user's image files on
  disk + the question text -> the first generated token, on three prompts:
    small  one 448 px PNG (1 tile, 256 image tokens) + a short question;
    multi  the chat page's usual turn: that PNG + a 1920x1080 and a 4032x3024 (phone) JPEG photo,
           dynamically tiled into 1 + 9 + 13 = 23 tiles (5888 image tokens) + a question;
    text   no image, a text prompt of about as many tokens as ``multi`` (the LLM prefill alone).
  LMDeploy: vlhub's ``workers/chat_lmdeploy.py`` (``lmdeploy serve api_server``, the server
  ``vlhub chat --backend lmdeploy`` starts, with vlhub's default options), spoken to as vlhub's openai
  backend speaks to it: the images of the turn made ready on threads by ``chat_tiling.Prepared`` with
  ``chat_tiling.upload`` (a photo made no larger than the model's tiling uses, re-encoded), a fresh cache
  per run (a turn whose images were never sent), ``data:`` URLs, text part first, then the images; the
  ``openai`` SDK, ``stream=True``; TTFT = until the first SSE chunk carrying a generated token. The same
  run also times ``multi`` the way vlhub sent it before (each file's own bytes, one after the other:
  ``client=original``). The request adds LMDeploy's ``return_token_ids`` so that every token gets a
  chunk: random weights mostly pick ids the small test tokenizer decodes to nothing, and the server
  sends no chunk for empty text.
  transformers: vlhub's ``workers/chat_transformers.py`` ``Chat.reply`` itself (the images of the turn
  decoded and tiled on threads by ``chat_images.tile_cache``, emptied before each run; ``model.chat``
  with a ``TextIteratorStreamer`` in a thread, bf16, CUDA); TTFT = until the streamer receives the first
  generated token (its ``put`` is timed); ``multi_resent``: the same turn with the tiles cached (a later
  turn sends the images again). Medians of ``--repeat`` runs after ``--warmup`` warm-ups, greedy.
- where the time goes, per image and in total: on the client (LMDeploy) side read, decode, resize,
  encode and base64 of each image, the wall time of all of them on threads, and the request (TTFT - the
  client's wall); LMDeploy's own image handling of what was sent, timed alone on the CPU with its own
  functions (``data:`` URL -> PIL image, ``dynamic_preprocess``, the per-tile torchvision transform);
  on the transformers side read (header), decode, tile (resize + normalise), the wall time on threads,
  the vision encoder, tokenising and the LLM prefill of the prompt's length, each timed alone;
- decode tokens/s: whole answers of 1 and N tokens on ``small`` (non-streamed over HTTP with
  ``ignore_eos`` for LMDeploy; ``model.chat`` with ``min_new_tokens`` for transformers),
  decode = (N - 1) / (T(N) - T(1)); for LMDeploy with vlhub's defaults (the TTFT server) and, each in
  its own server, the ``--variants``: ``lmdeploy`` (``lmdeploy serve api_server``'s own defaults: no
  ``--max-batch-size``, ``--cache-max-entry-count 0.8``), ``eager`` (vlhub's, CUDA graphs off),
  ``s4096`` (vlhub's with ``--session-len 4096``), ``b1``/``b32`` (vlhub's with ``--max-batch-size 1``/``32``);
  and the memory-bandwidth bound of decoding: bytes of LLM weights read per token (every LLM tensor but
  the embedding table) against the GPU's measured copy bandwidth, with each one's share of it.
Results are written as they come (OUT_JSON). ``--parts`` / ``--lmdeploy-url`` / ``--device`` let the
script's logic be tried without a GPU (the transformers part on the CPU, the client against any server).
"""
from __future__ import annotations

import argparse
import ast
import base64
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "plugins/workers"))

import chat_tiling  # noqa: E402  (vlhub's own image code, as the backends and workers run it)
from chat_tiling import Tiling  # noqa: E402

PROMPT = "Describe this image in detail."
MULTI_PROMPT = "Compare these three pictures: describe what each one shows and what they have in common."
FILLER = ("The market street was busy in the afternoon light. A vendor sold dumplings and noodles from a "
          "wooden cart, while people walked past the shops with bags of vegetables and cups of green tea. ")
#: the test images: name -> (width, height); the PNG is a drawing, the JPEGs are photo-like
IMAGES = {"square.png": (448, 448), "street.jpg": (1920, 1080), "phone.jpg": (4032, 3024)}
MODEL_NAME = "m"
#: TTFT goals of issue 21 (seconds, ``multi``)
GOALS = {"lmdeploy_multi_ttft_s": 0.300, "transformers_multi_ttft_s": 0.350, "lmdeploy_decode_share_of_bound": 0.5}
#: LMDeploy server settings compared with vlhub's defaults (decode only), added to vlhub's worker arguments
VARIANTS = {"lmdeploy": None, "eager": ["--eager-mode"], "s4096": ["--session-len", "4096"],
            "b1": ["--max-batch-size", "1"], "b32": ["--max-batch-size", "32"]}
#: where LMDeploy handles images, for the record (lmdeploy 0.16-0.18 source)
LMDEPLOY_IMAGE_CODE = {
    "decode": "lmdeploy/serve/processors/multimodal.py: MultimodalProcessor._parse_multimodal_item -> "
              "lmdeploy/vl/media/image.py: ImageMediaIO.load_base64 (PIL decode + convert RGB), one thread per "
              "message: the images of one user message are decoded one after the other",
    "preprocess": "lmdeploy/vl/model/internvl.py: InternVLVisionModel._preprocess_v1_5 -> dynamic_preprocess "
                  "(resize to the grid, crop, thumbnail), then self.transform (torchvision Resize, ToTensor, "
                  "Normalize) per tile",
    "executor": "lmdeploy/vl/engine.py: ImageEncoder.preprocess runs the model's preprocess on a "
                "ThreadPoolExecutor(max_workers=1): the images of a request one after the other",
}
RESULT: dict = {}


def save(out: Path) -> None:
    out.write_text(json.dumps(RESULT, indent=2))


def med(values) -> float:
    return statistics.median(values)


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn):
    """(result, seconds) of ``fn()``."""
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def make_images(folder: Path) -> dict[str, Path]:
    """Deterministic test images: a drawn 448 px PNG and two photo-sized JPEGs (smooth colour + grain)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = {}
    for name, (w, h) in IMAGES.items():
        path = paths[name] = folder / name
        if name.endswith(".png"):
            im = Image.new("RGB", (w, h), (200, 40, 30))
            ImageDraw.Draw(im).ellipse((40, 40, w - 40, h - 40), fill=(240, 220, 120))
            im.save(path)
            continue
        coarse = rng.integers(0, 256, (h // 48 + 2, w // 48 + 2, 3), dtype=np.uint8)
        smooth = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC), dtype=np.int16)
        grain = rng.integers(-10, 11, (h, w, 3), dtype=np.int16)
        Image.fromarray(np.clip(smooth + grain, 0, 255).astype(np.uint8)).save(path, quality=90)
    return paths


def model_tiling(model: Path) -> Tiling:
    """The model's tiling, as vlhub's lmdeploy backend reads it (``lmdeploy_backend.model_tiling``)."""
    return Tiling.from_config(json.loads((model / "config.json").read_text()))


def vlhub_server_defaults() -> dict[str, float]:
    """vlhub's LMDeploy defaults, read from ``plugins/backends/lmdeploy_backend.py`` (its ``MAX_BATCH_SIZE``
    and ``CACHE_MAX_ENTRY_COUNT``: the launcher's module is not importable in the serve env)."""
    tree = ast.parse((ROOT / "plugins/backends/lmdeploy_backend.py").read_text())
    found = {t.id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
             for t in node.targets if isinstance(t, ast.Name) and t.id in ("MAX_BATCH_SIZE", "CACHE_MAX_ENTRY_COUNT")}
    return {"max_batch_size": found["MAX_BATCH_SIZE"], "cache_max_entry_count": found["CACHE_MAX_ENTRY_COUNT"]}


def workloads(model: Path, images: dict[str, Path]) -> dict[str, dict]:
    """The three prompts; ``text`` is cut to about the token count of ``multi``."""
    from transformers import AutoTokenizer

    config = json.loads((model / "config.json").read_text())
    tiling = model_tiling(model)
    size = int(config.get("force_image_size") or config["vision_config"]["image_size"])
    per_tile = int((size // config["vision_config"]["patch_size"]) ** 2 * config["downsample_ratio"] ** 2)
    tiles_of = lambda p: chat_tiling.tile_count(*chat_tiling.image_size_of(p), tiling)  # noqa: E731
    small, multi = [images["square.png"]], list(images.values())
    tok = AutoTokenizer.from_pretrained(str(model), trust_remote_code=True, use_fast=False)
    target = sum(tiles_of(p) for p in multi) * per_tile + len(tok(MULTI_PROMPT).input_ids)
    filler = FILLER
    while len(tok(filler, add_special_tokens=False).input_ids) < target:
        filler += FILLER
    text = tok.decode(tok(filler, add_special_tokens=False).input_ids[:target], skip_special_tokens=True)
    out = {"small": {"images": small, "text": PROMPT}, "multi": {"images": multi, "text": MULTI_PROMPT},
           "text": {"images": [], "text": text}}
    for w in out.values():
        w["tiles"] = sum(tiles_of(p) for p in w["images"])
        w["image_tokens"] = w["tiles"] * per_tile
    out["text"]["text_tokens"] = len(tok(text, add_special_tokens=False).input_ids)
    return out


def describe(loads: dict[str, dict], tiling: Tiling) -> dict:
    def one(p: Path) -> str:
        sent = chat_tiling.upload(p, tiling)
        return (f"{p.name} {sent.original_size[0]}x{sent.original_size[1]} {sent.original_bytes} B, sent as "
                f"{sent.size[0]}x{sent.size[1]} {len(sent.data)} B")

    return {name: {"images": [one(p) for p in w["images"]], "tiles": w["tiles"], "image_tokens": w["image_tokens"],
                   "text_chars": len(w["text"]), **({"text_tokens": w["text_tokens"]} if "text_tokens" in w else {})}
            for name, w in loads.items()}


def copy_bandwidth() -> float:
    """Bytes read + written per second by a device-to-device copy of 1 GiB (median of 20)."""
    a = torch.randn(1 << 28, device="cuda")  # 1 GiB of float32
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    times = []
    for _ in range(20):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        b.copy_(a)
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop) / 1e3)
    assert torch.equal(a, b)
    del a, b
    torch.cuda.empty_cache()
    return 2 * (1 << 30) / med(times)


def weight_bytes_per_token(model: Path) -> dict:
    """Bytes of LLM weights a decoding step reads (embedding table excluded), from the safetensors headers."""
    from safetensors import safe_open

    total = llm = 0
    for f in sorted(model.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as handle:
            for name in handle.keys():
                t = handle.get_slice(name)
                n = 1
                for d in t.get_shape():
                    n *= d
                nbytes = n * {"F16": 2, "BF16": 2, "F32": 4}[t.get_dtype()]
                total += nbytes
                if name.startswith("language_model.") and "embed_tokens" not in name:
                    llm += nbytes
    return {"all_weights_bytes": total, "llm_bytes_read_per_token": llm}


# ------------------------------------------------------------------------------ LMDeploy
def messages_for(text: str, urls: list[str]) -> list[dict]:
    """As vlhub's openai backend's ``to_messages`` for one user turn: the text part, then the images."""
    if not urls:
        return [{"role": "user", "content": text}]
    return [{"role": "user", "content": [{"type": "text", "text": text}]
             + [{"type": "image_url", "image_url": {"url": u}} for u in urls]}]


def vlhub_urls(images: list[Path], tiling: Tiling) -> list[str]:
    """The images as vlhub's openai session sends a turn's new images: ``chat_tiling.upload`` on threads
    (``Prepared``), from a fresh cache (never sent before in this session)."""
    prepared = chat_tiling.Prepared(lambda p: chat_tiling.upload(p, tiling).data_url(), len, 1 << 30)
    try:
        return prepared.get_all(images)
    finally:
        prepared.close()


def original_urls(images: list[Path]) -> list[str]:
    """The images as vlhub sent them before issue 21: each file's own bytes, one after the other."""
    out = []
    for p in images:
        with Image.open(p) as img:
            kind = (img.format or "png").lower()
        out.append(f"data:image/{kind};base64,{base64.b64encode(p.read_bytes()).decode('ascii')}")
    return out


def client_breakdown(images: list[Path], tiling: Tiling, warmup: int, repeat: int) -> dict:
    """Each step of ``chat_tiling.upload`` per image, alone (read, header, decode, resize, encode, base64),
    and the wall time of the whole turn on threads (:func:`vlhub_urls`)."""
    import io

    per_image = {}
    for p in images:
        steps: dict[str, list[float]] = {k: [] for k in ("read_s", "header_s", "decode_s", "resize_s", "encode_s",
                                                          "base64_s")}
        for i in range(warmup + repeat):
            raw, t_read = timed(p.read_bytes)
            size, t_header = timed(lambda: chat_tiling.image_size_of(io.BytesIO(raw)))
            fit = chat_tiling.fitted_size(*size, tiling)
            shrink = fit[0] * fit[1] <= chat_tiling.SHRINK_BELOW * size[0] * size[1]
            data, t_decode, t_resize, t_encode = raw, 0.0, 0.0, 0.0
            if shrink:
                image, t_decode = timed(lambda: chat_tiling.decode(io.BytesIO(raw), fit))
                image, t_resize = timed(lambda: image.resize(fit, Image.BICUBIC) if image.size != fit else image)
                out = io.BytesIO()
                _, t_encode = timed(lambda: image.save(out, "JPEG", quality=chat_tiling.JPEG_QUALITY)
                                    if p.suffix == ".jpg" else image.save(out, "PNG", compress_level=1))
                data = out.getvalue()
            _, t_b64 = timed(lambda: base64.b64encode(data))
            if i >= warmup:
                for k, v in zip(steps, (t_read, t_header, t_decode, t_resize, t_encode, t_b64)):
                    steps[k].append(v)
        per_image[p.name] = {**{k: med(v) for k, v in steps.items()}, "downscaled": shrink, "sent_bytes": len(data)}
    walls = [timed(lambda: vlhub_urls(images, tiling))[1] for _ in range(warmup + repeat)][warmup:]
    serial = [timed(lambda: original_urls(images))[1] for _ in range(warmup + repeat)][warmup:]
    return {"per_image": per_image, "wall_threads_s": med(walls), "original_serial_s": med(serial)}


def start_lmdeploy(model: Path, extra: list[str] | None, timeout: int = 300) -> tuple[subprocess.Popen, dict, float]:
    """vlhub's worker: with ``extra`` None, ``lmdeploy serve api_server``'s own defaults; else vlhub's defaults
    (what ``vlhub chat --backend lmdeploy`` passes: engine turbomind, LMDeploy's choice) plus ``extra``; the
    server must answer ``/health`` within ``timeout`` seconds."""
    args = [str(model), "--model-name", MODEL_NAME, "--engine", "turbomind", "--timeout", str(timeout)]
    if extra is not None:
        defaults = vlhub_server_defaults()
        args += ["--max-batch-size", str(defaults["max_batch_size"]),
                 "--cache-max-entry-count", str(defaults["cache_max_entry_count"])]
        for flag in ("--max-batch-size", "--session-len"):  # a variant's value replaces vlhub's
            if flag in extra and flag in args:
                k = args.index(flag)
                del args[k:k + 2]
        args += extra
    t0 = time.monotonic()
    worker = subprocess.Popen([sys.executable, str(ROOT / "plugins/workers/chat_lmdeploy.py"), *args],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ready: dict = {}
    for line in worker.stdout:
        ready = json.loads(line)
        if ready.get("event") != "progress":
            break
    if ready.get("event") != "ready":
        worker.wait(60)
        raise RuntimeError(f"lmdeploy worker: {ready}")
    return worker, ready, time.monotonic() - t0


def stop_lmdeploy(worker: subprocess.Popen) -> None:
    worker.stdin.close()
    worker.wait(120)


def lmdeploy_decode(base_url: str, image: Path, tokens: int, repeat: int) -> dict:
    messages = messages_for(PROMPT, original_urls([image]))

    def request(n: int) -> tuple[float, int]:
        """Seconds for a whole (non-streamed) answer of exactly n tokens, and the tokens the server counted."""
        body = json.dumps({"model": MODEL_NAME, "messages": messages, "temperature": 0.0, "max_tokens": n,
                           "ignore_eos": True}).encode()
        req = urllib.request.Request(base_url + "/chat/completions", body, {"Content-Type": "application/json"})
        start = time.perf_counter()
        with urllib.request.urlopen(req, timeout=300) as response:
            answer = json.loads(response.read())
        return time.perf_counter() - start, answer["usage"]["completion_tokens"]

    request(8)  # warm-up
    one = [request(1) for _ in range(repeat)]
    full = [request(tokens) for _ in range(repeat)]
    generated = full[0][1]
    t1 = med(r[0] for r in one)
    return {"generated_tokens": generated, "t1_s": [r[0] for r in one], "tN_s": [r[0] for r in full],
            "decode_tok_s": (generated - 1) / (med(r[0] for r in full) - t1)}


def lmdeploy_ttft(base_url: str, loads: dict[str, dict], tiling: Tiling, warmup: int, repeat: int) -> dict:
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key="EMPTY", max_retries=1, timeout=600.0)  # as OpenAISession

    def once(w: dict, how: str) -> dict:
        start = time.perf_counter()
        urls = vlhub_urls(w["images"], tiling) if how == "vlhub" else original_urls(w["images"])
        encoded = time.perf_counter()
        stream = client.chat.completions.create(model=MODEL_NAME, messages=messages_for(w["text"], urls),
                                                stream=True, temperature=0.0, top_p=0.8, max_tokens=4,
                                                extra_body={"return_token_ids": True})
        first = last = None
        chunks = 0
        for chunk in stream:
            now = time.perf_counter()
            if not chunk.choices:
                continue
            chunks, last = chunks + 1, now
            choice = chunk.choices[0]
            if first is None and (choice.delta.content or getattr(choice, "output_ids", None)):
                first = now
        if first is None:
            raise RuntimeError("the stream carried no generated token")
        return {"ttft_s": first - start, "client_s": encoded - start, "request_s": first - encoded,
                "last_chunk_s": last - start, "chunks": chunks, "sent_bytes": sum(len(u) for u in urls)}

    out = {}
    runs_of = [(name, "vlhub") for name in loads] + [("multi", "original")]
    for name, how in runs_of:
        w = loads[name]
        usage = client.chat.completions.create(model=MODEL_NAME, messages=messages_for(
            w["text"], vlhub_urls(w["images"], tiling)), temperature=0.0, max_tokens=1).usage
        for _ in range(warmup):
            once(w, how)
        runs = [once(w, how) for _ in range(repeat)]
        key = name if how == "vlhub" else f"{name}_client_original"
        out[key] = {"prompt_tokens": usage.prompt_tokens, "ttft_s": med(r["ttft_s"] for r in runs),
                    "client_s": med(r["client_s"] for r in runs), "request_s": med(r["request_s"] for r in runs),
                    "runs_s": [round(r["ttft_s"], 4) for r in runs], "sent_bytes": runs[0]["sent_bytes"],
                    "last_chunk_s": med(r["last_chunk_s"] for r in runs), "chunks": [r["chunks"] for r in runs]}
        out[key]["prompt_tok_s"] = usage.prompt_tokens / out[key]["ttft_s"]
        print(f"lmdeploy ttft {key}: {json.dumps(out[key])}", flush=True)
    client.close()
    return out


def lmdeploy_cpu_image_handling(model: Path, images: list[Path], tiling: Tiling, warmup: int, repeat: int) -> dict:
    """LMDeploy's own image handling, timed alone in this process on the CPU, of what vlhub sends now and of
    the original files: each ``data:`` URL decoded to a PIL image (``lmdeploy.vl.utils.load_image``, as the
    server does per request), then LMDeploy's InternVL preprocessor split in its two steps:
    ``dynamic_preprocess`` (resize to the grid, crop, thumbnail) and the per-tile torchvision transform
    (:data:`LMDEPLOY_IMAGE_CODE` says where each runs)."""
    try:
        from lmdeploy.vl.model.builder import load_vl_model
        from lmdeploy.vl.model.internvl import dynamic_preprocess
        from lmdeploy.vl.utils import load_image as lmdeploy_load_image

        vision = load_vl_model(str(model), "pytorch", trust_remote_code=True)  # the preprocessor, no weights
        config = vision.config
        out: dict = {"where": LMDEPLOY_IMAGE_CODE}
        for how, urls in (("vlhub", vlhub_urls(images, tiling)), ("original", original_urls(images))):
            steps: dict[str, list[float]] = {"decode_s": [], "dynamic_preprocess_s": [], "transform_s": [],
                                             "preprocess_call_s": []}
            tiles = 0
            for i in range(warmup + repeat):
                pil, t_decode = timed(lambda: [lmdeploy_load_image(u) for u in urls])
                cut, t_dyn = timed(lambda: [dynamic_preprocess(im, min_num=config.min_dynamic_patch,
                                                               max_num=config.max_dynamic_patch,
                                                               image_size=vision.vision_config.image_size,
                                                               use_thumbnail=config.use_thumbnail) for im in pil])
                _, t_tf = timed(lambda: [vision.transform(t) for tiles_of_one in cut for t in tiles_of_one])
                msgs, t_call = timed(lambda: vision.preprocess(
                    [{"role": "user", "content": [{"type": "image", "data": im} for im in pil]}]))
                tiles = sum(int(x["pixel_values"].shape[0]) for x in msgs[-1]["content"])
                if i >= warmup:
                    for k, v in zip(steps, (t_decode, t_dyn, t_tf, t_call)):
                        steps[k].append(v)
            out[how] = {**{k: med(v) for k, v in steps.items()}, "tiles": tiles,
                        "bytes": sum(len(u) for u in urls)}
        return out
    except Exception as exc:  # a diagnostic only: never lose the run for it
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}


def lmdeploy_part(model: Path, url: str | None, loads: dict, tokens: int, warmup: int, repeat: int,
                  variants: list[str]) -> dict:
    tiling = model_tiling(model)
    worker = None
    res: dict = {"defaults": vlhub_server_defaults()}
    if url is None:
        worker, ready, load_s = start_lmdeploy(model, [])
        url = ready["base_url"]
        res.update(load_s=round(load_s, 1), lmdeploy=ready.get("lmdeploy"), engine=ready.get("engine"))
    try:
        res["client"] = client_breakdown(loads["multi"]["images"], tiling, warmup, repeat)
        print("client breakdown multi:", json.dumps(res["client"]), flush=True)
        res["ttft"] = lmdeploy_ttft(url, loads, tiling, warmup, repeat)
        res["decode"] = lmdeploy_decode(url, loads["small"]["images"][0], tokens, 3)
        print("lmdeploy decode (vlhub's defaults):", json.dumps(res["decode"]), flush=True)
    finally:
        if worker is not None:
            stop_lmdeploy(worker)
    res["variants"] = {}
    for name in variants if worker is not None else []:
        try:
            worker, ready, load_s = start_lmdeploy(model, VARIANTS[name], timeout=180)
        except Exception as exc:  # e.g. out of memory with LMDeploy's own defaults: recorded, not fatal
            res["variants"][name] = {"error": f"{type(exc).__name__}: {exc}"[:400]}
            continue
        try:
            res["variants"][name] = {"args": VARIANTS[name], "engine": ready.get("engine"), "load_s": round(load_s, 1),
                                     "decode": lmdeploy_decode(ready["base_url"], loads["small"]["images"][0],
                                                               tokens, 3)}
        except Exception as exc:  # noqa: BLE001 - recorded, the next variant still runs
            res["variants"][name] = {"args": VARIANTS[name], "error": f"{type(exc).__name__}: {exc}"[:400]}
        finally:
            stop_lmdeploy(worker)
        print(f"lmdeploy decode ({name}):", json.dumps(res["variants"][name]), flush=True)
    return res


# ------------------------------------------------------------------------------ transformers
def transformers_part(model: Path, device: str, loads: dict, tokens: int, warmup: int, repeat: int) -> dict:
    import transformers

    import chat_transformers as worker
    from chat_images import load_image, pixel_values, tile_cache

    worker.emit = lambda *args, **fields: None  # the chunks would go to stdout
    t0 = time.monotonic()
    chat = worker.Chat(model, device, None)  # bf16 on CUDA, as `vlhub chat --backend transformers`
    load_s = time.monotonic() - t0
    tiling = Tiling(chat.image_size, 1, chat.max_tiles, chat.thumbnail)
    puts: list[tuple[float, int]] = []  # (time, tokens) of each streamer.put

    class TimedStreamer(transformers.TextIteratorStreamer):
        def put(self, value):  # called from generate's thread, right after a token is moved to the CPU
            puts.append((time.perf_counter(), int(value.numel())))
            super().put(value)

    # Chat.reply imports the streamer from transformers when called; loading the model's remote code
    # replaces the `transformers` module object in sys.modules, so the class is swapped there, after loading
    for module in {id(m): m for m in (transformers, sys.modules["transformers"])}.values():
        module.TextIteratorStreamer = TimedStreamer
    from transformers import TextIteratorStreamer
    assert TextIteratorStreamer is TimedStreamer
    net, lm = chat.model, chat.model.language_model
    prompt_lens: list[int] = []
    generate = lm.generate

    def counting_generate(*args, **kw):
        prompt_lens.append(int(kw["inputs_embeds"].shape[1]))
        return generate(*args, **kw)

    lm.generate = counting_generate
    res: dict = {"load_s": round(load_s, 1), "transformers": transformers.__version__, "device": chat.device,
                 "dtype": str(net.dtype).replace("torch.", "")}

    def fresh_tiles() -> None:
        """An empty tile cache: the turn's images were never sent to this worker."""
        chat.tiles.close()
        chat.tiles = tile_cache(tiling)

    def once(w: dict, resent: bool = False) -> dict:
        if not resent:
            fresh_tiles()
        puts.clear()
        sync()
        start = time.perf_counter()
        given = chat.reply([{"role": "user", "text": w["text"], "images": [str(p) for p in w["images"]]}],
                           {"temperature": 0.0, "max_new_tokens": 4})
        end = time.perf_counter()
        if not any(n == 1 for _, n in puts):
            raise RuntimeError(f"the timed streamer saw no generated token (puts: {puts})")
        first = next(t for t, n in puts if n == 1)  # the prompt's put (if any) has 0 ids: inputs_embeds only
        return {"ttft_s": first - start, "total_s": end - start, "tiles": given["tiles"]}

    res["ttft"] = {}
    for name, w, resent in [(n, w, False) for n, w in loads.items()] + [("multi_resent", loads["multi"], True)]:
        for _ in range(warmup):
            once(w, resent)
        runs = [once(w, resent) for _ in range(repeat)]
        ttft = med(r["ttft_s"] for r in runs)
        res["ttft"][name] = {"prompt_tokens": prompt_lens[-1], "tiles": runs[0]["tiles"], "ttft_s": ttft,
                             "runs_s": [round(r["ttft_s"], 4) for r in runs], "prompt_tok_s": prompt_lens[-1] / ttft}
        print(f"transformers ttft {name}: {json.dumps(res['ttft'][name])}", flush=True)

    # where the time goes: each stage of Chat.reply / model.chat alone, on each prompt
    decoder = getattr(lm, "model", None) or lm.get_decoder()

    def breakdown(w: dict, n_tokens: int) -> dict:
        stages: dict[str, list[float]] = {"preprocess_threads_s": [], "vision_s": [], "tokenize_s": [],
                                          "llm_prefill_s": []}
        per_image: dict[str, dict[str, list[float]]] = {p.name: {"header_s": [], "decode_s": [], "tile_s": []}
                                                        for p in w["images"]}
        query = None
        if hasattr(net, "_query"):  # vlhub's tiny-model code: the prompt string model.chat tokenizes
            patches = [chat_tiling.tile_count(*chat_tiling.image_size_of(p), tiling) for p in w["images"]]
            query = net._query(worker.question(w["text"], len(w["images"])), [], patches)
        for i in range(warmup + repeat):
            keep = i >= warmup
            for p in w["images"]:  # each step of chat_images.load_image, alone
                size, t_header = timed(lambda: chat_tiling.image_size_of(p))
                grid = chat_tiling.closest_grid(*size, tiling)
                image, t_decode = timed(lambda: chat_tiling.decode(p, chat_tiling.pixels_needed(*size, tiling)))
                _, t_tile = timed(lambda: pixel_values(image, grid, tiling))
                if keep:
                    for k, v in zip(("header_s", "decode_s", "tile_s"), (t_header, t_decode, t_tile)):
                        per_image[p.name][k].append(v)
            fresh_tiles()
            sync()
            t = [time.perf_counter()]
            pixels = chat.tiles.get_all(w["images"])  # the worker's own path: all images at once, on threads
            if pixels:
                pixel_values_all = torch.cat(pixels).to(net.device, net.dtype)
            sync()
            t.append(time.perf_counter())
            with torch.inference_mode():
                if pixels:
                    net.extract_feature(pixel_values_all)
                sync()
                t.append(time.perf_counter())
                if query is not None:
                    chat.tokenizer(query, return_tensors="pt")
                t.append(time.perf_counter())
                embeds = torch.randn(1, n_tokens, lm.config.hidden_size, device=net.device, dtype=net.dtype)
                sync()
                t.append(time.perf_counter())
                hidden = decoder(inputs_embeds=embeds, use_cache=True).last_hidden_state
                lm.lm_head(hidden[:, -1:])
                sync()
                t.append(time.perf_counter())
            if keep:
                stages["preprocess_threads_s"].append(t[1] - t[0])
                stages["vision_s"].append(t[2] - t[1])
                stages["tokenize_s"].append(t[3] - t[2])
                stages["llm_prefill_s"].append(t[5] - t[4])
            del embeds, hidden
        out = {k: med(v) for k, v in stages.items()}
        if query is None:
            del out["tokenize_s"]
        out["per_image"] = {name: {k: med(v) for k, v in steps.items()} for name, steps in per_image.items()}
        out["preprocess_serial_sum_s"] = sum(sum(v.values()) for v in out["per_image"].values())
        out.update(llm_prefill_tokens=n_tokens, llm_prefill_tok_s=n_tokens / out["llm_prefill_s"])
        return out

    res["breakdown"] = {}
    for name, w in loads.items():
        res["breakdown"][name] = breakdown(w, res["ttft"][name]["prompt_tokens"])
        print(f"transformers breakdown {name}: {json.dumps(res['breakdown'][name])}", flush=True)

    # decode, as before: model.chat with the small image's tiles prepared once
    pixels = load_image(loads["small"]["images"][0], tiling).to(net.device, net.dtype)

    def decode_time(n: int) -> float:
        sync()
        start = time.perf_counter()
        with torch.inference_mode():
            net.chat(chat.tokenizer, pixels, "<image>\n" + PROMPT,
                     dict(max_new_tokens=n, min_new_tokens=n, do_sample=False))
        sync()
        return time.perf_counter() - start

    decode_time(8)  # warm-up
    one = [decode_time(1) for _ in range(3)]
    full = [decode_time(tokens) for _ in range(3)]
    res["decode"] = {"t1_s": one, "tN_s": full, "decode_tok_s": (tokens - 1) / (med(full) - med(one))}
    chat.tiles.close()
    del net, lm, chat
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return res


def ratios() -> dict:
    lmd, hf = RESULT.get("lmdeploy"), RESULT.get("transformers")
    out: dict = {}
    if lmd and hf:
        for name in lmd["ttft"]:
            if name in hf["ttft"]:
                out[f"ttft_{name}_transformers_over_lmdeploy"] = hf["ttft"][name]["ttft_s"] / lmd["ttft"][name]["ttft_s"]
        out["decode_lmdeploy_over_transformers"] = lmd["decode"]["decode_tok_s"] / hf["decode"]["decode_tok_s"]
    bound = RESULT.get("decode_bound_tok_s")
    if bound and lmd:
        out["lmdeploy_decode_share_of_bound"] = lmd["decode"]["decode_tok_s"] / bound
        for name, v in lmd.get("variants", {}).items():
            if "decode" in v:
                out[f"lmdeploy_{name}_decode_share_of_bound"] = v["decode"]["decode_tok_s"] / bound
    if bound and hf:
        out["transformers_decode_share_of_bound"] = hf["decode"]["decode_tok_s"] / bound
    if lmd:  # the images' cost on the server: the same number of tokens with and without images
        t = lmd["ttft"]
        out["lmdeploy_multi_minus_text_s"] = t["multi"]["ttft_s"] - t["text"]["ttft_s"]
        out["lmdeploy_multi_client_original_over_vlhub"] = t["multi_client_original"]["ttft_s"] / t["multi"]["ttft_s"]
        out["lmdeploy_multi_ttft_goal_met"] = t["multi"]["ttft_s"] <= GOALS["lmdeploy_multi_ttft_s"]
    if hf:
        b, t = hf["breakdown"]["multi"], hf["ttft"]["multi"]["ttft_s"]
        parts = {k: b[f"{k}_s"] / t for k in ("preprocess_threads", "vision", "tokenize", "llm_prefill")
                 if f"{k}_s" in b}
        out["transformers_multi_shares"] = {**parts, "rest": 1 - sum(parts.values())}
        out["transformers_multi_ttft_goal_met"] = t <= GOALS["transformers_multi_ttft_s"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", type=Path)
    parser.add_argument("work", type=Path, help="folder for the test images")
    parser.add_argument("out", type=Path)
    parser.add_argument("--tokens", type=int, default=256, help="answer length for decode tokens/s")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--parts", default="lmdeploy,transformers")
    parser.add_argument("--variants", default="lmdeploy", help=f"LMDeploy decode settings beside vlhub's: "
                                                               f"{', '.join(VARIANTS)} (comma-separated; '' none)")
    parser.add_argument("--lmdeploy-url", default=None, help="an already running server (tests) instead of vlhub's worker")
    parser.add_argument("--device", default="cuda", help="transformers side: cuda, or cpu to try the logic")
    args = parser.parse_args()
    parts = args.parts.split(",")
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown --variants {unknown}: choose from {', '.join(VARIANTS)}")
    images = make_images(args.work)
    loads = workloads(args.model, images)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "")
    RESULT.update(cpu=f"{cpu}, {os.cpu_count()} cores", torch=torch.__version__,
                  gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else None, goals=GOALS,
                  tokens=args.tokens, repeat=args.repeat, warmup=args.warmup,
                  workloads=describe(loads, model_tiling(args.model)))
    if torch.cuda.is_available():
        RESULT["copy_bandwidth_bytes_s"] = copy_bandwidth()
    RESULT.update(weight_bytes_per_token(args.model))
    if "copy_bandwidth_bytes_s" in RESULT:
        RESULT["decode_bound_tok_s"] = RESULT["copy_bandwidth_bytes_s"] / RESULT["llm_bytes_read_per_token"]
    print(json.dumps(RESULT), flush=True)
    save(args.out)
    if "lmdeploy" in parts:
        RESULT["lmdeploy"] = lmdeploy_part(args.model, args.lmdeploy_url, loads, args.tokens, args.warmup,
                                           args.repeat, variants)
        save(args.out)
        RESULT["lmdeploy"]["multi_cpu_image_handling"] = lmdeploy_cpu_image_handling(
            args.model, loads["multi"]["images"], model_tiling(args.model), args.warmup, args.repeat)
        print("lmdeploy", json.dumps(RESULT["lmdeploy"]), flush=True)
        save(args.out)
    if "transformers" in parts:
        RESULT["transformers"] = transformers_part(args.model, args.device, loads, args.tokens, args.warmup,
                                                   args.repeat)
        print("transformers", json.dumps(RESULT["transformers"]), flush=True)
    RESULT["ratios"] = ratios()
    print("ratios", json.dumps(RESULT["ratios"]), flush=True)
    save(args.out)


if __name__ == "__main__":
    main()
