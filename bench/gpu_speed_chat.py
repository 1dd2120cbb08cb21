"""Chat speed on the GPU: LMDeploy (vlhub's api_server worker) vs transformers (vlhub's transformers worker).

Run with the serve env's Python from the repo root (bench/gpu_speed.sh does):
    python bench/gpu_speed_chat.py MODEL_DIR WORK_DIR OUT_JSON [--tokens 256] [--repeat 7] [--warmup 2]

WORK_DIR receives the test images (made here, deterministic). Measures:

- time to first token (TTFT), from the same starting point on both sides: the user's image files on
  disk + the question text -> the first generated token, on three prompts:
    small  one 448 px PNG (1 tile, 256 image tokens) + a short question;
    multi  the chat page's usual turn: that PNG + a 1920x1080 and a 4032x3024 (phone) JPEG photo,
           dynamically tiled into 1 + 9 + 13 = 23 tiles (5888 image tokens) + a question;
    text   no image, a text prompt of about as many tokens as ``multi`` (the LLM prefill alone).
  LMDeploy: vlhub's ``workers/chat_lmdeploy.py`` (``lmdeploy serve api_server``, the server
  ``vlhub chat --backend lmdeploy`` starts, with vlhub's default options), spoken to as vlhub's openai
  backend does (files read and base64-encoded into ``data:`` URLs, text part first, then the images;
  the ``openai`` SDK, ``stream=True``); TTFT = until the first SSE chunk carrying a generated token.
  The request adds LMDeploy's ``return_token_ids`` so that every token gets a chunk: random weights mostly
  pick ids the small test tokenizer decodes to nothing, and the server sends no chunk for empty text.
  transformers: vlhub's ``workers/chat_transformers.py`` ``Chat.reply`` itself (images loaded and tiled by
  ``chat_images.load_image``, ``model.chat`` with a ``TextIteratorStreamer`` in a thread, bf16, CUDA);
  TTFT = until the streamer receives the first generated token (its ``put`` is timed).
  Medians of ``--repeat`` runs after ``--warmup`` warm-ups, greedy.
- where the time goes: on the transformers side, image preprocessing (CPU), the vision encoder and the
  LLM prefill of the ``multi`` prompt's length, each timed alone; on the LMDeploy side, the client's
  base64 encoding, and multi - text (the same number of tokens with and without images);
- decode tokens/s, as before: whole answers of 1 and N tokens on ``small`` (non-streamed over HTTP with
  ``ignore_eos`` for LMDeploy; ``model.chat`` with ``min_new_tokens`` for transformers),
  decode = (N - 1) / (T(N) - T(1)); and the memory-bandwidth bound of decoding: bytes of LLM weights read
  per token (every LLM tensor but the embedding table) against the GPU's measured copy bandwidth.
Results are written as they come (OUT_JSON). ``--parts`` / ``--lmdeploy-url`` / ``--device`` let the
script's logic be tried without a GPU (the transformers part on the CPU, the client against any server).
"""
from __future__ import annotations

import argparse
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

PROMPT = "Describe this image in detail."
MULTI_PROMPT = "Compare these three pictures: describe what each one shows and what they have in common."
FILLER = ("The market street was busy in the afternoon light. A vendor sold dumplings and noodles from a "
          "wooden cart, while people walked past the shops with bags of vegetables and cups of green tea. ")
#: the test images: name -> (width, height); the PNG is a drawing, the JPEGs are photo-like
IMAGES = {"square.png": (448, 448), "street.jpg": (1920, 1080), "phone.jpg": (4032, 3024)}
MODEL_NAME = "m"
RESULT: dict = {}


def save(out: Path) -> None:
    out.write_text(json.dumps(RESULT, indent=2))


def med(values) -> float:
    return statistics.median(values)


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


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


def tiles_of(path: Path, config: dict) -> int:
    """Tiles of one image under the model's dynamic tiling (as chat_images.load_image cuts it)."""
    from chat_images import closest_grid

    size = int(config.get("force_image_size") or config["vision_config"]["image_size"])
    with Image.open(path) as im:
        cols, rows = closest_grid(im.width, im.height, size, int(config.get("max_dynamic_patch", 12)))
    n = cols * rows
    return n + (1 if n > 1 and config.get("use_thumbnail", True) else 0)


