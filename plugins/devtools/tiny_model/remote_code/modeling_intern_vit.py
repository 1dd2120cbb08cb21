"""InternViT vision tower (vlhub's compact re-implementation; weight names match InternVL2)."""
from __future__ import annotations

from typing import Optional, Union

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn
from transformers.activations import ACT2FN
from transformers.modeling_outputs import BaseModelOutput, BaseModelOutputWithPooling
from transformers.modeling_utils import PreTrainedModel

from .configuration_intern_vit import InternVisionConfig


class InternRMSNorm(nn.Module):
    """RMSNorm computed in float32."""

    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * x.to(dtype)


def _norm(config: InternVisionConfig, dim: int) -> nn.Module:
    if config.norm_type == "rms_norm":
        return InternRMSNorm(dim, eps=config.layer_norm_eps)
    return nn.LayerNorm(dim, eps=config.layer_norm_eps)


class InternVisionEmbeddings(nn.Module):
    """Patch embedding + class token + (interpolated) position embedding."""

    def __init__(self, config: InternVisionConfig) -> None:
        super().__init__()
        self.embed_dim = config.hidden_size
        self.image_size = config.image_size
        self.patch_size = config.patch_size
        self.class_embedding = nn.Parameter(torch.randn(1, 1, self.embed_dim))
        self.patch_embedding = nn.Conv2d(config.num_channels, self.embed_dim, kernel_size=self.patch_size,
                                         stride=self.patch_size)
        self.num_patches = (self.image_size // self.patch_size) ** 2
        self.position_embedding = nn.Parameter(torch.randn(1, self.num_patches + 1, self.embed_dim))

    def _pos_embed(self, pos: torch.Tensor, h: int, w: int) -> torch.Tensor:
        side = self.image_size // self.patch_size
        if (h, w) == (side, side):
            return pos
        grid = pos.float().reshape(1, side, side, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
        return grid.reshape(1, -1, h * w).permute(0, 2, 1).to(pos.dtype)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        dtype = self.patch_embedding.weight.dtype
        patches = self.patch_embedding(pixel_values.to(dtype))
        b, _, h, w = patches.shape
        patches = patches.flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(b, 1, -1).to(dtype)
        pos = torch.cat([self.position_embedding[:, :1], self._pos_embed(self.position_embedding[:, 1:], h, w)], 1)
        return torch.cat([cls, patches], dim=1) + pos.to(dtype)


class InternAttention(nn.Module):
    """Bidirectional multi-head attention with a fused ``qkv`` projection (SDPA)."""

    def __init__(self, config: InternVisionConfig) -> None:
        super().__init__()
        self.embed_dim = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = self.embed_dim // self.num_heads
        self.qkv = nn.Linear(self.embed_dim, 3 * self.embed_dim, bias=config.qkv_bias)
        self.proj = nn.Linear(self.embed_dim, self.embed_dim)
        self.dropout = config.attention_dropout
        self.qk_normalization = config.qk_normalization
        if self.qk_normalization:
            self.q_norm = InternRMSNorm(self.embed_dim, eps=config.layer_norm_eps)
            self.k_norm = InternRMSNorm(self.embed_dim, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, c).unbind(2)
        if self.qk_normalization:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = (t.reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class InternMLP(nn.Module):
    """fc1 → activation → fc2."""

    def __init__(self, config: InternVisionConfig) -> None:
        super().__init__()
        self.act = ACT2FN[config.hidden_act]
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class InternVisionEncoderLayer(nn.Module):
    """Pre-norm block with LayerScale (``ls1``/``ls2``)."""

    def __init__(self, config: InternVisionConfig) -> None:
        super().__init__()
        dim = config.hidden_size
        self.attn = InternAttention(config)
        self.mlp = InternMLP(config)
        self.norm1 = _norm(config, dim)
        self.norm2 = _norm(config, dim)
        self.ls1 = nn.Parameter(config.initializer_factor * torch.ones(dim))
        self.ls2 = nn.Parameter(config.initializer_factor * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x)) * self.ls1
        return x + self.mlp(self.norm2(x)) * self.ls2


class InternVisionEncoder(nn.Module):
    """A stack of encoder layers (activation checkpointing while training when enabled)."""

    def __init__(self, config: InternVisionConfig) -> None:
        super().__init__()
        self.config = config
        self.layers = nn.ModuleList([InternVisionEncoderLayer(config) for _ in range(config.num_hidden_layers)])
        self.gradient_checkpointing = False

    def forward(self, inputs_embeds: torch.Tensor, output_hidden_states: bool = False) -> BaseModelOutput:
        states: tuple = ()
        h = inputs_embeds
        for layer in self.layers:
            if output_hidden_states:
                states += (h,)
            if self.gradient_checkpointing and self.training:
                h = torch.utils.checkpoint.checkpoint(layer, h, use_reentrant=False)
            else:
                h = layer(h)
        if output_hidden_states:
            states += (h,)
        return BaseModelOutput(last_hidden_state=h, hidden_states=states or None)


class InternVisionModel(PreTrainedModel):
    """The InternViT tower: ``embeddings`` + ``encoder``."""

    main_input_name = "pixel_values"
    config_class = InternVisionConfig
    base_model_prefix = "vision_model"
    _no_split_modules = ["InternVisionEncoderLayer"]
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    def __init__(self, config: InternVisionConfig) -> None:
        super().__init__(config)
        self.embeddings = InternVisionEmbeddings(config)
        self.encoder = InternVisionEncoder(config)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, InternRMSNorm):
            nn.init.ones_(module.weight)
        elif isinstance(module, InternVisionEmbeddings):
            nn.init.normal_(module.class_embedding, std=std)
            nn.init.normal_(module.position_embedding, std=std)
        elif isinstance(module, InternVisionEncoderLayer):
            nn.init.constant_(module.ls1, self.config.initializer_factor)
            nn.init.constant_(module.ls2, self.config.initializer_factor)

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings

    def forward(
        self,
        pixel_values: Optional[torch.FloatTensor] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
        pixel_embeds: Optional[torch.FloatTensor] = None,
    ) -> Union[tuple, BaseModelOutputWithPooling]:
        if pixel_embeds is None:
            if pixel_values is None or pixel_values.ndim != 4:
                raise ValueError("pixel_values must be a (tiles, 3, H, W) tensor")
            pixel_embeds = self.embeddings(pixel_values)
        out = self.encoder(pixel_embeds, output_hidden_states=bool(output_hidden_states))
        last = out.last_hidden_state
        if return_dict is False:
            return (last, last[:, 0]) + ((out.hidden_states,) if out.hidden_states else ())
        return BaseModelOutputWithPooling(last_hidden_state=last, pooler_output=last[:, 0],
                                          hidden_states=out.hidden_states)
