"""Convert an xtuner InternVL checkpoint to an official InternVL folder, then verify it (train stage env).

``python convert_internvl.py JOB.json`` where the job holds ``config``, ``checkpoint``, ``out``,
``template`` (``jinja``, ``stop_words``) and ``verify`` (``samples``, ``prompt``, ``image``).
The conversion itself is xtuner's ``convert_to_official`` (build the config's model with
``pretrained_pth`` = the checkpoint, merge the ViT and LLM LoRA, ``save_pretrained``, save the
tokenizer); then the remote code is copied, the tokenizer gets the chat template and
``generation_config.json`` the stop tokens; then the folder is loaded with transformers on the
CPU, answers one chat turn with an image, and merged weights are checked against base + LoRA.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import _protocol
from convert_common import (check_merge, finish_folder, load_config, loadable, lora_scale, read_job,
                            stdout_to_stderr, verification_image)

TASK = "convert"
STEPS = 5
#: Key prefixes of xtuner's InternVL wrapper; a checkpoint with none of them belongs to another model.
INTERNVL_KEYS = ("model.language_model.", "model.vision_model.", "model.mlp1.")


def _chat_once(out: Path, prompt: str, image_path: str | None, stop_ids: list[int]) -> dict[str, Any]:
    """Load ``out`` with transformers on the CPU and answer one question about one image.

    The prompt comes from the tokenizer's chat template (as LMDeploy >= 0.10 builds it); ``<image>``
    becomes ``<img>`` + ``<IMG_CONTEXT>`` x tokens + ``</img>`` as InternVL's ``chat()`` does.
    """
    import torch
    import torchvision.transforms as T
    from torchvision.transforms.functional import InterpolationMode
    from transformers import AutoModel, AutoTokenizer
    from xtuner.dataset.internvl_dataset import dynamic_preprocess

    tokenizer = AutoTokenizer.from_pretrained(str(out), trust_remote_code=True)
    model = AutoModel.from_pretrained(str(out), trust_remote_code=True, torch_dtype=torch.float32).eval()
    config = model.config
    size = config.force_image_size
    transform = T.Compose([T.Resize((size, size), interpolation=InterpolationMode.BICUBIC), T.ToTensor(),
                           T.Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))])
    tiles = dynamic_preprocess(verification_image(image_path), config.min_dynamic_patch, config.max_dynamic_patch,
                               size, config.use_thumbnail)
    pixels = torch.stack([transform(t) for t in tiles])
    messages = [{"role": "user", "content": "<image>\n" + prompt}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    image_tokens = "<img>" + "<IMG_CONTEXT>" * (model.num_image_token * len(tiles)) + "</img>"
    inputs = tokenizer(text.replace("<image>", image_tokens, 1), return_tensors="pt", add_special_tokens=False)
    model.img_context_token_id = tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
    output = model.generate(pixel_values=pixels, input_ids=inputs["input_ids"],
                            attention_mask=inputs["attention_mask"], max_new_tokens=8, do_sample=False,
                            eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id or stop_ids[0])
    return {"prompt": text, "tiles": len(tiles), "new_tokens": int(output.shape[-1]),
            "response": tokenizer.decode(output[0], skip_special_tokens=True)}


def main() -> None:
    job = read_job(sys.argv)
    out, checkpoint = Path(job["out"]), job["checkpoint"]
    _protocol.progress(TASK, 0, STEPS, "steps", "loading the config")
    cfg = load_config(job["config"])
    base = Path(cfg.model.model_path)
    if not (base / "config.json").exists():
        _protocol.fail(f"the run's base model {base} has no config.json",
                       "the conversion needs the base model folder the run trained from")

    from xtuner.model.utils import guess_load_checkpoint

    with stdout_to_stderr():
        state = guess_load_checkpoint(checkpoint)
    if not any(key.startswith(INTERNVL_KEYS) for key in state):
        _protocol.fail(f"{checkpoint} is not a checkpoint of an InternVL model (it holds {len(state)} tensors, "
                       f"e.g. {next(iter(state), 'none')!r}; none under {', '.join(INTERNVL_KEYS)})",
                       "pass a checkpoint written by an xtuner InternVL run, with the config that run used")

    _protocol.progress(TASK, 1, STEPS, "steps", "building the model and merging LoRA (xtuner)")
    from xtuner.configs.internvl.v1_5.convert_to_official import convert_to_official

    with stdout_to_stderr():
        convert_to_official(job["config"], checkpoint, str(out))

    _protocol.progress(TASK, 2, STEPS, "steps", "remote code, chat template, stop tokens")
    copied, stop_ids = finish_folder(base, out, job["template"])

    verify = job.get("verify") or {}
    verified: dict[str, Any] = {}
    if verify.get("enabled", True):
        _protocol.progress(TASK, 3, STEPS, "steps", "verifying: weights = base + LoRA delta")
        samples = int(verify.get("samples", 4))
        parts = {"llm": (cfg.model.get("llm_lora"), "model.language_model."),
                 "vit": (cfg.model.get("visual_encoder_lora"), "model.vision_model.")}
        weights = {}
        for part, (lora, prefix) in parts.items():
            scale = lora_scale(lora)
            if scale is not None:
                weights[part] = check_merge(state, prefix, "model.", base, out, scale, samples)
        verified["weights"] = weights
        _protocol.progress(TASK, 4, STEPS, "steps", "verifying: transformers chat turn with an image (CPU)")
        with stdout_to_stderr():
            with loadable(out) as folder:
                verified["chat"] = _chat_once(folder, verify.get("prompt", "Describe the image."),
                                              verify.get("image"), stop_ids)
        verified["ok"] = all(w["ok"] for w in weights.values()) and verified["chat"]["new_tokens"] > 0
    _protocol.progress(TASK, STEPS, STEPS, "steps", "done")
    _protocol.result(base_model=str(base.resolve()), remote_code=copied, stop_token_ids=stop_ids,
                     verified=verified)


if __name__ == "__main__":
    main()