def workloads(model: Path, images: dict[str, Path]) -> dict[str, dict]:
    """The three prompts; ``text`` is cut to about the token count of ``multi``."""
    from transformers import AutoTokenizer

    config = json.loads((model / "config.json").read_text())
    size = int(config.get("force_image_size") or config["vision_config"]["image_size"])
    per_tile = int((size // config["vision_config"]["patch_size"]) ** 2 * config["downsample_ratio"] ** 2)
    small, multi = [images["square.png"]], list(images.values())
    tok = AutoTokenizer.from_pretrained(str(model), trust_remote_code=True, use_fast=False)
    target = sum(tiles_of(p, config) for p in multi) * per_tile + len(tok(MULTI_PROMPT).input_ids)
    filler = FILLER
    while len(tok(filler, add_special_tokens=False).input_ids) < target:
        filler += FILLER
    text = tok.decode(tok(filler, add_special_tokens=False).input_ids[:target], skip_special_tokens=True)
    out = {"small": {"images": small, "text": PROMPT}, "multi": {"images": multi, "text": MULTI_PROMPT},
           "text": {"images": [], "text": text}}
    for w in out.values():
        w["tiles"] = sum(tiles_of(p, config) for p in w["images"])
        w["image_tokens"] = w["tiles"] * per_tile
    out["text"]["text_tokens"] = len(tok(text, add_special_tokens=False).input_ids)
    return out


def describe(loads: dict[str, dict]) -> dict:
    return {name: {"images": [f"{p.name} {Image.open(p).size[0]}x{Image.open(p).size[1]} {p.stat().st_size} B"
                              for p in w["images"]],
                   "tiles": w["tiles"], "image_tokens": w["image_tokens"], "text_chars": len(w["text"]),
                   **({"text_tokens": w["text_tokens"]} if "text_tokens" in w else {})}
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
def image_data_url(path: Path) -> str:
    """As vlhub's openai backend (plugins/backends/openai_backend.py): the file as a data: URL."""
    with Image.open(path) as img:
        kind = (img.format or "png").lower()
    return f"data:image/{kind};base64,{base64.b64encode(Path(path).read_bytes()).decode('ascii')}"


def to_messages(text: str, images: list[Path]) -> list[dict]:
    """As vlhub's openai backend's ``to_messages`` for one user turn: the text part, then the images."""
    if not images:
        return [{"role": "user", "content": text}]
    parts = [{"type": "text", "text": text}] + [{"type": "image_url", "image_url": {"url": image_data_url(p)}}
                                                for p in images]
    return [{"role": "user", "content": parts}]


def start_lmdeploy(model: Path) -> tuple[subprocess.Popen, dict, float]:
    """vlhub's worker with vlhub's default server options (no --session-len: the model's 32768)."""
    t0 = time.monotonic()
    worker = subprocess.Popen([sys.executable, str(ROOT / "plugins/workers/chat_lmdeploy.py"), str(model),
                               "--model-name", MODEL_NAME, "--engine", "pytorch", "--timeout", "400"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ready: dict = {}
    for line in worker.stdout:
        ready = json.loads(line)
        if ready.get("event") != "progress":
            break
    if ready.get("event") != "ready":
        raise RuntimeError(f"lmdeploy worker: {ready}")
    return worker, ready, time.monotonic() - t0


def lmdeploy_decode(base_url: str, image: Path, tokens: int, repeat: int) -> dict:
    messages = to_messages(PROMPT, [image])

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


def lmdeploy_ttft(base_url: str, loads: dict[str, dict], warmup: int, repeat: int) -> dict:
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key="EMPTY", max_retries=1, timeout=600.0)  # as OpenAISession

    def once(w: dict) -> dict:
        start = time.perf_counter()
        messages = to_messages(w["text"], w["images"])
        encoded = time.perf_counter()
        stream = client.chat.completions.create(model=MODEL_NAME, messages=messages, stream=True,
                                                temperature=0.0, top_p=0.8, max_tokens=4,
                                                extra_body={"return_token_ids": True})
        first = content = last = None
        chunks = 0
        for chunk in stream:
            now = time.perf_counter()
            if not chunk.choices:
                continue
            chunks, last = chunks + 1, now
            choice = chunk.choices[0]
            if first is None and (choice.delta.content or getattr(choice, "output_ids", None)):
                first = now
            if content is None and choice.delta.content:
                content = now
        if first is None:
            raise RuntimeError("the stream carried no generated token")
        return {"ttft_s": first - start, "encode_s": encoded - start, "last_chunk_s": last - start, "chunks": chunks,
                "first_text_s": None if content is None else content - start}

    out = {}
    for name, w in loads.items():
        usage = client.chat.completions.create(model=MODEL_NAME, messages=to_messages(w["text"], w["images"]),
                                               temperature=0.0, max_tokens=1).usage
        for _ in range(warmup):
            once(w)
        runs = [once(w) for _ in range(repeat)]
        ttft = med(r["ttft_s"] for r in runs)
        out[name] = {"prompt_tokens": usage.prompt_tokens, "ttft_s": ttft, "encode_s": med(r["encode_s"] for r in runs),
                     "runs_s": [round(r["ttft_s"], 4) for r in runs],
                     "last_chunk_s": med(r["last_chunk_s"] for r in runs), "chunks": [r["chunks"] for r in runs],
                     "first_text_s": [r["first_text_s"] and round(r["first_text_s"], 4) for r in runs],
                     "prompt_tok_s": usage.prompt_tokens / ttft}
        print(f"lmdeploy ttft {name}: {json.dumps(out[name])}", flush=True)
    client.close()
    return out


def lmdeploy_cpu_image_handling(model: Path, images: list[Path], warmup: int, repeat: int) -> dict:
    """LMDeploy's own image handling of these images, timed alone in this process on the CPU: each data: URL
    decoded to a PIL image (``lmdeploy.vl.utils.load_image``, as the server does for a request) and
    LMDeploy's InternVL preprocessor (dynamic tiling + torchvision transforms), which the server runs
    per request before the engine's vision encoder and prefill."""
    try:
        from lmdeploy.vl.model.builder import load_vl_model
        from lmdeploy.vl.utils import load_image as lmdeploy_load_image

        vision = load_vl_model(str(model), "pytorch", trust_remote_code=True)  # the preprocessor, no weights
        urls = [image_data_url(p) for p in images]
        decode, preprocess = [], []
        for i in range(warmup + repeat):
            a = time.perf_counter()
            pil = [lmdeploy_load_image(u) for u in urls]
            b = time.perf_counter()
            messages = vision.preprocess([{"role": "user", "content": [{"type": "image", "data": im} for im in pil]}])
            c = time.perf_counter()
            if i >= warmup:
                decode.append(b - a)
                preprocess.append(c - b)
        tiles = sum(int(x["pixel_values"].shape[0]) for x in messages[-1]["content"])
        return {"decode_s": med(decode), "preprocess_s": med(preprocess), "tiles": tiles}
    except Exception as exc:  # a diagnostic only: never lose the run for it
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}


def lmdeploy_part(model: Path, url: str | None, loads: dict, tokens: int, warmup: int, repeat: int) -> dict:
    worker = None
    res: dict = {}
    if url is None:
        worker, ready, load_s = start_lmdeploy(model)
        url = ready["base_url"]
        res.update(load_s=round(load_s, 1), lmdeploy=ready.get("lmdeploy"))
    try:
        res["ttft"] = lmdeploy_ttft(url, loads, warmup, repeat)
        res["decode"] = lmdeploy_decode(url, loads["small"]["images"][0], tokens, 3)
    finally:
        if worker is not None:
            worker.stdin.close()
            worker.wait(120)
    return res


# ------------------------------------------------------------------------------ transformers
def transformers_part(model: Path, device: str, loads: dict, tokens: int, warmup: int, repeat: int) -> dict:
    import transformers

    import chat_transformers as worker
    from chat_images import load_image

    worker.emit = lambda *args, **fields: None  # the chunks would go to stdout
    t0 = time.monotonic()
    chat = worker.Chat(model, device, None)  # bf16 on CUDA, as `vlhub chat --backend transformers`
    load_s = time.monotonic() - t0
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

    def once(w: dict) -> dict:
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
    for name, w in loads.items():
        for _ in range(warmup):
            once(w)
        runs = [once(w) for _ in range(repeat)]
        ttft = med(r["ttft_s"] for r in runs)
        res["ttft"][name] = {"prompt_tokens": prompt_lens[-1], "tiles": runs[0]["tiles"], "ttft_s": ttft,
                             "runs_s": [round(r["ttft_s"], 4) for r in runs], "prompt_tok_s": prompt_lens[-1] / ttft}
        print(f"transformers ttft {name}: {json.dumps(res['ttft'][name])}", flush=True)

    # where the time goes: each stage of Chat.reply / model.chat alone, on each prompt
    decoder = getattr(lm, "model", None) or lm.get_decoder()

    def breakdown(w: dict, n_tokens: int) -> dict:
        stages: dict[str, list[float]] = {"preprocess_s": [], "vision_s": [], "tokenize_s": [], "llm_prefill_s": []}
        per_image: dict[str, list[float]] = {p.name: [] for p in w["images"]}
        query = None
        if hasattr(net, "_query"):  # vlhub's tiny-model code: the prompt string model.chat tokenizes
            patches = [tiles_of(p, json.loads((model / "config.json").read_text())) for p in w["images"]]
            query = net._query(worker.question(w["text"], len(w["images"])), [], patches)
        for i in range(warmup + repeat):
            keep = i >= warmup
            sync()
            t = [time.perf_counter()]
            pixels = []
            for p in w["images"]:
                a = time.perf_counter()
                pixels.append(load_image(p, chat.image_size, chat.max_tiles, chat.thumbnail))
                if keep:
                    per_image[p.name].append(time.perf_counter() - a)
            if pixels:
                pixel_values = torch.cat(pixels).to(net.device, net.dtype)
            sync()
            t.append(time.perf_counter())
            with torch.inference_mode():
                if pixels:
                    net.extract_feature(pixel_values)
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
                stages["preprocess_s"].append(t[1] - t[0])
                stages["vision_s"].append(t[2] - t[1])
                stages["tokenize_s"].append(t[3] - t[2])
                stages["llm_prefill_s"].append(t[5] - t[4])
            del embeds, hidden
        out = {k: med(v) for k, v in stages.items()}
        if query is None:
            del out["tokenize_s"]
        out.update(preprocess_per_image_s={k: med(v) for k, v in per_image.items()}, llm_prefill_tokens=n_tokens)
        out["llm_prefill_tok_s"] = n_tokens / out["llm_prefill_s"]
        return out

    res["breakdown"] = {}
    for name, w in loads.items():
        res["breakdown"][name] = breakdown(w, res["ttft"][name]["prompt_tokens"])
        print(f"transformers breakdown {name}: {json.dumps(res['breakdown'][name])}", flush=True)
    res["multi_breakdown"] = res["breakdown"]["multi"]

    # decode, as before: model.chat with the small image's tiles prepared once
    pixels = load_image(loads["small"]["images"][0], chat.image_size, chat.max_tiles, chat.thumbnail)
    pixels = pixels.to(net.device, net.dtype)

    def timed(n: int) -> float:
        sync()
        start = time.perf_counter()
        with torch.inference_mode():
            net.chat(chat.tokenizer, pixels, "<image>\n" + PROMPT,
                     dict(max_new_tokens=n, min_new_tokens=n, do_sample=False))
        sync()
        return time.perf_counter() - start

    timed(8)  # warm-up
    one = [timed(1) for _ in range(3)]
    full = [timed(tokens) for _ in range(3)]
    res["decode"] = {"t1_s": one, "tN_s": full, "decode_tok_s": (tokens - 1) / (med(full) - med(one))}
    del net, lm, chat
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return res


def ratios() -> dict:
    lmd, hf = RESULT.get("lmdeploy"), RESULT.get("transformers")
    out: dict = {}
    if lmd and hf:
        for name in lmd["ttft"]:
            out[f"ttft_{name}_transformers_over_lmdeploy"] = hf["ttft"][name]["ttft_s"] / lmd["ttft"][name]["ttft_s"]
        out["decode_lmdeploy_over_transformers"] = lmd["decode"]["decode_tok_s"] / hf["decode"]["decode_tok_s"]
    bound = RESULT.get("decode_bound_tok_s")
    for side, res in (("lmdeploy", lmd), ("transformers", hf)):
        if res and bound:
            out[f"{side}_decode_share_of_bound"] = res["decode"]["decode_tok_s"] / bound
    if lmd:  # the images' cost on the server: the same number of tokens with and without images
        t = lmd["ttft"]
        out["lmdeploy_multi_minus_text_s"] = t["multi"]["ttft_s"] - t["text"]["ttft_s"]
    if hf:
        b, t = hf["multi_breakdown"], hf["ttft"]["multi"]["ttft_s"]
        parts = {k: b[f"{k}_s"] / t for k in ("preprocess", "vision", "tokenize", "llm_prefill") if f"{k}_s" in b}
        out["transformers_multi_shares"] = {**parts, "rest": 1 - sum(parts.values())}
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
    parser.add_argument("--lmdeploy-url", default=None, help="an already running server (tests) instead of vlhub's worker")
    parser.add_argument("--device", default="cuda", help="transformers side: cuda, or cpu to try the logic")
    args = parser.parse_args()
    parts = args.parts.split(",")
    images = make_images(args.work)
    loads = workloads(args.model, images)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "")
    RESULT.update(cpu=f"{cpu}, {os.cpu_count()} cores", torch=torch.__version__,
                  gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                  tokens=args.tokens, repeat=args.repeat, warmup=args.warmup, workloads=describe(loads))
    if torch.cuda.is_available():
        RESULT["copy_bandwidth_bytes_s"] = copy_bandwidth()
    RESULT.update(weight_bytes_per_token(args.model))
    if "copy_bandwidth_bytes_s" in RESULT:
        RESULT["decode_bound_tok_s"] = RESULT["copy_bandwidth_bytes_s"] / RESULT["llm_bytes_read_per_token"]
    print(json.dumps(RESULT), flush=True)
    save(args.out)
    if "lmdeploy" in parts:
        RESULT["lmdeploy"] = lmdeploy_part(args.model, args.lmdeploy_url, loads, args.tokens, args.warmup, args.repeat)
        RESULT["lmdeploy"]["multi_cpu_image_handling"] = lmdeploy_cpu_image_handling(
            args.model, loads["multi"]["images"], args.warmup, args.repeat)
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
