"""Convert an xtuner LLM LoRA checkpoint to a merged Hugging Face folder, then verify it (train stage env).

``python convert_llm.py JOB.json``: seed 001's path, through xtuner's own tools called in this
process: ``xtuner convert pth_to_hf CONFIG CHECKPOINT ADAPTER`` then ``xtuner convert merge BASE
ADAPTER OUT``; then the remote code, chat template and stop tokens; then a CPU chat turn with
transformers and the base + LoRA delta check on sampled weights.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import _protocol
from convert_common import (check_merge, finish_folder, load_config, loadable, lora_scale, read_job,
                            stdout_to_stderr)

TASK = "convert"
STEPS = 5


def _run_tool(module: Any, argv: list[str]) -> None:
    """Run an xtuner converter's ``main()`` with ``argv`` (as ``xtuner convert`` does)."""
    saved = sys.argv
    sys.argv = argv
    try:
        with stdout_to_stderr():
            module.main()
    finally:
        sys.argv = saved


def _chat_once(out: Path, prompt: str, stop_ids: list[int]) -> dict[str, Any]:
    """Load ``out`` with transformers on the CPU and answer one question through its chat template."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(out), trust_remote_code=True)
    model = AutoModelForCausalLM.from_pretrained(str(out), trust_remote_code=True,
                                                 torch_dtype=torch.float32).eval()
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=8, do_sample=False, eos_token_id=stop_ids,
                                pad_token_id=tokenizer.pad_token_id or stop_ids[0])
    new = output[0, inputs["input_ids"].shape[-1]:]
    return {"prompt": text, "new_tokens": int(new.shape[-1]),
            "response": tokenizer.decode(new, skip_special_tokens=True)}


def main() -> None:
    job = read_job(sys.argv)
    out, checkpoint = Path(job["out"]), job["checkpoint"]
    _protocol.progress(TASK, 0, STEPS, "steps", "loading the config")
    cfg = load_config(job["config"])
    base = Path(cfg.model.llm.pretrained_model_name_or_path)
    if not (base / "config.json").exists():
        _protocol.fail(f"the run's base model {base} has no config.json",
                       "the conversion needs the base model folder the run trained from")
    import torch

    if not torch.cuda.is_available():  # xtuner 0.2.0's SupervisedFinetune calls torch.cpu.is_bf16_supported()
        _protocol.fail("xtuner 0.2.0 cannot build an LLM model without a GPU (its SupervisedFinetune "
                       "calls torch.cpu.is_bf16_supported, which torch lacks)",
                       "run the conversion on the GPU machine", code=1)
    from xtuner.tools.model_converters import merge, pth_to_hf

    with tempfile.TemporaryDirectory(prefix="vlhub-adapter-") as adapter:
        _protocol.progress(TASK, 1, STEPS, "steps", "xtuner convert pth_to_hf")
        _run_tool(pth_to_hf, ["pth_to_hf", job["config"], checkpoint, adapter, "--safe-serialization"])
        _protocol.progress(TASK, 2, STEPS, "steps", "xtuner convert merge")
        _run_tool(merge, ["merge", str(base), adapter, str(out), "--safe-serialization"])

    copied, stop_ids = finish_folder(base, out, job["template"])

    verify = job.get("verify") or {}
    verified: dict[str, Any] = {}
    if verify.get("enabled", True):
        _protocol.progress(TASK, 3, STEPS, "steps", "verifying: weights = base + LoRA delta")
        from xtuner.model.utils import guess_load_checkpoint

        with stdout_to_stderr():
            state = guess_load_checkpoint(checkpoint)
        scale = lora_scale(cfg.model.get("lora"))
        weights = {"llm": check_merge(state, "llm.", "llm.", base, out, scale, int(verify.get("samples", 4)))} \
            if scale is not None else {}
        verified["weights"] = weights
        _protocol.progress(TASK, 4, STEPS, "steps", "verifying: transformers chat turn (CPU)")
        with stdout_to_stderr():
            with loadable(out) as folder:
                verified["chat"] = _chat_once(folder, verify.get("prompt", "Hello!"), stop_ids)
        verified["ok"] = all(w["ok"] for w in weights.values()) and verified["chat"]["new_tokens"] > 0
    _protocol.progress(TASK, STEPS, STEPS, "steps", "done")
    _protocol.result(base_model=str(base.resolve()), remote_code=copied, stop_token_ids=stop_ids,
                     verified=verified)


if __name__ == "__main__":
    main()
