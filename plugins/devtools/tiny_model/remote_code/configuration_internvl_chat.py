"""InternVL chat configuration (vlhub's compact re-implementation of the InternVL2 remote-code format)."""
from __future__ import annotations

import copy
from typing import Any

import transformers
from transformers import LlamaConfig, Phi3Config, Qwen2Config
from transformers.configuration_utils import PretrainedConfig

from .configuration_intern_vit import InternVisionConfig

#: LLM architectures this remote code can build, with their config classes.
LLM_CONFIGS: dict[str, type[PretrainedConfig]] = {
    "Phi3ForCausalLM": Phi3Config,
    "LlamaForCausalLM": LlamaConfig,
    "Qwen2ForCausalLM": Qwen2Config,
}
try:  # Qwen3 (InternVL3.5) is built into transformers >= 4.51 only
    from transformers import Qwen3Config
except ImportError:
    Qwen3Config = None
else:
    LLM_CONFIGS["Qwen3ForCausalLM"] = Qwen3Config
# An LLM that is remote code itself (InternLM2, as in InternVL2-2B) is imported from its own file in the
# model folder; vlhub's tiny-model builder writes that import in place of the next line.
# vlhub: remote LLM config


class InternVLChatConfig(PretrainedConfig):
    """Top-level config: ``vision_config`` + ``llm_config`` + the image-tiling settings."""

    model_type = "internvl_chat"
    is_composition = True

    def __init__(
        self,
        vision_config: dict | None = None,
        llm_config: dict | None = None,
        use_backbone_lora: int = 0,
        use_llm_lora: int = 0,
        pad2square: bool = False,
        select_layer: int = -1,
        force_image_size: int | None = None,
        downsample_ratio: float = 0.5,
        template: str | None = None,
        dynamic_image_size: bool = False,
        use_thumbnail: bool = False,
        ps_version: str = "v1",
        min_dynamic_patch: int = 1,
        max_dynamic_patch: int = 6,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        vision_config = vision_config or {}
        llm_config = llm_config or {"architectures": ["Phi3ForCausalLM"]}
        if isinstance(vision_config, PretrainedConfig):
            vision_config = vision_config.to_dict()
        if isinstance(llm_config, PretrainedConfig):
            llm_config = llm_config.to_dict()
        arch = (llm_config.get("architectures") or ["Phi3ForCausalLM"])[0]
        if arch == "Qwen3ForCausalLM" and Qwen3Config is None:
            raise ValueError(f"Qwen3ForCausalLM needs transformers>=4.51 (this is {transformers.__version__})")
        if arch not in LLM_CONFIGS:
            raise ValueError(f"Unsupported LLM architecture {arch!r}; supported: {sorted(LLM_CONFIGS)}")
        self.vision_config = InternVisionConfig(**vision_config)
        self.llm_config = LLM_CONFIGS[arch](**llm_config)
        self.use_backbone_lora = use_backbone_lora
        self.use_llm_lora = use_llm_lora
        self.pad2square = pad2square
        self.select_layer = select_layer
        self.force_image_size = force_image_size
        self.downsample_ratio = downsample_ratio
        self.template = template
        self.dynamic_image_size = dynamic_image_size
        self.use_thumbnail = use_thumbnail
        self.ps_version = ps_version
        self.min_dynamic_patch = min_dynamic_patch
        self.max_dynamic_patch = max_dynamic_patch

    def to_dict(self) -> dict[str, Any]:
        """Serialize, turning the two sub-configs into plain dicts."""
        output = super().to_dict()
        output["vision_config"] = self.vision_config.to_dict()
        output["llm_config"] = self.llm_config.to_dict()
        output["model_type"] = self.model_type
        return copy.deepcopy(output)
