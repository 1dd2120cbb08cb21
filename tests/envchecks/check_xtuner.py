"""In the train stage env: xtuner 0.2.0's InternVL dataset and model on a tiny InternVL2-format model.

Usage: python check_xtuner.py MODEL_DIR WORK_DIR. Builds a LLaVA-format JSON + images in WORK_DIR,
``InternVL_V1_5_Dataset`` on it, ``InternVL_V1_5`` with LoRA (its flash_attention_2 request falls back
to SDPA), one collated forward with a finite loss and a backward. Prints one JSON line last.
"""
from __future__ import annotations

import json
import math
import os
import socket
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from peft import LoraConfig

from xtuner.dataset import InternVL_V1_5_Dataset
from xtuner.dataset.collate_fns import default_collate_fn
from xtuner.dataset.utils import get_bos_eos_token_ids
from xtuner.model import InternVL_V1_5
from xtuner.utils import PROMPT_TEMPLATE

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ivl_image import sample_image  # noqa: E402


def make_data(work: Path) -> Path:
    """Two LLaVA-style records (one image each, sizes that tile differently) and one text-only record."""
    images = work / "images"
    images.mkdir(parents=True, exist_ok=True)
    sample_image(320, 200).save(images / "wide.jpg")
    sample_image(150, 300).save(images / "tall.png")
    records = [
        {"image": "wide.jpg", "conversations": [
            {"from": "human", "value": "<image>\n图中的菜是什么？"}, {"from": "gpt", "value": "这是一盘饺子。"}]},
        {"image": "tall.png", "conversations": [
            {"from": "human", "value": "Describe the picture.\n<image>"}, {"from": "gpt", "value": "A red chair."},
            {"from": "human", "value": "And the colours?"}, {"from": "gpt", "value": "Blue and green."}]},
        {"conversations": [{"from": "human", "value": "Hello!"}, {"from": "gpt", "value": "Hello, how can I help you?"}]},
    ]
    path = work / "data.json"
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return path


def main(model_path: str, work_dir: str) -> dict:
    torch.manual_seed(0)
    work = Path(work_dir)
    data = make_data(work)
    facts: dict = {}
    ds = InternVL_V1_5_Dataset(model_path=model_path, template=PROMPT_TEMPLATE.phi3_chat,
                               data_paths=str(data), image_folders=str(work / "images"), max_length=4096)
    facts["dataset_len"] = len(ds)
    facts["bos_eos"] = get_bos_eos_token_ids(ds.tokenizer)
    ctx = ds.tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
    items = [ds[i] for i in range(len(ds))]
    for item in items[:2]:
        n_ctx = sum(1 for t in item["input_ids"] if t == ctx)
        assert n_ctx == item["pixel_values"].shape[0] * ds.patch_token, (n_ctx, item["pixel_values"].shape)
        assert any(label >= 0 for label in item["labels"])
    facts["tiles"] = [int(it["pixel_values"].shape[0]) for it in items]
    facts["patch_token"] = ds.patch_token

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        os.environ.setdefault("MASTER_PORT", str(s.getsockname()[1]))
    dist.init_process_group("gloo", rank=0, world_size=1)  # InternVL_V1_5 asks for the rank
    try:
        model = InternVL_V1_5(model_path, freeze_llm=True, freeze_visual_encoder=True,
                              llm_lora=dict(type=LoraConfig, r=8, lora_alpha=16, lora_dropout=0.0,
                                            target_modules=None, task_type="CAUSAL_LM"))
        facts["llm_attn"] = model.model.language_model.config._attn_implementation
        model.train()
        batch = default_collate_fn(items)
        loss = model(**batch, mode="loss")["loss"]
        assert math.isfinite(float(loss)), loss
        loss.backward()
        grads = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is not None]
        assert grads and all("lora" in n or "mlp1" in n for n in grads), grads[:5]
        facts["loss"] = round(float(loss.detach()), 4)
        facts["trainable_with_grad"] = len(grads)
        facts["state_dict_keys"] = len(model.state_dict())
    finally:
        dist.destroy_process_group()
    return facts


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2]), ensure_ascii=False))
