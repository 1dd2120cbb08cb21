"""Check xtuner configs and report on their dataset, on the CPU, in the train stage env.

Usage: ``train_inspect.py CONFIG [CONFIG ...] [--dataset] [--step]``

- every CONFIG is loaded with mmengine's ``Config.fromfile`` and its model and dataset
  classes are resolved (one Python start for many configs);
- ``--dataset`` builds the first config's dataset with xtuner's ``InternVL_V1_5_Dataset``
  and reports the sample count, token-length statistics and samples over ``max_length``
  (this is what ``xtuner train`` would build, without ``xtuner train``, which needs a GPU);
- ``--step`` also builds the model on the CPU, runs one training step on one sample and
  answers one prompt about its image (the sample hook's code path).

The result also says what the environment offers: CUDA devices, flash-attn, bitsandbytes.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
import traceback
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _protocol  # noqa: E402

EXACT_SAMPLES = 4


def environment() -> dict[str, Any]:
    """CUDA devices, the optional packages QLoRA and flash attention need, xtuner's DeepSpeed configs."""
    import torch
    from xtuner.configs import cfgs_name_path

    return {"cuda_devices": torch.cuda.device_count(), "torch": torch.__version__,
            "flash_attn": importlib.util.find_spec("flash_attn") is not None,
            "bitsandbytes": importlib.util.find_spec("bitsandbytes") is not None,
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


def dataset_report(path: str) -> tuple[dict[str, Any], Any, Any]:
    """Build the config's dataset on the CPU and describe it; also return the config and dataset."""
    from mmengine.config import Config
    from xtuner.registry import BUILDER

    cfg = Config.fromfile(path)
    started = time.monotonic()
    _protocol.progress("dataset", 0, None, "", "building the dataset (tokenizing)")
    dataset = BUILDER.build(cfg.llava_dataset)
    missing = [i for i, (rec, root) in enumerate(zip(dataset.data, dataset.image_folder))
               if rec.get("image") and not os.path.isfile(os.path.join(
                   root, rec["image"][0] if isinstance(rec["image"], list) else rec["image"]))]
    lengths = [abs(n) for n in dataset.group_length]
    over = sum(1 for n in lengths if n > cfg.max_length)
    exact = []
    for index in [i for i in range(len(dataset)) if i not in set(missing)][:EXACT_SAMPLES]:
        item = dataset.prepare_data(index)
        exact.append({"index": index, "tokens": len(item["input_ids"]),
                      "trained_tokens": sum(1 for t in item["labels"] if t >= 0),
                      "image_tiles": int(item["pixel_values"].shape[0])})
    report = {
        "records": len(dataset), "samples": len(dataset) - len(missing), "missing_images": len(missing),
        "with_image": sum(1 for n in dataset.group_length if n > 0), "max_length": cfg.max_length,
        "tokens": _stats(lengths), "over_max_length": over, "tile_tokens": dataset.patch_token,
        "max_tiles": dataset.max_dynamic_patch + int(dataset.use_thumbnail), "exact": exact,
        "template": {k: dataset.template.get(k) for k in ("SYSTEM", "INSTRUCTION", "SUFFIX")},
        "seconds": round(time.monotonic() - started, 1),
    }
    return report, cfg, dataset


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
    image = next(os.path.join(root, rec["image"][0] if isinstance(rec["image"], list) else rec["image"])
                 for rec, root in zip(dataset.data, dataset.image_folder) if rec.get("image"))
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(cfg.model_path, trust_remote_code=True)
    sample = sample_outputs(model.model, tokenizer, image, ["Describe this image."], 8)[0]
    return {"loss": float(loss), "trainable_parameters": trainable, "parameters_with_grad": with_grad,
            "attention": attn, "sample": sample}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("configs", nargs="+")
    parser.add_argument("--dataset", action="store_true")
    parser.add_argument("--step", action="store_true")
    args = parser.parse_args()
    missing = [c for c in args.configs if not os.path.isfile(c)]
    if missing:
        _protocol.fail(f"no config {missing[0]}", "generate it again with `vlhub train ... --dry-run`")
    try:
        result: dict[str, Any] = {"environment": environment(), "configs": load_configs(args.configs)}
        if args.dataset or args.step:
            result["dataset"], cfg, dataset = dataset_report(args.configs[0])
            if args.step:
                result["step"] = training_step(cfg, dataset)
    except Exception as exc:  # reported as one line; the traceback stays on stderr for --debug
        traceback.print_exc()
        _protocol.fail(f"checking {args.configs[0]} in the train environment failed: {type(exc).__name__}: {exc}",
                       "check the model folder and data; `vlhub --debug train ... --dry-run` shows the traceback",
                       code=1)
    _protocol.result(**result)


if __name__ == "__main__":
    main()
