"""Tiny InternVL2-format models: random weights, the official folder layout, vlhub's own remote code.

``make_tiny_model(out)`` writes a model folder that ``AutoModel.from_pretrained(out,
trust_remote_code=True)``, xtuner's ``InternVL_V1_5``/``InternVL_V1_5_Dataset`` and LMDeploy load
like a real InternVL2 checkpoint. It runs on the launcher side: numpy, safetensors and tokenizers
only (no torch, no transformers).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

REMOTE_CODE_DIR = Path(__file__).resolve().parent / "remote_code"
REMOTE_CODE_FILES = ("configuration_intern_vit.py", "configuration_internvl_chat.py", "conversation.py",
                     "modeling_intern_vit.py", "modeling_internvl_chat.py")
IMAGE_TOKENS = ("<img>", "</img>", "<IMG_CONTEXT>", "<quad>", "</quad>", "<ref>", "</ref>", "<box>", "</box>")
INTERNVL_SYSTEM = ("你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，英文名叫InternVL, "
                   "是一个有用无害的人工智能助手。")
#: Weights above this size are split into several safetensors files (with an index), as on the Hub.
MAX_SHARD_BYTES = 2 * 1024 ** 3
POOL_SIZE = 1 << 24


@dataclass(frozen=True)
class ChatFormat:
    """How one LLM family frames a conversation (must match ``remote_code/conversation.py``)."""

    template: str  # the InternVL ``template`` name in config.json
    system_start: str
    user: str
    assistant: str
    sep: str  # ends every turn; also the stop token
    extra_tokens: tuple[str, ...]  # special tokens the framing needs, besides ``sep``
    pad: str


CHAT_FORMATS: dict[str, ChatFormat] = {
    "phi3": ChatFormat("phi3-chat", "<|system|>\n", "<|user|>\n", "<|assistant|>\n", "<|end|>",
                       ("<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>"), "<|endoftext|>"),
}
LLM_ARCHS = {"phi3": ("Phi3ForCausalLM", "phi3")}


@dataclass(frozen=True)
class Preset:
    """Model dimensions."""

    vit_hidden: int
    vit_layers: int
    vit_heads: int
    vit_intermediate: int
    vit_norm: str
    image_size: int
    patch_size: int
    llm_hidden: int
    llm_layers: int
    llm_heads: int
    llm_kv_heads: int
    llm_intermediate: int
    vocab_size: int | None  # None: the tokenizer's size rounded up to 64
    max_position: int
    rope_theta: float
    max_dynamic_patch: int
    dtype: str  # numpy dtype name of the weights, also config.json's torch_dtype


PRESETS: dict[str, Preset] = {
    # A few hundred kB; 64 image tokens per 224-pixel tile.
    "tiny": Preset(64, 2, 4, 128, "layer_norm", 224, 14, 64, 2, 4, 2, 128, None, 4096, 10000.0, 6, "float32"),
    # InternVL2-2B's dimensions: InternViT-300M-448px + an LLM shaped like internlm2-chat-1_8b
    # (built as Phi3ForCausalLM here). About 2.2 B parameters, 4.4 GB of float16: GPU speed tests only.
    "2b": Preset(1024, 24, 16, 4096, "layer_norm", 448, 14, 2048, 24, 16, 8, 8192, 92553, 32768, 1e6, 12,
                 "float16"),
}

CORPUS = """\
The quick brown fox jumps over the lazy dog. What is in the image? Describe the picture in detail.
This is a photo of a cat sitting on a red chair next to a window. The weather is sunny today.
A plate of dumplings, a bowl of noodles and a cup of green tea are on the wooden table.
Please answer the question with a single word or phrase. Yes. No. There are three people.
The model was fine-tuned with xtuner and served with LMDeploy. Hello, how can I help you?
图中的菜是什么？这是一盘饺子，旁边有一碗面条和一杯绿茶。
请描述这张图片。图片里有一只猫坐在红色的椅子上，窗外阳光明媚。
你好，我是一个有用无害的人工智能助手。今天天气很好，我们去公园散步吧。
上海人工智能实验室 书生 多模态 大模型 微调 部署 量化 训练 数据集 图像 文本 问题 回答
北京烤鸭 麻婆豆腐 宫保鸡丁 小笼包 火锅 月饼 粽子 汤圆 红烧肉 西红柿炒鸡蛋
0 1 2 3 4 5 6 7 8 9 10 100 2024 3.14 A B C D E F G H I J K L M N O P Q R S T U V W X Y Z
a b c d e f g h i j k l m n o p q r s t u v w x y z ! ? , . ; : ' " ( ) [ ] { } < > / \\ - + = * & % $ # @
"""


def make_tiny_model(out: Path, *, llm: str = "phi3", size: str = "tiny", seed: int = 0,
                    force: bool = False) -> Path:
    """Write a random InternVL2-format model folder at ``out`` and return its resolved path.

    ``llm`` picks the language-model family (``phi3``: transformers' built-in ``Phi3ForCausalLM``
    with the ``phi3-chat`` template, as InternVL2-4B), ``size`` a preset of :data:`PRESETS`,
    ``seed`` the weights. An existing non-empty ``out`` is replaced only with ``force``.
    """
    if llm not in CHAT_FORMATS:
        raise ValueError(f"unknown llm {llm!r}; choose one of {sorted(CHAT_FORMATS)}")
    if size not in PRESETS:
        raise ValueError(f"unknown size {size!r}; choose one of {sorted(PRESETS)}")
    out = Path(out).expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not force:
            raise FileExistsError(f"{out} exists and is not empty; pass force=True to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _build(tmp, llm, PRESETS[size], size, seed)
        _fix_modes(tmp)
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _fix_modes(folder: Path) -> None:
    """Give the folder and its files the usual umask modes (mkdtemp and safetensors make them private)."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for f in folder.iterdir():
        f.chmod(0o666 & ~umask)


