"""Check xtuner configs and report on their dataset, on the CPU, in the train stage env.

Usage: ``train_inspect.py CONFIG [CONFIG ...] [--dataset] [--step]``
or ``train_inspect.py --check --model DIR --data FILE --image-root DIR --template NAME --max-length N``

- every CONFIG is loaded with mmengine's ``Config.fromfile`` and its model and dataset
  classes are resolved (one Python start for many configs);
- ``--dataset`` builds the first config's dataset (vlhub's ``VlhubInternVLDataset``, a subclass of
  xtuner's ``InternVL_V1_5_Dataset``, which checks every record as it is built), and its validation set
  when the config validates (``validation``: loss records, multiple-choice items, records left out), and reports the
  sample count, exact token-length statistics, samples over ``max_length`` and the records left
  out with their index and reason (this is what ``xtuner train`` would build, without ``xtuner
  train``, which needs a GPU);
- ``--step`` also builds the model on the CPU, runs one training step on one sample and
  answers one prompt about its image (the sample hook's code path);
- ``--check`` builds the same dataset from a model folder and a data file, without a config
  (``vlhub data validate/prepare --trainer xtuner``), and reports the record check only.

The result also says what the environment offers: CUDA devices, flash-attn, bitsandbytes, and which
experiment trackers are installed (``trackers``: tensorboard, wandb, swanlab).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
import traceback
from collections import Counter
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _protocol  # noqa: E402

EXACT_SAMPLES = 4
#: records left out that the report lists (the counts are always complete)
MAX_PROBLEMS = 200


def environment() -> dict[str, Any]:
    """CUDA devices, the optional packages QLoRA and flash attention need, xtuner's DeepSpeed configs."""
    import torch
    from xtuner.configs import cfgs_name_path

    return {"cuda_devices": torch.cuda.device_count(), "torch": torch.__version__,
            "flash_attn": importlib.util.find_spec("flash_attn") is not None,
            "bitsandbytes": importlib.util.find_spec("bitsandbytes") is not None,
            "trackers": {name: importlib.util.find_spec(name) is not None for name in ("tensorboard", "wandb", "swanlab")},
            "deepspeed_configs": sorted(n for n in cfgs_name_path if n.startswith("deepspeed_"))}


def load_configs(paths: list[str]) -> list[dict[str, Any]]:
    """Load each config with mmengine and resolve its model and dataset classes."""
    from mmengine.config import Config

    out = []
    for path in paths:
        cfg = Config.fromfile(path)
        model_type = cfg.model["type"]
        dataset_type = cfg.train_dataloader["dataset"]["type"]
        out.append({"config": path, "model": getattr(model_type, "__name__", str(model_type)),
                    "dataset": getattr(dataset_type, "__name__", str(dataset_type)),
                    "max_length": cfg.max_length, "llm_lora": cfg.model.get("llm_lora") is not None,
                    "quantization_llm": bool(cfg.model.get("quantization_llm"))})
    return out


