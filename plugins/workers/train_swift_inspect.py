"""Check a ``swift`` run's data the way ms-swift will read it (swift stage env, CPU, no model weights loaded).

``python train_swift_inspect.py --model DIR --data RUN/data/train.jsonl --model-type T --template T
--max-length N [--system TEXT]`` (``INPUT_SIZE``/``MAX_NUM`` set as for training) loads the model's processor
and ms-swift's chat template (``swift.model.get_processor``, ``swift.template.get_template``, mode
``train``), encodes every record with ``Template.encode`` exactly as the training dataset does, and reports:

``dataset``: ``samples`` (records encoded), ``problems`` (the first 200 records ms-swift cannot encode:
``index``, ``field``, ``reason``, ``kind`` ``record``), ``problem_count``, ``tokens`` (``min``, ``median``,
``max`` of the full length, image tokens included), ``over_max_length`` (records longer than
``--max-length``: cut on the right), ``over_max_length_worst`` (``index``, ``tokens``, ``over``),
``trained_tokens_min`` (fewest label tokens of a record), ``image_tokens`` (per record, the first 5),
``prompt`` (the first record's text as the template renders it, image tokens collapsed);
``environment``: ``cuda_devices``, ``versions`` (ms-swift, torch, transformers, peft).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
from typing import Any

import _protocol

TASK = "check"
MAX_PROBLEMS = 200


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in ("ms-swift", "torch", "transformers", "peft", "deepspeed"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def _collapse(text: str, token: str = "<IMG_CONTEXT>") -> str:
    """``<IMG_CONTEXT>`` runs shown as ``<IMG_CONTEXT>*N``."""
    parts, out, run = text.split(token), [], 0
    for n, part in enumerate(parts):
        if n and part == "" and n < len(parts) - 1:
            run += 1
            continue
        if n:
            out.append(f"{token}*{run + 1}")
            run = 0
        out.append(part)
    return "".join(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--model-type", required=True)
    parser.add_argument("--template", required=True)
    parser.add_argument("--max-length", type=int, required=True)
    parser.add_argument("--system")
    args = parser.parse_args()

    with contextlib.redirect_stdout(sys.stderr):
        import torch
        from swift.model import get_processor
        from swift.template import get_template

        processor = get_processor(args.model, model_type=args.model_type, download_model=False)
        template = get_template(processor, default_system=args.system, max_length=None,
                                template_type=args.template, truncation_strategy="right")
        template.set_mode("train")
    records = [json.loads(line) for line in open(args.data, encoding="utf-8") if line.strip()]
    lengths, trained, problems, images, prompt = [], [], [], [], None
    context = processor.encode("<IMG_CONTEXT>", add_special_tokens=False) if hasattr(processor, "encode") else []
    for index, record in enumerate(records):
        if index % 10 == 0:
            _protocol.progress(TASK, index, len(records), "records", "encoding with ms-swift's template")
        try:
            with contextlib.redirect_stdout(sys.stderr):
                encoded = template.encode(dict(record))
        except Exception as exc:  # ms-swift raises anything from a bad record; each is reported by index
            problems.append({"index": index, "field": "messages", "reason": f"{type(exc).__name__}: {exc}"[:300],
                             "kind": "record"})
            continue
        ids = list(encoded["input_ids"])
        labels = [t for t in (encoded.get("labels") or []) if t != -100]
        lengths.append((index, len(ids)))
        trained.append(len(labels))
        if context:
            images.append(sum(1 for t in ids if t == context[0]))
        if prompt is None:
            prompt = _collapse(processor.decode(ids) if hasattr(processor, "decode") else "")
    over = [(i, n) for i, n in lengths if n > args.max_length]
    worst = max(over, key=lambda item: item[1]) if over else None
    tokens = [n for _, n in lengths]
    dataset: dict[str, Any] = {
        "samples": len(lengths), "records": len(records), "problems": problems[:MAX_PROBLEMS],
        "problem_count": len(problems),
        "tokens": {"min": min(tokens), "median": int(statistics.median(tokens)), "max": max(tokens)} if tokens else {},
        "over_max_length": len(over),
        "over_max_length_worst": {"index": worst[0], "tokens": worst[1], "over": worst[1] - args.max_length}
        if worst else None,
        "trained_tokens_min": min(trained) if trained else 0, "image_tokens": images[:5], "prompt": prompt}
    environment = {"cuda_devices": torch.cuda.device_count() if torch.cuda.is_available() else 0,
                   "versions": _versions()}
    _protocol.progress(TASK, len(records), len(records), "records", "done")
    _protocol.result(dataset=dataset, environment=environment)


if __name__ == "__main__":
    main()