def _build(folder: Path, llm: str, preset: Preset, size: str, seed: int) -> None:
    fmt = CHAT_FORMATS[llm]
    ids = _write_tokenizer(folder, fmt)
    vocab = preset.vocab_size or int(math.ceil(ids["__len__"] / 64) * 64)
    if vocab < ids["__len__"]:
        raise ValueError(f"preset vocab {vocab} is smaller than the tokenizer ({ids['__len__']})")
    config = _config(preset, llm, fmt, ids, vocab)
    _write_json(folder / "config.json", config)
    _write_json(folder / "generation_config.json", {
        "_from_model_config": True, "bos_token_id": ids["<s>"], "eos_token_id": [ids[fmt.sep], ids["</s>"]],
        "pad_token_id": ids[fmt.pad], "max_new_tokens": 64})
    for name in REMOTE_CODE_FILES:
        shutil.copyfile(REMOTE_CODE_DIR / name, folder / name)
    n_params = _write_weights(folder, _param_specs(preset, vocab), np.dtype(preset.dtype), seed)
    (folder / "README.md").write_text(
        f"# Tiny InternVL2-format model ({size}, {llm})\n\nRandom weights made by vlhub's "
        f"`make_tiny_model` (seed {seed}) for tests: {n_params:,} parameters, template `{fmt.template}`. "
        "It answers gibberish.\n", encoding="utf-8")


# -- config ------------------------------------------------------------------------------------
def _config(p: Preset, llm: str, fmt: ChatFormat, ids: dict[str, int], vocab: int) -> dict[str, Any]:
    arch, model_type = LLM_ARCHS[llm]
    llm_config = {
        "architectures": [arch], "model_type": model_type, "vocab_size": vocab, "hidden_size": p.llm_hidden,
        "intermediate_size": p.llm_intermediate, "num_hidden_layers": p.llm_layers,
        "num_attention_heads": p.llm_heads, "num_key_value_heads": p.llm_kv_heads, "hidden_act": "silu",
        "max_position_embeddings": p.max_position, "original_max_position_embeddings": p.max_position,
        "rms_norm_eps": 1e-5, "rope_theta": p.rope_theta, "rope_scaling": None, "initializer_range": 0.02,
        "tie_word_embeddings": False, "use_cache": True, "attention_dropout": 0.0, "resid_pdrop": 0.0,
        "embd_pdrop": 0.0, "sliding_window": None, "bos_token_id": ids["<s>"], "eos_token_id": ids[fmt.sep],
        "pad_token_id": ids[fmt.pad], "torch_dtype": p.dtype,
    }
    vision_config = {
        "architectures": ["InternVisionModel"], "model_type": "intern_vit_6b", "num_channels": 3,
        "patch_size": p.patch_size, "image_size": p.image_size, "qkv_bias": True, "hidden_size": p.vit_hidden,
        "num_attention_heads": p.vit_heads, "intermediate_size": p.vit_intermediate,
        "qk_normalization": False, "num_hidden_layers": p.vit_layers, "use_flash_attn": False,
        "hidden_act": "gelu", "norm_type": p.vit_norm, "layer_norm_eps": 1e-6, "dropout": 0.0,
        "drop_path_rate": 0.0, "attention_dropout": 0.0, "initializer_range": 0.02, "initializer_factor": 0.1,
        "torch_dtype": p.dtype,
    }
    return {
        "architectures": ["InternVLChatModel"],
        "auto_map": {"AutoConfig": "configuration_internvl_chat.InternVLChatConfig",
                     "AutoModel": "modeling_internvl_chat.InternVLChatModel",
                     "AutoModelForCausalLM": "modeling_internvl_chat.InternVLChatModel"},
        "model_type": "internvl_chat", "torch_dtype": p.dtype, "template": fmt.template,
        "downsample_ratio": 0.5, "dynamic_image_size": True, "force_image_size": p.image_size,
        "min_dynamic_patch": 1, "max_dynamic_patch": p.max_dynamic_patch, "use_thumbnail": True,
        "ps_version": "v2", "select_layer": -1, "pad2square": False, "use_backbone_lora": 0,
        "use_llm_lora": 0, "tie_word_embeddings": False, "llm_config": llm_config, "vision_config": vision_config,
    }


