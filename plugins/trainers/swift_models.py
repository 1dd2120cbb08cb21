"""Which InternVL model folders the ``swift`` trainer trains, and how ms-swift names them.

ms-swift 4.6 registers InternVL under two model types (``swift/model/models/internlm.py``) and picks
the chat template per checkpoint group (``swift/template/templates/internvl.py``); a local folder is
matched here from its ``config.json``, the same keys the published checkpoints carry:

============================================ ================ ============== =================================
``config.json``                              model type       template       models
============================================ ================ ============== =================================
``template: internlm2-chat``, InternLM2 LLM  ``internvl_chat`` ``internvl2``        InternVL2-1B/2B/8B/26B
``template: phi3-chat``, Phi-3 LLM           ``internvl_chat`` ``internvl2_phi3``   InternVL2-4B
``template: internvl2_5``, Qwen2 LLM         ``internvl_chat`` ``internvl2_5``      InternVL2.5-1B/4B, InternVL3
``template: internvl2_5``, InternLM2 LLM     ``internvl_chat`` ``internvl2_5``      InternVL2.5-2B/8B/26B
``template: internvl2_5``, Qwen3 LLM         ``internvl_chat`` ``internvl3_5``      InternVL3.5
``model_type: internvl`` (transformers)      ``internvl``      ``internvl_hf``      InternVL3-*-hf, InternVL3.5-*-HF
============================================ ================ ============== =================================

Anything else (InternVL-Chat-V1-5, the Hermes-2 / Llama-3 InternVL2 models, GPT-OSS) is refused with
what was found, so a run never starts with a template the model was not trained with.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from vlhub.core import messages
from vlhub.core.errors import BadInput

#: (config.json ``template``, LLM architecture) -> ms-swift template, for remote-code InternVL folders.
REMOTE_CODE: dict[tuple[str, str], str] = {
    ("internlm2-chat", "InternLM2ForCausalLM"): "internvl2",
    ("phi3-chat", "Phi3ForCausalLM"): "internvl2_phi3",
    ("internvl2_5", "Qwen2ForCausalLM"): "internvl2_5",
    ("internvl2_5", "InternLM2ForCausalLM"): "internvl2_5",
    ("internvl2_5", "Qwen3ForCausalLM"): "internvl3_5",
}
#: Text-config architectures of the transformers-native (``-hf``) InternVL folders ms-swift trains.
NATIVE_LLMS = ("Qwen2ForCausalLM", "Qwen3ForCausalLM")
TEMPLATES = tuple(sorted({*REMOTE_CODE.values(), "internvl_hf"}))
#: What ``vlhub train --help`` and the docs say this trainer trains.
TRAINS = ("InternVL2 (InternLM2, Phi-3 LLMs), InternVL2.5 / InternVL3 (Qwen2.5, InternLM2.5), InternVL3.5 (Qwen3), "
          "and the transformers-native InternVL3 / InternVL3.5 -hf folders")

messages.register(
    "swift.not_internvl",
    ("--model {path}: {what}", "give --model an InternVL2/2.5/3/3.5 folder (config.json, tokenizer, weights)"),
    ("--model {path}：{what}", "请为 --model 指定 InternVL2/2.5/3/3.5 模型文件夹（含 config.json、分词器和权重）"))
messages.register(
    "swift.unsupported",
    ("--model {path}: ms-swift has no InternVL template for template={template!r} with a {arch} LLM",
     "use an InternVL2, InternVL2.5, InternVL3 or InternVL3.5 model (`vlhub train --help` lists them)"),
    ("--model {path}：ms-swift 没有适用于 template={template!r}、LLM 为 {arch} 的 InternVL 模板",
     "请使用 InternVL2、InternVL2.5、InternVL3 或 InternVL3.5 模型（`vlhub train --help` 列出了它们）"))


@dataclass(frozen=True)
class SwiftModel:
    """A model folder as ms-swift will load it."""

    path: Path
    model_type: str          # ms-swift's ``--model_type``
    template: str            # ms-swift's ``--template``
    llm: str                 # the LLM's architecture
    image_size: int          # pixels of one tile (``INPUT_SIZE``)
    max_tiles: int           # ``max_dynamic_patch`` (``MAX_NUM``)
    tile_tokens: int         # image tokens per tile
    native: bool             # transformers-native layout (``-hf``)

    @property
    def max_image_tokens(self) -> int:
        """Image tokens of one image at most: ``max_tiles`` tiles and the thumbnail."""
        return self.tile_tokens * (self.max_tiles + 1)


def _config(model: Path) -> dict[str, Any]:
    path = model / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput("swift.not_internvl", path=model, what="no config.json") from None
    except (OSError, ValueError) as exc:
        raise BadInput("swift.not_internvl", path=model, what=f"config.json is not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise BadInput("swift.not_internvl", path=model, what="config.json is not a JSON object")
    return data


def identify(model: Path) -> SwiftModel:
    """ms-swift's model type, template and image geometry for an InternVL folder, from its ``config.json``.

    Args:
        model: the model folder.
    Returns:
        :class:`SwiftModel`.
    Raises:
        BadInput: no folder or config, not an InternVL config, or an InternVL variant ms-swift 4.6 has no
            template for (the config's ``template`` and LLM are named).
    """
    model = Path(model).expanduser().resolve()
    if not model.is_dir():
        raise BadInput("swift.not_internvl", path=model, what="no such folder")
    config = _config(model)
    if config.get("model_type") == "internvl" and isinstance(config.get("text_config"), Mapping):
        text, vision = config["text_config"], config.get("vision_config") or {}
        arch = (text.get("architectures") or [""])[0] or {"qwen2": "Qwen2ForCausalLM",
                                                           "qwen3": "Qwen3ForCausalLM"}.get(text.get("model_type"), "?")
        if arch not in NATIVE_LLMS:
            raise BadInput("swift.unsupported", path=model, template="internvl (-hf)", arch=arch)
        size = vision.get("image_size") or [448, 448]
        size = int(size[0] if isinstance(size, list) else size)
        patch = vision.get("patch_size") or [14, 14]
        patch = int(patch[0] if isinstance(patch, list) else patch)
        ratio = float(config.get("downsample_ratio") or 0.5)
        return SwiftModel(model, "internvl", "internvl_hf", arch, size, 12, int((size // patch) ** 2 * ratio ** 2),
                          True)
    llm, vision = config.get("llm_config"), config.get("vision_config")
    if not isinstance(llm, Mapping) or not isinstance(vision, Mapping):
        raise BadInput("swift.not_internvl", path=model,
                       what="config.json has no llm_config/vision_config (not an InternVL model)")
    arch = (llm.get("architectures") or ["?"])[0]
    declared = str(config.get("template") or "")
    template = REMOTE_CODE.get((declared, arch))
    if template is None:
        raise BadInput("swift.unsupported", path=model, template=declared, arch=arch)
    size = int(config.get("force_image_size") or vision.get("image_size") or 448)
    patch = int(vision.get("patch_size") or 14)
    ratio = float(config.get("downsample_ratio") or 0.5)
    return SwiftModel(model, "internvl_chat", template, arch, size, int(config.get("max_dynamic_patch") or 12),
                      int((size // patch) ** 2 * ratio ** 2), False)


def accepts(model: Path) -> bool:
    """Whether the ``swift`` trainer trains this model folder (:func:`identify` succeeds); never raises."""
    try:
        identify(model)
    except (BadInput, OSError):
        return False
    return True