def _stats(values: list[int]) -> dict[str, Any]:
    ordered = sorted(values)
    return {"min": ordered[0], "max": ordered[-1], "mean": round(statistics.fmean(ordered), 1),
            "median": statistics.median(ordered), "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]}


def check_report(dataset: Any) -> dict[str, Any]:
    """What the dataset's own check (``VlhubInternVLDataset.inspect``, run on every record as it was
    built) found: records left out with index, field, reason and kind; samples over ``max_length``."""
    checked = dataset.checked
    kept = [c for c in checked if c["problem"] is None]
    problems = [{"index": c["index"], **c["problem"]} for c in checked if c["problem"] is not None]
    over = [c for c in kept if c["tokens"] > dataset.max_length]
    worst = max(over, key=lambda c: c["tokens"], default=None)
    return {
        "records": len(checked), "kept": len(kept), "max_length": dataset.max_length,
        "problem_count": len(problems), "problems": problems[:MAX_PROBLEMS],
        "left_out": dict(Counter(p["kind"] for p in problems)),
        "over_max_length": len(over),
        "over_max_length_records": [{"index": c["index"], "tokens": c["tokens"]} for c in over[:MAX_PROBLEMS]],
        "over_max_length_worst": worst and {"index": worst["index"], "tokens": worst["tokens"],
                                            "over": worst["tokens"] - dataset.max_length},
        "tokens": _stats([c["tokens"] for c in kept]) if kept else None,
        "with_image": sum(1 for c in kept if c["images"]), "multi_image": sum(1 for c in kept if c["images"] > 1),
        "max_images": max((c["images"] for c in kept), default=0),
        "system_prompts": sum(1 for c in kept if c["system"]),
        "tile_tokens": dataset.patch_token, "max_tiles": dataset.max_dynamic_patch + int(dataset.use_thumbnail),
    }


def dataset_report(path: str) -> tuple[dict[str, Any], Any, Any]:
    """Build the config's dataset on the CPU and describe it; also return the config and dataset."""
    from mmengine.config import Config
    from xtuner.registry import BUILDER

    cfg = Config.fromfile(path)
    started = time.monotonic()
    _protocol.progress("dataset", 0, None, "", "building the dataset (tokenizing)")
    dataset = BUILDER.build(cfg.llava_dataset)
    check = check_report(dataset)
    by_index = {c["index"]: c for c in dataset.checked}
    exact = []
    for index in range(min(EXACT_SAMPLES, len(dataset))):
        item = dataset.prepare_data(index)
        if item is None:  # an image that does not decode (its header did): xtuner takes another sample
            continue
        record = dataset.data[index]["index"]
        exact.append({"index": record, "tokens": len(item["input_ids"]), "check_tokens": by_index[record]["tokens"],
                      "trained_tokens": sum(1 for t in item["labels"] if t >= 0),
                      "image_tiles": int(item["pixel_values"].shape[0]) if dataset.data[index]["images"] else 0})
    report = {
        "records": check["records"], "samples": len(dataset), "missing_images": check["left_out"].get("image", 0),
        "with_image": check["with_image"], "max_length": cfg.max_length,
        "tokens": check["tokens"] or _stats([0]), "over_max_length": check["over_max_length"],
        "over_max_length_worst": check["over_max_length_worst"], "tile_tokens": dataset.patch_token,
        "max_tiles": check["max_tiles"], "exact": exact,
        "template": {k: dataset.template.get(k) for k in ("SYSTEM", "INSTRUCTION", "SUFFIX")},
        "check": check, "seconds": round(time.monotonic() - started, 1),
    }
    if cfg.get("val_dataloader"):  # the validation set the run's validation loop will build
        _protocol.progress("dataset", 0, None, "", "building the validation set")
        val = BUILDER.build(cfg.val_dataloader["dataset"])
        report["validation"] = {"items": val.loss_count, "mc_items": len(val.mc),
                                "left_out": sum(1 for c in val.checked if c["problem"])}
    return report, cfg, dataset


def standalone_check(model: str, data: str, image_root: str, template: str, max_length: int) -> dict[str, Any]:
    """The record check of ``data`` for ``model``, with the dataset class a run's config uses."""
    import copy

    from train_internvl import VlhubInternVLDataset
    from xtuner.utils import PROMPT_TEMPLATE

    started = time.monotonic()
    _protocol.progress("check", 0, None, "", "checking every record (tokenizing)")
    dataset = VlhubInternVLDataset(model, copy.deepcopy(PROMPT_TEMPLATE[template]), data, image_root,
                                   max_length=max_length)
    return {**check_report(dataset), "seconds": round(time.monotonic() - started, 1)}


def training_step(cfg: Any, dataset: Any) -> dict[str, Any]:
    """Build the model on the CPU, run one forward/backward pass on the first sample, then answer
    one prompt about its image the way the sample hook does during training."""
    import torch.distributed as dist
    from train_internvl import sample_outputs  # the run's code/ folder is on PYTHONPATH
    from transformers import AutoTokenizer
    from xtuner.dataset.collate_fns import default_collate_fn
    from xtuner.registry import BUILDER

    if not dist.is_initialized():  # InternVL_V1_5 asks for the rank while it trains
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(29400 + os.getpid() % 500))
        dist.init_process_group("gloo", rank=0, world_size=1)
    _protocol.progress("step", 0, 1, "", "building the model on the CPU")
    model = BUILDER.build(cfg.model)
    batch = default_collate_fn([dataset[0]])
    model.train()
    loss = model(batch["data"], mode="loss")["loss"]
    loss.backward()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    with_grad = sum(1 for p in model.parameters() if p.requires_grad and p.grad is not None)
    attn = getattr(model.model.language_model.config, "_attn_implementation", None)
    image = next(os.path.join(root, rec["images"][0]) for rec, root in zip(dataset.data, dataset.image_folder)
                 if rec["images"])
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(cfg.model_path, trust_remote_code=True)
    sample = sample_outputs(model.model, tokenizer, image, ["Describe this image."], 8)[0]
    return {"loss": float(loss), "trainable_parameters": trainable, "parameters_with_grad": with_grad,
            "attention": attn, "sample": sample}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("configs", nargs="*")
    parser.add_argument("--dataset", action="store_true")
    parser.add_argument("--step", action="store_true")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--model")
    parser.add_argument("--data")
    parser.add_argument("--image-root", default="")
    parser.add_argument("--template")
    parser.add_argument("--max-length", type=int, default=4096)
    args = parser.parse_args()
    if args.check:
        try:
            check = standalone_check(args.model, args.data, args.image_root, args.template, args.max_length)
        except Exception as exc:  # reported as one line; the traceback stays on stderr for --debug
            traceback.print_exc()
            _protocol.fail(f"checking {args.data} in the train environment failed: {type(exc).__name__}: {exc}",
                           "check the model folder and the data file; `vlhub --debug ...` shows the traceback",
                           code=1)
        _protocol.result(check=check)
        return
    if not args.configs:
        _protocol.fail("no config given", "give a config file, or --check")
    missing = [c for c in args.configs if not os.path.isfile(c)]
    if missing:
        _protocol.fail(f"no config {missing[0]}", "generate it again with `vlhub train ... --dry-run`")
    try:
        result: dict[str, Any] = {"environment": environment(), "configs": load_configs(args.configs)}
        if args.dataset or args.step:
            result["dataset"], cfg, dataset = dataset_report(args.configs[0])
            if args.step and len(dataset):
                result["step"] = training_step(cfg, dataset)
    except Exception as exc:  # reported as one line; the traceback stays on stderr for --debug
        traceback.print_exc()
        _protocol.fail(f"checking {args.configs[0]} in the train environment failed: {type(exc).__name__}: {exc}",
                       "check the model folder and data; `vlhub --debug train ... --dry-run` shows the traceback",
                       code=1)
    _protocol.result(**result)


if __name__ == "__main__":
    main()
