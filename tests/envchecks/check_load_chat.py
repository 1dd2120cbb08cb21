"""In a stage env: load a tiny InternVL2-format model with transformers and chat once.

Usage: python check_load_chat.py MODEL_DIR. Prints one JSON line (the facts seen) last; exits 1 on failure.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import transformers
from transformers import AutoConfig, AutoModel, AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ivl_image import load_image, sample_image  # noqa: E402


def main(path: str) -> dict:
    torch.manual_seed(0)
    facts: dict = {"transformers": transformers.__version__, "torch": torch.__version__}
    config = AutoConfig.from_pretrained(path, trust_remote_code=True)
    assert type(config).__name__ == "InternVLChatConfig", type(config)
    assert config.llm_config.architectures[0] == "Phi3ForCausalLM"
    assert config.vision_config.patch_size and config.force_image_size

    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
    facts["tokenizer_class"] = type(tok).__name__
    assert tok.bos_token_id is not None and tok.eos_token_id is not None
    for t in ("<img>", "</img>", "<IMG_CONTEXT>", tok.eos_token):
        ids = tok.encode(t, add_special_tokens=False)
        assert len(ids) == 1 and ids[0] != tok.unk_token_id, (t, ids)
    enc = tok.encode("你好 hello<IMG_CONTEXT><IMG_CONTEXT>")
    assert enc[0] == tok.bos_token_id, enc
    assert tok.decode(enc, skip_special_tokens=True) == "你好 hello", tok.decode(enc, skip_special_tokens=True)

    kwargs = {"dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype": torch.float32}
    model, info = AutoModel.from_pretrained(path, trust_remote_code=True, output_loading_info=True, **kwargs)
    missing = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    assert not missing, missing
    from safetensors.torch import load_file

    state = model.state_dict()
    for shard in Path(path).glob("*.safetensors"):
        for name, tensor in load_file(str(shard)).items():
            assert torch.equal(state[name], tensor.to(state[name].dtype)), f"{name} differs from the file"
    model.eval()
    facts["model_class"] = type(model).__name__
    facts["llm_attn"] = model.language_model.config._attn_implementation
    for attr in ("language_model", "vision_model", "mlp1"):
        assert hasattr(model, attr), attr

    # The chat template and model.chat build the same prompt.
    rendered = tok.apply_chat_template([{"role": "user", "content": "<image>\nWhat is this?"}], tokenize=False,
                                       add_generation_prompt=True)
    built = tok.bos_token + model._query("<image>\nWhat is this?", [], [])
    assert rendered == built, (rendered, built)

    pixel_values = load_image(sample_image(), config)
    facts["tiles"] = int(pixel_values.shape[0])
    feats = model.extract_feature(pixel_values)
    assert tuple(feats.shape) == (pixel_values.shape[0], model.num_image_token, config.llm_config.hidden_size)
    gen = dict(max_new_tokens=8, do_sample=False)
    response, history = model.chat(tok, pixel_values, "请描述这张图片。", gen, return_history=True)
    assert isinstance(response, str) and len(history) == 1
    response2 = model.chat(tok, pixel_values, "And the colours?", gen, history=history)
    text_only = model.chat(tok, None, "Hello!", gen)
    batch = model.batch_chat(tok, torch.cat([pixel_values, pixel_values]), ["What is it?", "Describe it."], gen,
                             num_patches_list=[pixel_values.shape[0]] * 2)
    assert len(batch) == 2
    facts["responses"] = [response, response2, text_only, *batch]

    # Forward with labels (the remote code's training forward) + backward.
    model.train()
    query = tok.bos_token + model._query("<image>\nWhat is this?", [], [pixel_values.shape[0]]) + "A picture<|end|>"
    ids = tok(query, return_tensors="pt", add_special_tokens=False).input_ids
    labels = ids.clone()
    labels[:, : ids.shape[1] - 4] = -100
    out = model(pixel_values=pixel_values, input_ids=ids, attention_mask=torch.ones_like(ids),
                image_flags=torch.ones(pixel_values.shape[0], 1, dtype=torch.long), labels=labels)
    assert torch.isfinite(out.loss), out.loss
    out.loss.backward()
    assert model.mlp1[1].weight.grad is not None and model.vision_model.embeddings.patch_embedding.weight.grad is not None
    facts["loss"] = round(float(out.loss.detach()), 4)
    return facts


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1]), ensure_ascii=False))
