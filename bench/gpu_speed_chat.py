"""Chat speed on the GPU: LMDeploy (vlhub's api_server worker) vs transformers ``generate`` (``model.chat``).

Run with the serve env's Python from the repo root (bench/gpu_speed.sh does):
    python bench/gpu_speed_chat.py MODEL_DIR IMAGE OUT_JSON [--tokens 256] [--repeat 3]

Measures, on one prompt with one 448 px image (one tile, 256 image tokens):
- the GPU's copy bandwidth (device-to-device copy of 1 GiB, bytes read + written);
- LMDeploy through vlhub's ``workers/chat_lmdeploy.py`` (``lmdeploy serve api_server``, the same
  server ``vlhub chat --backend lmdeploy`` starts), over HTTP: time to first token = a 1-token answer,
  decode tokens/s = (N - 1) / (T(N) - T(1)) with ``ignore_eos`` and ``max_tokens`` N (random weights
  mostly pick ids the small tokenizer decodes to nothing, so streamed chunks cannot be timed);
- transformers ``model.chat`` as vlhub's transformers backend calls it (bf16, CUDA): time to first
  token = a 1-token answer, decode tokens/s = (N - 1) / (T(N) - T(1)) with ``min_new_tokens`` N;
- the memory-bandwidth bound of decoding: bytes of LLM weights read per token (every LLM tensor but
  the embedding table, of which one row is read) against the measured copy bandwidth.
Medians of ``--repeat`` runs after one warm-up. Results are written as they come (OUT_JSON).
"""
from __future__ import annotations

import argparse
import base64
import json
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "Describe this image in detail."
RESULT: dict = {}


def save(out: Path) -> None:
    out.write_text(json.dumps(RESULT, indent=2))


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
    return 2 * (1 << 30) / statistics.median(times)


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
def lmdeploy_speed(model: Path, image: Path, tokens: int, repeat: int) -> dict:
    t0 = time.monotonic()
    worker = subprocess.Popen([sys.executable, str(ROOT / "plugins/workers/chat_lmdeploy.py"), str(model),
                               "--model-name", "m", "--engine", "pytorch", "--session-len", "4096", "--timeout", "400"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ready: dict = {}
    for line in worker.stdout:
        ready = json.loads(line)
        if ready.get("event") != "progress":
            break
    if ready.get("event") != "ready":
        raise RuntimeError(f"lmdeploy worker: {ready}")
    load_s = time.monotonic() - t0
    url = "data:image/png;base64," + base64.b64encode(image.read_bytes()).decode()
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                             {"type": "text", "text": PROMPT}]}]

    def request(n: int) -> tuple[float, int]:
        """Seconds for a whole (non-streamed) answer of exactly n tokens, and the tokens the server counted."""
        body = json.dumps({"model": "m", "messages": messages, "temperature": 0.0, "max_tokens": n,
                           "ignore_eos": True}).encode()
        req = urllib.request.Request(ready["base_url"] + "/chat/completions", body,
                                     {"Content-Type": "application/json"})
        start = time.perf_counter()
        with urllib.request.urlopen(req, timeout=300) as response:
            answer = json.loads(response.read())
        return time.perf_counter() - start, answer["usage"]["completion_tokens"]

    try:
        request(8)  # warm-up
        one = [request(1) for _ in range(repeat)]
        full = [request(tokens) for _ in range(repeat)]
    finally:
        worker.stdin.close()
        worker.wait(120)
    generated = full[0][1]
    ttft = statistics.median(r[0] for r in one)
    decode = (generated - 1) / (statistics.median(r[0] for r in full) - ttft)
    return {"load_s": round(load_s, 1), "lmdeploy": ready.get("lmdeploy"), "generated_tokens": generated,
            "ttft_s": ttft, "decode_tok_s": decode, "t1_s": [r[0] for r in one], "tN_s": [r[0] for r in full]}


# ------------------------------------------------------------------------------ transformers
def transformers_speed(model: Path, image: Path, tokens: int, repeat: int) -> dict:
    import transformers
    from transformers import AutoModel, AutoTokenizer

    sys.path.insert(0, str(ROOT / "plugins/workers"))
    from chat_images import load_image

    t0 = time.monotonic()
    net = AutoModel.from_pretrained(str(model), torch_dtype=torch.bfloat16, trust_remote_code=True,
                                    low_cpu_mem_usage=True).eval().to("cuda")
    tok = AutoTokenizer.from_pretrained(str(model), trust_remote_code=True, use_fast=False)
    load_s = time.monotonic() - t0
    cfg = net.config
    pixels = load_image(image, cfg.force_image_size, cfg.max_dynamic_patch, cfg.use_thumbnail).to("cuda", net.dtype)
    question = "<image>\n" + PROMPT

    def timed(n: int) -> float:
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.no_grad():
            net.chat(tok, pixels, question, dict(max_new_tokens=n, min_new_tokens=n, do_sample=False))
        torch.cuda.synchronize()
        return time.perf_counter() - start

    timed(8)  # warm-up
    one = [timed(1) for _ in range(repeat)]
    full = [timed(tokens) for _ in range(repeat)]
    ttft = statistics.median(one)
    decode = (tokens - 1) / (statistics.median(full) - ttft)
    del net
    torch.cuda.empty_cache()
    return {"load_s": round(load_s, 1), "transformers": transformers.__version__, "tiles": int(pixels.shape[0]),
            "ttft_s": ttft, "decode_tok_s": decode, "t1_s": one, "tN_s": full}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", type=Path)
    parser.add_argument("image", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    RESULT.update(gpu=torch.cuda.get_device_name(), torch=torch.__version__, tokens=args.tokens, prompt=PROMPT)
    RESULT["copy_bandwidth_bytes_s"] = copy_bandwidth()
    RESULT.update(weight_bytes_per_token(args.model))
    RESULT["decode_bound_tok_s"] = RESULT["copy_bandwidth_bytes_s"] / RESULT["llm_bytes_read_per_token"]
    print(json.dumps(RESULT), flush=True)
    save(args.out)
    RESULT["lmdeploy"] = lmdeploy_speed(args.model, args.image, args.tokens, args.repeat)
    print("lmdeploy", json.dumps(RESULT["lmdeploy"]), flush=True)
    save(args.out)
    RESULT["transformers"] = transformers_speed(args.model, args.image, args.tokens, args.repeat)
    print("transformers", json.dumps(RESULT["transformers"]), flush=True)
    lmd, hf = RESULT["lmdeploy"], RESULT["transformers"]
    RESULT["ratios"] = {"ttft_transformers_over_lmdeploy": hf["ttft_s"] / lmd["ttft_s"],
                        "decode_lmdeploy_over_transformers": lmd["decode_tok_s"] / hf["decode_tok_s"],
                        "lmdeploy_decode_share_of_bound": lmd["decode_tok_s"] / RESULT["decode_bound_tok_s"],
                        "transformers_decode_share_of_bound": hf["decode_tok_s"] / RESULT["decode_bound_tok_s"]}
    print("ratios", json.dumps(RESULT["ratios"]), flush=True)
    save(args.out)


if __name__ == "__main__":
    main()
