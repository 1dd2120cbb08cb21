"""Tiny InternVL-format models: random weights, the official folder layouts, each LLM family's real architecture.

``make_tiny_model(out, llm=...)`` writes a model folder shaped like a published InternVL checkpoint
of that LLM family, with random weights (a few MB at most):

========= =========================================== ================================ ===============
``llm``   imitates (config.json ``template``, LLM)    LLM code                         loads with
========= =========================================== ================================ ===============
phi3      InternVL2-4B (``phi3-chat``, Phi-3)         transformers (built in)          transformers 4.48 and 5
internlm2 InternVL2-2B (``internlm2-chat``, InternLM2) remote code, copied from xtuner   transformers 4.48 (train env)
qwen2     InternVL2.5-1B / InternVL3-1B               transformers (built in)          transformers 4.48 and 5
          (``internvl2_5``, Qwen2.5)
qwen3     InternVL3.5-1B (``internvl2_5``, Qwen3)     transformers >= 4.51             transformers 5 (t5check env)
========= =========================================== ================================ ===============

The InternVL part is vlhub's own remote code (``remote_code/``), which ``AutoModel.from_pretrained(out,
trust_remote_code=True)``, xtuner's ``InternVL_V1_5``/``InternVL_V1_5_Dataset`` and LMDeploy load like a
real checkpoint. InternLM2 is remote code itself: its ``configuration_internlm2.py`` and
``modeling_internlm2.py`` are copied at build time from an installed package that ships them (xtuner's
``xtuner/_lite/modelings/internlm2``, found in the train stage environment), never kept in this repository.

``hf=True`` writes the transformers-native layout instead (``InternVLForConditionalGeneration``,
``model_type: internvl``, as ``OpenGVLab/InternVL3-1B-hf`` and ``InternVL3_5-1B-HF``): qwen2 and qwen3
only; it needs transformers >= 4.52 to load (the t5check env in the tests).

The build runs on the launcher side: numpy, safetensors and tokenizers only (no torch, no transformers).
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

REMOTE_CODE_DIR = Path(__file__).resolve().parent / "remote_code"
REMOTE_CODE_FILES = ("configuration_intern_vit.py", "configuration_internvl_chat.py", "conversation.py",
                     "modeling_intern_vit.py", "modeling_internvl_chat.py")
IMAGE_TOKENS = ("<img>", "</img>", "<IMG_CONTEXT>", "<quad>", "</quad>", "<ref>", "</ref>", "<box>", "</box>")
#: The transformers-native (``-hf``) tokenizers also carry a video placeholder.
VIDEO_TOKEN = "<video>"
INTERNVL_SYSTEM = ("你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，英文名叫InternVL, "
                   "是一个有用无害的人工智能助手。")
INTERNVL2_5_SYSTEM = ("你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的"
                      "多模态大语言模型。")
#: Weights above this size are split into several safetensors files (with an index), as on the Hub.
MAX_SHARD_BYTES = 2 * 1024 ** 3
POOL_SIZE = 1 << 24
#: Where xtuner keeps InternLM2's remote code, inside its package folder.
XTUNER_INTERNLM2 = ("_lite", "modelings", "internlm2")
#: How Qwen2/Qwen3 tokenizers split text before byte-level BPE (their tokenizer.json's ``Split`` pre-tokenizer).
QWEN_PRETOKENIZE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                    r"|\s*[\r\n]+|\s+(?!\S)|\s+")
#: The lines of the remote code that the builder replaces with a remote-code LLM's imports.
REMOTE_LLM_MARKERS = {"configuration_internvl_chat.py": ("# vlhub: remote LLM config\n", "LLM_CONFIGS"),
                      "modeling_internvl_chat.py": ("# vlhub: remote LLM model\n", "LLM_CLASSES")}


@dataclass(frozen=True)
class ChatFormat:
    """How one LLM family's InternVL checkpoints frame a conversation in ``model.chat``
    (``remote_code/conversation.py``): ``system_start + system + sep``, then ``role + text + sep`` per turn."""

    template: str  # the InternVL ``template`` name in config.json
    system_start: str
    user: str
    assistant: str
    sep: str  # ends the system block and every turn
    system: str = INTERNVL_SYSTEM  # the default system prompt
    think: bool = False  # Qwen3's <think> handling in the tokenizer's chat template


@dataclass(frozen=True)
class Family:
    """One LLM family: architecture, chat format, tokenizer and where its checkpoints load."""

    llm: str  # the ``--llm`` name
    arch: str  # llm_config.architectures[0]
    model_type: str
    chat: ChatFormat
    base_tokens: tuple[str, ...]  # special tokens at the start of the vocabulary (ids 0, 1, 2 ...)
    special_tokens: tuple[str, ...]  # special tokens added after the vocabulary, before InternVL's
    plain_tokens: tuple[str, ...]  # added tokens that are not special (kept by skip_special_tokens)
    bos: str | None
    eos: str
    pad: str
    unk: str | None
    stop: tuple[str, ...]  # generation_config.json eos_token_id
    tokenizer_class: str
    models: tuple[str, ...]  # the published checkpoints it imitates
    envs: tuple[str, ...]  # the test environments whose transformers load it ("train": 4.48, "t5check": 5)
    hf_models: tuple[str, ...] = ()  # transformers-native checkpoints of the family (``hf=True``); () = none
    remote_llm: tuple[tuple[str, str], ...] = ()  # (module, class) of an LLM that is remote code itself


_QWEN_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                  "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                  "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")
_CHATML = dict(system_start="<|im_start|>system\n", user="<|im_start|>user\n", assistant="<|im_start|>assistant\n")

FAMILIES: dict[str, Family] = {
    "phi3": Family(
        "phi3", "Phi3ForCausalLM", "phi3",
        ChatFormat("phi3-chat", "<|system|>\n", "<|user|>\n", "<|assistant|>\n", "<|end|>"),
        ("<unk>", "<s>", "</s>"), ("<|end|>", "<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>"), (),
        bos="<s>", eos="<|end|>", pad="<|endoftext|>", unk="<unk>", stop=("<|end|>", "</s>"),
        tokenizer_class="PreTrainedTokenizerFast", models=("InternVL2-4B", "Mini-InternVL-Chat-4B-V1-5"),
        envs=("train", "t5check")),
    "internlm2": Family(
        "internlm2", "InternLM2ForCausalLM", "internlm2",
        ChatFormat("internlm2-chat", sep="<|im_end|>", **_CHATML),
        ("<unk>", "<s>", "</s>"),
        ("<|plugin|>", "<|interpreter|>", "<|action_end|>", "<|action_start|>", "<|im_end|>", "<|im_start|>"), (),
        bos="<s>", eos="</s>", pad="</s>", unk="<unk>", stop=("<|im_end|>", "</s>"),
        # the real tokenizer is remote code (InternLM2Tokenizer, sentencepiece): a fast tokenizer.json stands in
        tokenizer_class="PreTrainedTokenizerFast",
        models=("InternVL2-2B", "InternVL2-8B", "Mini-InternVL-Chat-2B-V1-5"),
        envs=("train",),
        remote_llm=(("configuration_internlm2", "InternLM2Config"), ("modeling_internlm2", "InternLM2ForCausalLM"))),
    "qwen2": Family(
        "qwen2", "Qwen2ForCausalLM", "qwen2",
        ChatFormat("internvl2_5", sep="<|im_end|>\n", system=INTERNVL2_5_SYSTEM, **_CHATML),
        (), _QWEN_SPECIALS, ("<tool_call>", "</tool_call>"),
        bos=None, eos="<|im_end|>", pad="<|endoftext|>", unk=None, stop=("<|im_end|>", "<|endoftext|>"),
        tokenizer_class="Qwen2Tokenizer", models=("InternVL2_5-1B", "InternVL3-1B", "InternVL3-2B"),
        envs=("train", "t5check"), hf_models=("InternVL3-1B-hf", "InternVL3-2B-hf")),
    "qwen3": Family(
        "qwen3", "Qwen3ForCausalLM", "qwen3",
        ChatFormat("internvl2_5", sep="<|im_end|>\n", system=INTERNVL2_5_SYSTEM, think=True, **_CHATML),
        (), _QWEN_SPECIALS, ("<tool_call>", "</tool_call>", "<think>", "</think>"),
        bos=None, eos="<|im_end|>", pad="<|endoftext|>", unk=None, stop=("<|im_end|>", "<|endoftext|>"),
        tokenizer_class="Qwen2Tokenizer", models=("InternVL3_5-1B", "InternVL3_5-2B", "InternVL3_5-8B"),
        envs=("t5check",), hf_models=("InternVL3_5-1B-HF", "InternVL3_5-2B-HF")),
}
#: The InternVL chat format of each family (kept for callers of vlhub 0.1).
CHAT_FORMATS: dict[str, ChatFormat] = {name: f.chat for name, f in FAMILIES.items()}
LLM_ARCHS = {name: (f.arch, f.model_type) for name, f in FAMILIES.items()}
#: Stage environments a folder loads in (``envs_for(llm, hf)``): remote-code families as listed, ``-hf`` on 5.x.
HF_ENVS = ("t5check",)


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
    # (the LLM family's own architecture). About 2.2 B parameters, 4.4 GB of float16: GPU speed tests only.
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


def envs_for(llm: str, hf: bool = False) -> tuple[str, ...]:
    """The test environments whose transformers load a folder of ``llm`` (``"train"``: 4.48, ``"t5check"``: 5.x)."""
    return HF_ENVS if hf else FAMILIES[llm].envs


def make_tiny_model(out: Path, *, llm: str = "phi3", size: str = "tiny", seed: int = 0, force: bool = False,
                    hf: bool = False, llm_code: Path | None = None) -> Path:
    """Write a random InternVL-format model folder at ``out`` and return its resolved path.

    ``llm`` picks the language-model family (:data:`FAMILIES`: ``phi3``, ``internlm2``, ``qwen2``,
    ``qwen3``), ``size`` a preset of :data:`PRESETS`, ``seed`` the weights; ``hf`` writes the
    transformers-native layout (qwen2 and qwen3). ``llm_code`` is a folder holding the LLM's own remote
    code where the family needs it (internlm2: ``configuration_internlm2.py`` and ``modeling_internlm2.py``);
    by default xtuner's copy is used, found in the train stage environment (:func:`find_llm_code`).
    An existing non-empty ``out`` is replaced only with ``force``.

    Raises:
        ValueError: an unknown family or size, ``hf`` for a family without native checkpoints, or the
            LLM's remote code not found. FileExistsError: ``out`` is not empty and ``force`` is off.
    """
    if llm not in FAMILIES:
        raise ValueError(f"unknown llm {llm!r}; choose one of {sorted(FAMILIES)}")
    if size not in PRESETS:
        raise ValueError(f"unknown size {size!r}; choose one of {sorted(PRESETS)}")
    family = FAMILIES[llm]
    if hf and not family.hf_models:
        with_hf = sorted(n for n, f in FAMILIES.items() if f.hf_models)
        raise ValueError(f"--hf: no transformers-native InternVL checkpoints have a {llm} LLM; "
                         f"choose one of {with_hf}")
    code = None
    if family.remote_llm and not hf:
        code = find_llm_code(llm) if llm_code is None else _check_llm_code(llm, Path(llm_code).expanduser())
    out = Path(out).expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not force:
            raise FileExistsError(f"{out} exists and is not empty; pass force=True to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if hf:
            _build_hf(tmp, family, PRESETS[size], size, seed)
        else:
            _build(tmp, family, PRESETS[size], size, seed, code)
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


# -- the LLM's own remote code -----------------------------------------------------------------
_FIND_XTUNER = ("import importlib.util; s = importlib.util.find_spec('xtuner'); "
                "print(s.submodule_search_locations[0] if s and s.submodule_search_locations else '')")


def _llm_code_files(llm: str) -> list[str]:
    return [f"{module}.py" for module, _ in FAMILIES[llm].remote_llm]


def _check_llm_code(llm: str, folder: Path) -> Path:
    missing = [name for name in _llm_code_files(llm) if not (folder / name).is_file()]
    if missing:
        raise ValueError(f"{folder} lacks {', '.join(missing)} ({llm}'s modeling code)")
    return folder


def _xtuner_dirs() -> Iterator[Path]:
    """xtuner's package folder in the train stage env, then in this interpreter (found, never imported)."""
    try:
        from vlhub.core import stage

        python = stage.python_for("train")
    except Exception:  # no plugins loaded, unknown or damaged env: fall back to this interpreter
        python = None
    if python is not None:
        try:
            proc = subprocess.run([str(python), "-c", _FIND_XTUNER], capture_output=True, text=True, timeout=120,
                                  env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")})
            if proc.returncode == 0 and proc.stdout.strip():
                yield Path(proc.stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    spec = importlib.util.find_spec("xtuner")
    if spec is not None and spec.submodule_search_locations:
        yield Path(list(spec.submodule_search_locations)[0])


def find_llm_code(llm: str) -> Path:
    """The folder with ``llm``'s own remote modeling code: InternLM2's ships with xtuner
    (``xtuner/_lite/modelings/internlm2``), looked up in the train stage env's Python, then in this one.

    Raises:
        ValueError: not found (the message says how to get it).
    """
    for package in _xtuner_dirs():
        folder = package.joinpath(*XTUNER_INTERNLM2)
        if all((folder / name).is_file() for name in _llm_code_files(llm)):
            return folder
    raise ValueError(f"{llm}'s modeling code (configuration_internlm2.py, modeling_internlm2.py) is copied from "
                     "xtuner, which was not found in the train stage env nor here: run `vlhub env create train`, "
                     "or pass --llm-code DIR (a folder holding both files, e.g. a downloaded InternVL2-2B)")


def remote_code_text(name: str, family: Family) -> str:
    """The text of remote-code file ``name`` for ``family``: as shipped, plus the imports of the LLM's own
    remote code where the family has one (as InternVL2-2B's files import ``.modeling_internlm2``)."""
    text = (REMOTE_CODE_DIR / name).read_text(encoding="utf-8")
    if not family.remote_llm or name not in REMOTE_LLM_MARKERS:
        return text
    marker, registry = REMOTE_LLM_MARKERS[name]
    module, cls = family.remote_llm[0 if name.startswith("configuration") else 1]
    lines = (f"from .{module} import {cls}  # noqa: E402  (written by vlhub's tiny-model builder)\n\n"
             f'{registry}["{family.arch}"] = {cls}\n')
    assert text.count(marker) == 1, f"{name}: marker {marker!r} not found once"
    return text.replace(marker, lines)


# -- remote-code layout ------------------------------------------------------------------------
def _build(folder: Path, family: Family, preset: Preset, size: str, seed: int, code: Path | None) -> None:
    ids = _write_tokenizer(folder, family, chat_template(family.chat, bos=family.bos is not None))
    vocab = _vocab(preset, ids)
    _write_json(folder / "config.json", _config(preset, family, ids, vocab))
    _write_json(folder / "generation_config.json", _generation_config(family, ids))
    for name in REMOTE_CODE_FILES:
        (folder / name).write_text(remote_code_text(name, family), encoding="utf-8")
    for name in (_llm_code_files(family.llm) if code is not None else []):
        shutil.copyfile(code / name, folder / name)
    n_params = _write_weights(folder, _param_specs(preset, vocab, family.llm), np.dtype(preset.dtype), seed)
    llm_note = f" The LLM's modeling code was copied from {code}." if code is not None else ""
    (folder / "README.md").write_text(
        f"# Tiny InternVL2-format model ({size}, {family.llm})\n\nRandom weights made by vlhub's "
        f"`make_tiny_model` (seed {seed}) for tests: {n_params:,} parameters, template `{family.chat.template}`. "
        f"It answers gibberish.{llm_note}\n", encoding="utf-8")


def _vocab(preset: Preset, ids: dict[str, int]) -> int:
    vocab = preset.vocab_size or int(math.ceil(ids["__len__"] / 64) * 64)
    if vocab < ids["__len__"]:
        raise ValueError(f"preset vocab {vocab} is smaller than the tokenizer ({ids['__len__']})")
    return vocab


def _generation_config(family: Family, ids: dict[str, int]) -> dict[str, Any]:
    bos = family.bos or family.pad  # Qwen: no BOS is added, but generation_config names <|endoftext|>
    return {"_from_model_config": True, "bos_token_id": ids[bos], "eos_token_id": [ids[t] for t in family.stop],
            "pad_token_id": ids[family.pad], "max_new_tokens": 64}


# -- config ------------------------------------------------------------------------------------
def _llm_config(p: Preset, family: Family, ids: dict[str, int], vocab: int) -> dict[str, Any]:
    """``llm_config`` (``text_config`` for ``-hf``) with the keys of the family's published checkpoints."""
    dims = {"vocab_size": vocab, "hidden_size": p.llm_hidden, "intermediate_size": p.llm_intermediate,
            "num_hidden_layers": p.llm_layers, "num_attention_heads": p.llm_heads,
            "num_key_value_heads": p.llm_kv_heads, "hidden_act": "silu", "max_position_embeddings": p.max_position}
    if family.llm == "phi3":
        return {
            "architectures": [family.arch], "model_type": family.model_type, **dims,
            "original_max_position_embeddings": p.max_position, "rms_norm_eps": 1e-5, "rope_theta": p.rope_theta,
            "rope_scaling": None, "initializer_range": 0.02, "tie_word_embeddings": False, "use_cache": True,
            "attention_dropout": 0.0, "resid_pdrop": 0.0, "embd_pdrop": 0.0, "sliding_window": None,
            "bos_token_id": ids["<s>"], "eos_token_id": ids[family.chat.sep], "pad_token_id": ids[family.pad],
            "torch_dtype": p.dtype,
        }
    if family.llm == "internlm2":  # InternVL2-2B's llm_config (internlm2-chat-1_8b)
        return {
            "architectures": [family.arch],
            "auto_map": {"AutoConfig": "configuration_internlm2.InternLM2Config",
                         "AutoModel": "modeling_internlm2.InternLM2ForCausalLM",
                         "AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM"},
            "model_type": family.model_type, **dims, "attn_implementation": "eager", "bias": False,
            "rms_norm_eps": 1e-5, "rope_theta": p.rope_theta, "rope_scaling": {"factor": 2.0, "type": "dynamic"},
            "initializer_range": 0.02, "pretraining_tp": 1, "tie_word_embeddings": False, "use_cache": True,
            "bos_token_id": ids["<s>"], "eos_token_id": ids["</s>"], "pad_token_id": ids[family.pad],
            "torch_dtype": p.dtype,
        }
    # Qwen2.5 (InternVL2.5-1B, InternVL3-1B) and Qwen3 (InternVL3.5-1B)
    config = {
        "architectures": [family.arch], "model_type": family.model_type, **dims,
        "max_window_layers": p.llm_layers, "rms_norm_eps": 1e-6, "rope_theta": p.rope_theta, "rope_scaling": None,
        "sliding_window": None, "use_sliding_window": False, "attention_dropout": 0.0, "initializer_range": 0.02,
        "tie_word_embeddings": False, "use_cache": True, "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids[family.eos], "torch_dtype": p.dtype,
    }
    if family.llm == "qwen3":
        config.update({"head_dim": p.llm_hidden // p.llm_heads, "attention_bias": False,
                       "layer_types": ["full_attention"] * p.llm_layers})
    return config


def _config(p: Preset, family: Family, ids: dict[str, int], vocab: int) -> dict[str, Any]:
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
        "model_type": "internvl_chat", "torch_dtype": p.dtype, "template": family.chat.template,
        "downsample_ratio": 0.5, "dynamic_image_size": True, "force_image_size": p.image_size,
        "min_dynamic_patch": 1, "max_dynamic_patch": p.max_dynamic_patch, "use_thumbnail": True,
        "ps_version": "v2", "select_layer": -1, "pad2square": False, "use_backbone_lora": 0,
        "use_llm_lora": 0, "tie_word_embeddings": False, "llm_config": _llm_config(p, family, ids, vocab),
        "vision_config": vision_config,
    }


# -- weights -----------------------------------------------------------------------------------
def _llm_specs(p: Preset, vocab: int, llm: str, prefix: str, head: str) -> Iterator[tuple[str, tuple[int, ...], str]]:
    """The LLM's tensors with the names of the family's own modeling code (``prefix``: its base model,
    ``head``: the output projection's full name)."""
    h, hd, inter = p.llm_hidden, p.llm_hidden // p.llm_heads, p.llm_intermediate
    q, kv = p.llm_heads * hd, p.llm_kv_heads * hd
    if llm == "internlm2":
        yield prefix + "tok_embeddings.weight", (vocab, h), "normal"
        for i in range(p.llm_layers):
            layer = f"{prefix}layers.{i}."
            yield layer + "attention.wqkv.weight", (q + 2 * kv, h), "normal"
            yield layer + "attention.wo.weight", (h, q), "normal"
            yield layer + "feed_forward.w1.weight", (inter, h), "normal"
            yield layer + "feed_forward.w3.weight", (inter, h), "normal"
            yield layer + "feed_forward.w2.weight", (h, inter), "normal"
            yield layer + "attention_norm.weight", (h,), "ones"
            yield layer + "ffn_norm.weight", (h,), "ones"
    else:
        yield prefix + "embed_tokens.weight", (vocab, h), "normal"
        for i in range(p.llm_layers):
            layer = f"{prefix}layers.{i}."
            if llm == "phi3":
                yield layer + "self_attn.qkv_proj.weight", (q + 2 * kv, h), "normal"
                yield layer + "self_attn.o_proj.weight", (h, q), "normal"
                yield layer + "mlp.gate_up_proj.weight", (2 * inter, h), "normal"
                yield layer + "mlp.down_proj.weight", (h, inter), "normal"
            else:  # qwen2 (q/k/v biases), qwen3 (no biases; RMSNorm on each head's q and k)
                for proj, rows in (("q_proj", q), ("k_proj", kv), ("v_proj", kv)):
                    yield f"{layer}self_attn.{proj}.weight", (rows, h), "normal"
                    if llm == "qwen2":
                        yield f"{layer}self_attn.{proj}.bias", (rows,), "zeros"
                yield layer + "self_attn.o_proj.weight", (h, q), "normal"
                if llm == "qwen3":
                    yield layer + "self_attn.q_norm.weight", (hd,), "ones"
                    yield layer + "self_attn.k_norm.weight", (hd,), "ones"
                yield layer + "mlp.gate_proj.weight", (inter, h), "normal"
                yield layer + "mlp.up_proj.weight", (inter, h), "normal"
                yield layer + "mlp.down_proj.weight", (h, inter), "normal"
            yield layer + "input_layernorm.weight", (h,), "ones"
            yield layer + "post_attention_layernorm.weight", (h,), "ones"
    yield prefix + "norm.weight", (h,), "ones"
    yield head, (vocab, h), "normal"


def _param_specs(p: Preset, vocab: int, llm: str = "phi3") -> Iterator[tuple[str, tuple[int, ...], str]]:
    """(name, shape, init) for every tensor of the remote-code layout, in the module order of the remote code."""
    d = p.vit_hidden
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
    head = "language_model.output.weight" if llm == "internlm2" else "language_model.lm_head.weight"
    yield from _llm_specs(p, vocab, llm, "language_model.model.", head)
    shuffled = 4 * d  # pixel shuffle by 0.5 folds 2x2 patches into the channels
    yield "mlp1.0.weight", (shuffled,), "ones"
    yield "mlp1.0.bias", (shuffled,), "zeros"
    yield "mlp1.1.weight", (p.llm_hidden, shuffled), "normal"
    yield "mlp1.1.bias", (p.llm_hidden,), "zeros"
    yield "mlp1.3.weight", (p.llm_hidden, p.llm_hidden), "normal"
    yield "mlp1.3.bias", (p.llm_hidden,), "zeros"


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



# -- transformers-native layout (-hf) -----------------------------------------------------------
def _hf_param_specs(p: Preset, vocab: int, llm: str) -> Iterator[tuple[str, tuple[int, ...], str]]:
    """(name, shape, init) of ``InternVLForConditionalGeneration``'s tensors, named as the published ``-hf``
    checkpoints store them (``vision_tower.*``, ``multi_modal_projector.*``, ``language_model.model.*``,
    ``language_model.lm_head.weight``; transformers maps them onto its modules when loading)."""
    d = p.vit_hidden
    side = p.image_size // p.patch_size
    v = "vision_tower."
    yield v + "embeddings.cls_token", (1, 1, d), "normal"
    yield v + "embeddings.patch_embeddings.projection.weight", (d, 3, p.patch_size, p.patch_size), "normal"
    yield v + "embeddings.patch_embeddings.projection.bias", (d,), "zeros"
    yield v + "embeddings.position_embeddings", (1, side * side + 1, d), "normal"
    for i in range(p.vit_layers):
        layer = f"{v}encoder.layer.{i}."
        for proj in ("q_proj", "k_proj", "v_proj"):
            yield f"{layer}attention.{proj}.weight", (d, d), "normal"
            yield f"{layer}attention.{proj}.bias", (d,), "zeros"
        yield layer + "attention.projection_layer.weight", (d, d), "normal"
        yield layer + "attention.projection_layer.bias", (d,), "zeros"
        yield layer + "mlp.fc1.weight", (p.vit_intermediate, d), "normal"
        yield layer + "mlp.fc1.bias", (p.vit_intermediate,), "zeros"
        yield layer + "mlp.fc2.weight", (d, p.vit_intermediate), "normal"
        yield layer + "mlp.fc2.bias", (d,), "zeros"
        for norm in ("layernorm_before", "layernorm_after"):
            yield f"{layer}{norm}.weight", (d,), "ones"
            yield f"{layer}{norm}.bias", (d,), "zeros"
        yield layer + "lambda_1", (d,), "layerscale"
        yield layer + "lambda_2", (d,), "layerscale"
    shuffled = 4 * d
    m = "multi_modal_projector."
    yield m + "layer_norm.weight", (shuffled,), "ones"
    yield m + "layer_norm.bias", (shuffled,), "zeros"
    yield m + "linear_1.weight", (p.llm_hidden, shuffled), "normal"
    yield m + "linear_1.bias", (p.llm_hidden,), "zeros"
    yield m + "linear_2.weight", (p.llm_hidden, p.llm_hidden), "normal"
    yield m + "linear_2.bias", (p.llm_hidden,), "zeros"
    yield from _llm_specs(p, vocab, llm, "language_model.model.", "language_model.lm_head.weight")


def _hf_config(p: Preset, family: Family, ids: dict[str, int], vocab: int) -> dict[str, Any]:
    """config.json of a transformers-native InternVL checkpoint (``InternVLConfig``: ``text_config`` +
    ``vision_config`` (``InternVLVisionConfig``) + the projector and image-token settings)."""
    vision_config = {
        "architectures": ["InternVLVisionModel"], "model_type": "internvl_vision", "attention_bias": True,
        "attention_dropout": 0.0, "hidden_act": "gelu", "hidden_dropout_prob": 0.0, "hidden_size": p.vit_hidden,
        "image_size": [p.image_size, p.image_size], "initializer_range": 0.02,
        "intermediate_size": p.vit_intermediate, "layer_norm_eps": 1e-6, "layer_scale_init_value": 0.1,
        "norm_type": p.vit_norm, "num_attention_heads": p.vit_heads, "num_channels": 3,
        "num_hidden_layers": p.vit_layers, "patch_size": [p.patch_size, p.patch_size], "projection_dropout": 0.0,
        "use_absolute_position_embeddings": True, "use_mask_token": False, "use_mean_pooling": True,
        "use_qk_norm": False, "torch_dtype": p.dtype,
    }
    return {
        "architectures": ["InternVLForConditionalGeneration"], "model_type": "internvl",
        "downsample_ratio": 0.5, "image_seq_length": _image_seq_length(p), "image_token_id": ids["<IMG_CONTEXT>"],
        "projector_hidden_act": "gelu", "vision_feature_layer": -1, "vision_feature_select_strategy": "default",
        "tie_word_embeddings": False, "torch_dtype": p.dtype,
        "text_config": _llm_config(p, family, ids, vocab), "vision_config": vision_config,
    }


def _image_seq_length(p: Preset) -> int:
    return (p.image_size // p.patch_size) ** 2 // 4  # pixel shuffle by 0.5


def _build_hf(folder: Path, family: Family, preset: Preset, size: str, seed: int) -> None:
    jinja = hf_chat_template(think=family.chat.think)
    ids = _write_tokenizer(folder, family, jinja, hf=True)
    vocab = _vocab(preset, ids)
    _write_json(folder / "config.json", _hf_config(preset, family, ids, vocab))
    _write_json(folder / "generation_config.json", _generation_config(family, ids))
    (folder / "chat_template.jinja").write_text(jinja, encoding="utf-8")
    _write_json(folder / "preprocessor_config.json", {
        "crop_to_patches": False, "data_format": "channels_first", "default_to_square": True,
        "do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
        "image_mean": [0.485, 0.456, 0.406], "image_processor_type": "GotOcr2ImageProcessor",
        "image_std": [0.229, 0.224, 0.225], "max_patches": preset.max_dynamic_patch, "min_patches": 1,
        "processor_class": "InternVLProcessor", "resample": 3, "rescale_factor": 1 / 255,
        "size": {"height": preset.image_size, "width": preset.image_size}})
    _write_json(folder / "processor_config.json", {"image_seq_length": _image_seq_length(preset),
                                                    "processor_class": "InternVLProcessor"})
    n_params = _write_weights(folder, _hf_param_specs(preset, vocab, family.llm), np.dtype(preset.dtype), seed)
    (folder / "README.md").write_text(
        f"# Tiny transformers-native InternVL model ({size}, {family.llm}, -hf)\n\nRandom weights made by vlhub's "
        f"`make_tiny_model` (seed {seed}) for tests: {n_params:,} parameters, laid out like "
        f"{', '.join(family.hf_models)} (InternVLForConditionalGeneration). It answers gibberish.\n",
        encoding="utf-8")


# -- tokenizer ---------------------------------------------------------------------------------
def _jinja_str(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


#: Qwen3's <think> handling of an assistant message ``m`` whose rendered text is ``c``: history turns (before
#: the last user message) keep only the answer; later turns show ``reasoning_content`` (or the <think> block
#: of the text) as ``<think>\n...\n</think>\n\n`` before the answer. Sets ``c`` to the text to write.
_THINK = (
    "{%- if m['reasoning_content'] is string -%}{%- set reasoning = m['reasoning_content'] -%}"
    "{%- elif '</think>' in c -%}"
    "{%- set reasoning = c.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') -%}"
    "{%- set c = c.split('</think>')[-1].lstrip('\\n') -%}"
    "{%- else -%}{%- set reasoning = '' -%}{%- endif -%}"
    "{%- if loop.index0 > ns.last_user and reasoning -%}"
    "{%- set c = '<think>\\n' + reasoning.strip('\\n') + '\\n</think>\\n\\n' + c.lstrip('\\n') -%}"
    "{%- endif -%}"
)
_LAST_USER = ("{%- set ns = namespace(last_user=-1) -%}"
              "{%- for m in rest -%}{%- if m['role'] == 'user' -%}{%- set ns.last_user = loop.index0 -%}{%- endif -%}"
              "{%- endfor -%}")


def chat_template(fmt: ChatFormat, system: str | None = None, *, bos: bool = True) -> str:
    """A Jinja chat template that renders exactly what ``InternVLChatModel.chat`` builds (with ``fmt.think``,
    also Qwen3's <think> handling of assistant messages); ``bos``: start with the tokenizer's BOS."""
    system = fmt.system if system is None else system
    s, u, a, sep = (_jinja_str(x) for x in (fmt.system_start, fmt.user, fmt.assistant, fmt.sep))
    if fmt.think:
        assistant = (f"{{%- elif m['role'] == 'assistant' -%}}{{%- set c = render(m['content']) -%}}{_THINK}"
                     f"{{{{ {a} }}}}{{{{ c }}}}{{{{ {sep} }}}}")
    else:
        assistant = f"{{%- elif m['role'] == 'assistant' -%}}{{{{ {a} }}}}{{{{ render(m['content']) }}}}{{{{ {sep} }}}}"
    return (
        "{%- macro render(c) -%}{%- if c is string -%}{{ c }}{%- else -%}{%- for p in c -%}"
        "{%- if p['type'] == 'text' -%}{{ p['text'] }}{%- elif p['type'] in ['image', 'image_url'] -%}"
        "{{ '<image>\\n' }}{%- endif -%}{%- endfor -%}{%- endif -%}{%- endmacro -%}"
        + ("{{- bos_token -}}" if bos else "")
        + "{%- if messages and messages[0]['role'] == 'system' -%}"
        f"{{{{ {s} }}}}{{{{ render(messages[0]['content']) }}}}{{{{ {sep} }}}}"
        "{%- set rest = messages[1:] -%}"
        f"{{%- else -%}}{{{{ {s} }}}}{{{{ {_jinja_str(system)} }}}}{{{{ {sep} }}}}"
        "{%- set rest = messages -%}{%- endif -%}"
        + (_LAST_USER if fmt.think else "")
        + "{%- for m in rest -%}"
        f"{{%- if m['role'] == 'user' -%}}{{{{ {u} }}}}{{{{ render(m['content']) }}}}{{{{ {sep} }}}}"
        + assistant
        + "{%- endif -%}{%- endfor -%}"
        f"{{%- if add_generation_prompt -%}}{{{{ {a} }}}}{{%- endif -%}}"
    )


def hf_chat_template(*, think: bool = False) -> str:
    """The chat template of the transformers-native (``-hf``) checkpoints: ChatML without a default system
    prompt, ``<IMG_CONTEXT>\\n`` per image and ``<video>\\n`` per video (the processor expands them);
    ``think``: Qwen3's <think> handling of assistant messages."""
    content = ("{%- macro render(c) -%}{%- if c is string -%}{{ c }}{%- else -%}{%- for p in c -%}"
               "{%- if p['type'] == 'image' -%}{{ '<IMG_CONTEXT>\\n' }}{%- elif p['type'] == 'video' -%}"
               "{{ '<video>\\n' }}{%- elif p['type'] == 'text' -%}{{ p['text'] }}{%- endif -%}"
               "{%- endfor -%}{%- endif -%}{%- endmacro -%}")
    turn = ("{%- set c = render(m['content']) -%}"
            + (f"{{%- if m['role'] == 'assistant' -%}}{_THINK}{{%- endif -%}}" if think else "")
            + "{{ '<|im_start|>' + m['role'] + '\\n' + c + '<|im_end|>\\n' }}")
    return (content + "{%- set rest = messages -%}" + (_LAST_USER if think else "")
            + "{%- for m in rest -%}" + turn + "{%- endfor -%}"
            + "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}")


def _write_tokenizer(folder: Path, family: Family, jinja: str, hf: bool = False) -> dict[str, int]:
    """Train a small byte-level BPE and write tokenizer.json + its configs; return token ids."""
    from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers,
                            processors, trainers)

    tok = Tokenizer(models.BPE())
    if family.tokenizer_class == "Qwen2Tokenizer":  # Qwen's own normalizer and pre-tokenizer (transformers 5 sets them)
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1000, min_frequency=1, show_progress=False,
                                  special_tokens=list(family.base_tokens),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS.splitlines() * 2, trainer=trainer)
    specials = [*family.special_tokens, *IMAGE_TOKENS, *((VIDEO_TOKEN,) if hf else ())]
    tok.add_special_tokens(specials)
    if family.plain_tokens:
        tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in family.plain_tokens])
    if family.bos is not None:
        bos = tok.token_to_id(family.bos)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{family.bos} $A", pair=f"{family.bos} $A {family.bos} $B", special_tokens=[(family.bos, bos)])
    tok.save(str(folder / "tokenizer.json"))
    listed = [*family.base_tokens, *specials, *family.plain_tokens]
    ids = {t: tok.token_to_id(t) for t in listed}
    ids["__len__"] = tok.get_vocab_size(with_added_tokens=True)
    added = {str(ids[t]): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                           "single_word": False, "special": t not in family.plain_tokens} for t in listed}
    named = {"bos_token": family.bos, "eos_token": family.eos, "unk_token": family.unk, "pad_token": family.pad}
    special_map = {**{k: v for k, v in named.items() if v is not None},
                   "additional_special_tokens": [t for t in specials if t not in (family.eos, family.pad)]}
    _write_json(folder / "special_tokens_map.json", special_map)
    config: dict[str, Any] = {"tokenizer_class": family.tokenizer_class, **named, **special_map,
                              "added_tokens_decoder": added, "model_max_length": 32768, "padding_side": "right",
                              "clean_up_tokenization_spaces": False}
    if hf:  # what InternVLProcessor reads from the tokenizer
        config["extra_special_tokens"] = {"context_image_token": "<IMG_CONTEXT>", "end_image_token": "</img>",
                                          "start_image_token": "<img>", "video_token": VIDEO_TOKEN}
    config["chat_template"] = jinja
    _write_json(folder / "tokenizer_config.json", config)
    return ids


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