# -- weights -----------------------------------------------------------------------------------
def _param_specs(p: Preset, vocab: int) -> Iterator[tuple[str, tuple[int, ...], str]]:
    """(name, shape, init) for every tensor, in the module order of the remote code."""
    d, h, hd = p.vit_hidden, p.llm_hidden, p.llm_hidden // p.llm_heads
    side = p.image_size // p.patch_size
    v = "vision_model."
    yield v + "embeddings.class_embedding", (1, 1, d), "normal"
    yield v + "embeddings.patch_embedding.weight", (d, 3, p.patch_size, p.patch_size), "normal"
    yield v + "embeddings.patch_embedding.bias", (d,), "zeros"
    yield v + "embeddings.position_embedding", (1, side * side + 1, d), "normal"
    for i in range(p.vit_layers):
        layer = f"{v}encoder.layers.{i}."
        yield layer + "attn.qkv.weight", (3 * d, d), "normal"
        yield layer + "attn.qkv.bias", (3 * d,), "zeros"
        yield layer + "attn.proj.weight", (d, d), "normal"
        yield layer + "attn.proj.bias", (d,), "zeros"
        yield layer + "mlp.fc1.weight", (p.vit_intermediate, d), "normal"
        yield layer + "mlp.fc1.bias", (p.vit_intermediate,), "zeros"
        yield layer + "mlp.fc2.weight", (d, p.vit_intermediate), "normal"
        yield layer + "mlp.fc2.bias", (d,), "zeros"
        for norm in ("norm1", "norm2"):
            yield f"{layer}{norm}.weight", (d,), "ones"
            if p.vit_norm == "layer_norm":
                yield f"{layer}{norm}.bias", (d,), "zeros"
        yield layer + "ls1", (d,), "layerscale"
        yield layer + "ls2", (d,), "layerscale"
    m = "language_model.model."
    yield m + "embed_tokens.weight", (vocab, h), "normal"
    for i in range(p.llm_layers):
        layer = f"{m}layers.{i}."
        yield layer + "self_attn.qkv_proj.weight", ((p.llm_heads + 2 * p.llm_kv_heads) * hd, h), "normal"
        yield layer + "self_attn.o_proj.weight", (h, p.llm_heads * hd), "normal"
        yield layer + "mlp.gate_up_proj.weight", (2 * p.llm_intermediate, h), "normal"
        yield layer + "mlp.down_proj.weight", (h, p.llm_intermediate), "normal"
        yield layer + "input_layernorm.weight", (h,), "ones"
        yield layer + "post_attention_layernorm.weight", (h,), "ones"
    yield m + "norm.weight", (h,), "ones"
    yield "language_model.lm_head.weight", (vocab, h), "normal"
    shuffled = 4 * d  # pixel shuffle by 0.5 folds 2x2 patches into the channels
    yield "mlp1.0.weight", (shuffled,), "ones"
    yield "mlp1.0.bias", (shuffled,), "zeros"
    yield "mlp1.1.weight", (h, shuffled), "normal"
    yield "mlp1.1.bias", (h,), "zeros"
    yield "mlp1.3.weight", (h, h), "normal"
    yield "mlp1.3.bias", (h,), "zeros"


