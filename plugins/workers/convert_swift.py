"""Turn a ``swift`` run's checkpoint into a model folder, then verify it (swift stage env, CPU).

``python convert_swift.py JOB.json`` where the job holds ``checkpoint`` (a ``checkpoint-N/`` folder), ``base``
(the base model folder), ``out`` (an empty folder), ``native`` (transformers-native layout), ``template``
(vlhub's chat template: ``jinja``, ``stop_words``) and ``verify`` (``enabled``, ``prompt``, ``image``,
``samples``); ``INPUT_SIZE``/``MAX_NUM`` are set as for training.

A LoRA checkpoint (``adapter_config.json``) is merged by ms-swift's own export, ``swift export --adapters CKPT
--merge_lora true`` through its Python API (``swift.pipelines.export_main`` with ``ExportArguments``: it reads
the base model, model type and template from the checkpoint's ``args.json``, merges with peft's
``merge_and_unload`` and saves with ``swift.model.save_checkpoint``); a full fine-tuning checkpoint already
holds the whole model and its files are copied without the optimizer and trainer state. Then the base
model's remote code, vlhub's chat template (``tokenizer_config.json``) and the stop tokens
(``generation_config.json``) are added (:mod:`convert_common`), and the folder is verified: merged weights
equal base + scale * B @ A on sampled LoRA layers, and transformers loads it and answers one question about
an image.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import _protocol
from convert_common import (check_merge, finish_folder, loadable, lora_scale, read_job, stdout_to_stderr,
                            verification_image)

TASK = "convert"
STEPS = 4
#: Files of a checkpoint folder that belong to the training state, not to the model.
TRAINING_STATE = ("optimizer.pt", "scheduler.pt", "trainer_state.json", "training_args.bin", "latest",
                  "zero_to_fp32.py", "args.json", "scaler.pt")


def merge(checkpoint: Path, out: Path) -> None:
    """``swift export --adapters CHECKPOINT --merge_lora true --output_dir OUT`` (ms-swift's Python API)."""
    from swift.arguments import ExportArguments
    from swift.pipelines import export_main

    out.rmdir()  # ms-swift skips saving into a folder that exists
    export_main(ExportArguments(adapters=[str(checkpoint)], merge_lora=True, output_dir=str(out),
                                safe_serialization=True, device_map="cpu"))


def copy_full(checkpoint: Path, out: Path) -> None:
    """The model files of a full fine-tuning checkpoint (weights, config, tokenizer, remote code)."""
    for path in sorted(checkpoint.iterdir()):
        if path.name in TRAINING_STATE or path.name.startswith(("global_step", "rng_state")) or path.is_dir():
            continue
        shutil.copy2(path, out / path.name)


def chat_template_in_config(out: Path, jinja: str) -> None:
    """Put the chat template into ``tokenizer_config.json`` too: transformers >= 4.52 (this env's) saves it as
    ``chat_template.jinja`` only, which transformers 4.48 (the train env's chat backend) does not read."""
    path = out / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["chat_template"] = jinja
    path.write_text(json.dumps(config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _adapter_state(checkpoint: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(checkpoint / "adapter_model.safetensors"))


def chat_once(out: Path, native: bool, prompt: str, image_path: str | None, stop_ids: list[int]) -> dict[str, Any]:
    """Load ``out`` with transformers on the CPU and answer one question about one image, with the prompt the
    folder's chat template renders (``<image>`` expanded as InternVL's ``chat()`` does, or by the native
    processor)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    image = verification_image(image_path)
    messages = [{"role": "user", "content": "<image>\n" + prompt}]
    if native:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        processor = AutoProcessor.from_pretrained(str(out))
        model = AutoModelForImageTextToText.from_pretrained(str(out), torch_dtype=torch.float32).eval()
        text = processor.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = processor(text=[text.replace("<image>", "<IMG_CONTEXT>", 1)], images=[image], return_tensors="pt")
        output = model.generate(**inputs, max_new_tokens=8, do_sample=False, eos_token_id=stop_ids)
        new = output[0][inputs["input_ids"].shape[-1]:]
        return {"prompt": text, "new_tokens": int(new.shape[-1]),
                "response": processor.tokenizer.decode(new, skip_special_tokens=True)}
    from swift.template.vision_utils import transform_image

    tokenizer = AutoTokenizer.from_pretrained(str(out), trust_remote_code=True)
    model = AutoModel.from_pretrained(str(out), trust_remote_code=True, torch_dtype=torch.float32).eval()
    pixels = transform_image(image, int(os.environ.get("INPUT_SIZE", 448)), int(os.environ.get("MAX_NUM", 12)))
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    tokens = "<img>" + "<IMG_CONTEXT>" * (model.num_image_token * pixels.shape[0]) + "</img>"
    inputs = tokenizer(text.replace("<image>", tokens, 1), return_tensors="pt", add_special_tokens=False)
    model.img_context_token_id = tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
    output = model.generate(pixel_values=pixels.to(torch.float32), input_ids=inputs["input_ids"],
                            attention_mask=inputs["attention_mask"], max_new_tokens=8, do_sample=False,
                            eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id or stop_ids[0])
    return {"prompt": text, "tiles": int(pixels.shape[0]), "new_tokens": int(output.shape[-1]),
            "response": tokenizer.decode(output[0], skip_special_tokens=True)}


def main() -> None:
    job = read_job(sys.argv)
    checkpoint, base, out = Path(job["checkpoint"]), Path(job["base"]), Path(job["out"])
    lora = (checkpoint / "adapter_config.json").is_file()
    _protocol.progress(TASK, 0, STEPS, "steps", "merging LoRA (swift export)" if lora else "copying the model")
    with stdout_to_stderr():
        if lora:
            merge(checkpoint, out)
        else:
            copy_full(checkpoint, out)
    for leftover in TRAINING_STATE:
        (out / leftover).unlink(missing_ok=True)
    _protocol.progress(TASK, 1, STEPS, "steps", "remote code, chat template, stop tokens")
    with stdout_to_stderr():
        copied, stop_ids = finish_folder(base, out, job["template"])
    chat_template_in_config(out, job["template"]["jinja"])
    verify = job.get("verify") or {}
    verified: dict[str, Any] = {}
    if verify.get("enabled", True):
        _protocol.progress(TASK, 2, STEPS, "steps", "verifying: weights = base + LoRA delta")
        if lora:
            config = json.loads((checkpoint / "adapter_config.json").read_text(encoding="utf-8"))
            verified["weights"] = {"llm": check_merge(_adapter_state(checkpoint), "base_model.model.", "", base, out,
                                                      lora_scale(config), int(verify.get("samples", 4)))}
        _protocol.progress(TASK, 3, STEPS, "steps", "verifying: transformers chat turn with an image (CPU)")
        with stdout_to_stderr(), loadable(out) as folder:
            verified["chat"] = chat_once(folder, bool(job.get("native")), verify.get("prompt", "Describe the image."),
                                         verify.get("image"), stop_ids)
        verified["ok"] = all(w["ok"] for w in verified.get("weights", {}).values()) and \
            verified["chat"]["new_tokens"] > 0
    _protocol.progress(TASK, STEPS, STEPS, "steps", "done")
    _protocol.result(base_model=str(base.resolve()), remote_code=copied, stop_token_ids=stop_ids, lora=lora,
                     verified=verified)


if __name__ == "__main__":
    main()