def _write_weights(folder: Path, specs: Iterator[tuple[str, tuple[int, ...], str]], dtype: np.dtype,
                   seed: int) -> int:
    """Write safetensors shards (one file when small) and return the parameter count.

    Small tensors get i.i.d. N(0, 0.02) values; large ones (the big presets) are tiled from a
    16M-value random pool at a random offset, which keeps a 2 B-parameter build quick.
    """
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    pool: list[np.ndarray] = []

    def normal(shape: tuple[int, ...]) -> np.ndarray:
        n = math.prod(shape)
        if n <= POOL_SIZE:
            return (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(dtype)
        if not pool:
            pool.append((rng.standard_normal(POOL_SIZE, dtype=np.float32) * 0.02).astype(dtype))
        return np.resize(np.roll(pool[0], int(rng.integers(POOL_SIZE))), n).reshape(shape)

    inits: dict[str, Callable[[tuple[int, ...]], np.ndarray]] = {
        "normal": normal,
        "zeros": lambda s: np.zeros(s, dtype=dtype),
        "ones": lambda s: np.ones(s, dtype=dtype),
        "layerscale": lambda s: np.full(s, 0.1, dtype=dtype),
    }
    shard: dict[str, np.ndarray] = {}
    written: list[tuple[Path, list[str]]] = []
    shard_bytes, total_bytes, n_params = 0, 0, 0

    def flush() -> None:
        path = folder / f".shard-{len(written) + 1:05d}.safetensors"
        save_file(shard, str(path), metadata={"format": "pt"})
        written.append((path, list(shard)))
        shard.clear()

    for name, shape, init in specs:
        nbytes = math.prod(shape) * dtype.itemsize
        if shard and shard_bytes + nbytes > MAX_SHARD_BYTES:
            flush()
            shard_bytes = 0
        shard[name] = inits[init](shape)
        shard_bytes += nbytes
        total_bytes += nbytes
        n_params += math.prod(shape)
    flush()
    if len(written) == 1:
        written[0][0].rename(folder / "model.safetensors")
        return n_params
    weight_map: dict[str, str] = {}
    for i, (path, names) in enumerate(written, 1):
        fname = f"model-{i:05d}-of-{len(written):05d}.safetensors"
        path.rename(folder / fname)
        weight_map.update({k: fname for k in names})
    _write_json(folder / "model.safetensors.index.json",
                {"metadata": {"total_size": total_bytes}, "weight_map": weight_map})
    return n_params


# -- tokenizer ---------------------------------------------------------------------------------
def _jinja_str(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def chat_template(fmt: ChatFormat, system: str = INTERNVL_SYSTEM) -> str:
    """A Jinja chat template that renders exactly what ``InternVLChatModel.chat`` builds."""
    s, u, a, sep = (_jinja_str(x) for x in (fmt.system_start, fmt.user, fmt.assistant, fmt.sep))
    return (
        "{%- macro render(c) -%}{%- if c is string -%}{{ c }}{%- else -%}{%- for p in c -%}"
        "{%- if p['type'] == 'text' -%}{{ p['text'] }}{%- elif p['type'] in ['image', 'image_url'] -%}"
        "{{ '<image>\\n' }}{%- endif -%}{%- endfor -%}{%- endif -%}{%- endmacro -%}"
        "{{- bos_token -}}"
        "{%- if messages and messages[0]['role'] == 'system' -%}"
        f"{{{{ {s} }}}}{{{{ render(messages[0]['content']) }}}}{{{{ {sep} }}}}"
        "{%- set rest = messages[1:] -%}"
        f"{{%- else -%}}{{{{ {s} }}}}{{{{ {_jinja_str(system)} }}}}{{{{ {sep} }}}}"
        "{%- set rest = messages -%}{%- endif -%}"
        "{%- for m in rest -%}"
        f"{{%- if m['role'] == 'user' -%}}{{{{ {u} }}}}{{{{ render(m['content']) }}}}{{{{ {sep} }}}}"
        f"{{%- elif m['role'] == 'assistant' -%}}{{{{ {a} }}}}{{{{ render(m['content']) }}}}{{{{ {sep} }}}}"
        "{%- endif -%}{%- endfor -%}"
        f"{{%- if add_generation_prompt -%}}{{{{ {a} }}}}{{%- endif -%}}"
    )


def _write_tokenizer(folder: Path, fmt: ChatFormat) -> dict[str, int]:
    """Train a small byte-level BPE and write tokenizer.json + its configs; return token ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1000, min_frequency=1, show_progress=False,
                                  special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS.splitlines() * 2, trainer=trainer)
    specials = [fmt.sep, *fmt.extra_tokens, *IMAGE_TOKENS]
    tok.add_special_tokens(specials)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", bos)])
    tok.save(str(folder / "tokenizer.json"))
    ids = {t: tok.token_to_id(t) for t in ["<unk>", "<s>", "</s>", *specials]}
    ids["__len__"] = tok.get_vocab_size(with_added_tokens=True)
    added = {str(ids[t]): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                           "single_word": False, "special": True} for t in ["<unk>", "<s>", "</s>", *specials]}
    special_map = {"bos_token": "<s>", "eos_token": fmt.sep, "unk_token": "<unk>", "pad_token": fmt.pad,
                   "additional_special_tokens": [t for t in specials if t not in (fmt.sep, fmt.pad)]}
    _write_json(folder / "special_tokens_map.json", special_map)
    _write_json(folder / "tokenizer_config.json", {
        "tokenizer_class": "PreTrainedTokenizerFast", **special_map, "added_tokens_decoder": added,
        "model_max_length": 32768, "padding_side": "right", "clean_up_tokenization_spaces": False,
        "chat_template": chat_template(fmt)})
    return ids


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
