"""InternVL chat model (vlhub's compact re-implementation of the InternVL2 remote-code format).

ViT → pixel shuffle (``downsample_ratio``) → ``mlp1`` projector → the LLM, whose ``<IMG_CONTEXT>``
token embeddings are replaced by the image features. Works on transformers 4.48 and 5.x, without
flash-attn (SDPA), and without torchvision (image preprocessing is the caller's job, as upstream).
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import warnings
from typing import Any, Iterator, Optional, Union

import torch
from torch import nn
from torch.nn import CrossEntropyLoss
from transformers import GenerationConfig, LlamaForCausalLM, Phi3ForCausalLM, Qwen2ForCausalLM
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.modeling_utils import PreTrainedModel

from .configuration_internvl_chat import InternVLChatConfig
from .conversation import get_conv_template
from .modeling_intern_vit import InternVisionModel

IMG_START_TOKEN = "<img>"
IMG_END_TOKEN = "</img>"
IMG_CONTEXT_TOKEN = "<IMG_CONTEXT>"
LLM_CLASSES: dict[str, type[PreTrainedModel]] = {
    "Phi3ForCausalLM": Phi3ForCausalLM,
    "LlamaForCausalLM": LlamaForCausalLM,
    "Qwen2ForCausalLM": Qwen2ForCausalLM,
}
try:  # Qwen3 (InternVL3.5) is built into transformers >= 4.51 only
    from transformers import Qwen3ForCausalLM
except ImportError:
    Qwen3ForCausalLM = None
else:
    LLM_CLASSES["Qwen3ForCausalLM"] = Qwen3ForCausalLM
# An LLM that is remote code itself (InternLM2, as in InternVL2-2B) is imported from its own file in the
# model folder; vlhub's tiny-model builder writes that import in place of the next line.
# vlhub: remote LLM model
#: LLMs that are remote code themselves. They read ``config.attn_implementation`` (flash_attention_2 or eager)
#: instead of transformers' ``_attn_implementation``, and their ``prepare_inputs_for_generation`` passes
#: ``inputs_embeds`` only while ``past_key_values is None``, while transformers' ``generate`` (4.48 here)
#: hands over an empty cache object on the first step.
REMOTE_LLMS = ("InternLM2ForCausalLM",)


@contextlib.contextmanager
def _embeds_on_first_step(llm: nn.Module) -> Iterator[None]:
    """Make a remote-code LLM start generation from ``inputs_embeds``: on the first step (empty cache) its
    ``prepare_inputs_for_generation`` sees ``past_key_values=None``, and the cache is handed back to it."""
    original = llm.prepare_inputs_for_generation
    patched_before = "prepare_inputs_for_generation" in vars(llm)

    @functools.wraps(original)
    def prepare(*args: Any, **kwargs: Any) -> dict:
        cache = kwargs.get("past_key_values")
        if (kwargs.get("inputs_embeds") is not None and cache is not None and hasattr(cache, "get_seq_length")
                and cache.get_seq_length() == 0):
            inputs = original(*args, **{**kwargs, "past_key_values": None})
            inputs["past_key_values"] = cache
            return inputs
        return original(*args, **kwargs)

    llm.prepare_inputs_for_generation = prepare
    try:
        yield
    finally:
        if patched_before:
            llm.prepare_inputs_for_generation = original
        else:
            del llm.prepare_inputs_for_generation


def _flash_attn_usable() -> bool:
    return importlib.util.find_spec("flash_attn") is not None and torch.cuda.is_available()


class InternVLChatModel(PreTrainedModel):
    """Vision tower + projector + causal LLM, with InternVL's ``chat``/``batch_chat``/``generate``."""

    config_class = InternVLChatConfig
    main_input_name = "pixel_values"
    base_model_prefix = ""
    _no_split_modules = ["InternVisionModel", "LlamaDecoderLayer", "Phi3DecoderLayer", "Qwen2DecoderLayer",
                         "Qwen3DecoderLayer", "InternLM2DecoderLayer"]
    _supports_flash_attn_2 = True
    _supports_flash_attn = True
    _supports_sdpa = True
    supports_gradient_checkpointing = True

    def __init__(self, config: InternVLChatConfig, vision_model: Optional[nn.Module] = None,
                 language_model: Optional[nn.Module] = None, use_flash_attn: bool = True) -> None:
        super().__init__(config)
        image_size = config.force_image_size or config.vision_config.image_size
        self.patch_size = config.vision_config.patch_size
        self.select_layer = config.select_layer
        self.template = config.template
        self.downsample_ratio = config.downsample_ratio
        self.ps_version = config.ps_version
        self.num_image_token = int((image_size // self.patch_size) ** 2 * (config.downsample_ratio ** 2))
        self.llm_arch_name = config.llm_config.architectures[0]

        # xtuner asks for flash_attention_2; fall back to SDPA where flash-attn cannot run.
        llm_config = config.llm_config
        impl = getattr(llm_config, "_attn_implementation_internal", None)
        if impl is None:
            top = getattr(config, "_attn_implementation_internal", None)
            impl = top if top in ("eager", "sdpa", "flash_attention_2") else "sdpa"
        if impl == "flash_attention_2" and not (use_flash_attn and _flash_attn_usable()):
            impl = "sdpa"
        if self.llm_arch_name in REMOTE_LLMS:  # InternVL2-2B: flash-attn when usable, else eager
            impl = "flash_attention_2" if impl == "flash_attention_2" else "eager"
            llm_config.attn_implementation = impl
        llm_config._attn_implementation = impl
        if hasattr(llm_config, "_attn_implementation_autoset"):
            llm_config._attn_implementation_autoset = False
        config.vision_config.use_flash_attn = False

        self.vision_model = vision_model if vision_model is not None else InternVisionModel(config.vision_config)
        if language_model is not None:
            self.language_model = language_model
        else:
            if self.llm_arch_name not in LLM_CLASSES:
                raise NotImplementedError(f"{self.llm_arch_name} is not supported by this remote code")
            self.language_model = LLM_CLASSES[self.llm_arch_name](llm_config)

        vit_hidden = config.vision_config.hidden_size * int(1 / self.downsample_ratio) ** 2
        llm_hidden = llm_config.hidden_size
        self.mlp1 = nn.Sequential(nn.LayerNorm(vit_hidden), nn.Linear(vit_hidden, llm_hidden), nn.GELU(),
                                  nn.Linear(llm_hidden, llm_hidden))
        self.img_context_token_id: Optional[int] = None
        self.conv_template = get_conv_template(self.template)
        self.system_message = self.conv_template.system_message
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    # -- plumbing the LLM expects (no get_output_embeddings: the top level must never tie weights) --
    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    # -- vision ---------------------------------------------------------------------------------
    def pixel_shuffle(self, x: torch.Tensor, scale_factor: float = 0.5) -> torch.Tensor:
        """(N, W, H, C) → (N, W*s, H*s, C/s²): merge each 2×2 neighbourhood into the channels."""
        n, w, h, c = x.size()
        x = x.view(n, w, int(h * scale_factor), int(c / scale_factor)).permute(0, 2, 1, 3).contiguous()
        x = x.view(n, int(h * scale_factor), int(w * scale_factor), int(c / (scale_factor * scale_factor)))
        if self.ps_version == "v1":
            warnings.warn("ps_version 'v1' leaves height and width swapped (a transposed image)")
            return x
        return x.permute(0, 2, 1, 3).contiguous()

    def extract_feature(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Image tiles (N, 3, H, W) → LLM-space features (N, num_image_token, llm_hidden)."""
        pixel_values = pixel_values.to(self.vision_model.dtype)
        if self.select_layer == -1:
            vit = self.vision_model(pixel_values=pixel_values, output_hidden_states=False,
                                    return_dict=True).last_hidden_state
        else:
            vit = self.vision_model(pixel_values=pixel_values, output_hidden_states=True,
                                    return_dict=True).hidden_states[self.select_layer]
        vit = vit[:, 1:, :]
        side = int(vit.shape[1] ** 0.5)
        vit = self.pixel_shuffle(vit.reshape(vit.shape[0], side, side, -1), scale_factor=self.downsample_ratio)
        return self.mlp1(vit.reshape(vit.shape[0], -1, vit.shape[-1]))

    def _merge(self, input_ids: torch.Tensor, embeds: torch.Tensor, vit_embeds: torch.Tensor) -> torch.Tensor:
        b, n, c = embeds.shape
        embeds = embeds.reshape(b * n, c)
        selected = input_ids.reshape(b * n) == self.img_context_token_id
        embeds[selected] = embeds[selected] * 0.0 + vit_embeds.reshape(-1, c).to(embeds.dtype)
        return embeds.reshape(b, n, c)

    # -- training forward (the signature xtuner and InternVL's trainer call) -------------------
    def forward(
        self,
        pixel_values: torch.FloatTensor,
        input_ids: Optional[torch.LongTensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.LongTensor] = None,
        image_flags: Optional[torch.LongTensor] = None,
        past_key_values: Optional[Any] = None,
        labels: Optional[torch.LongTensor] = None,
        use_cache: Optional[bool] = None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
        **kwargs: Any,
    ) -> Union[tuple, CausalLMOutputWithPast]:
        return_dict = return_dict if return_dict is not None else self.config.use_return_dict
        if image_flags is None:
            image_flags = torch.ones(pixel_values.shape[0], dtype=torch.long, device=pixel_values.device)
        image_flags = image_flags.squeeze(-1)
        embeds = self.language_model.get_input_embeddings()(input_ids).clone()
        vit_embeds = self.extract_feature(pixel_values)[image_flags == 1]
        ignore = False
        try:
            embeds = self._merge(input_ids, embeds, vit_embeds)
        except RuntimeError as exc:  # token count and image count disagree (truncated sample)
            warnings.warn(f"image tokens and features disagree: {exc}")
            b, n, c = embeds.shape
            flat, sel = embeds.reshape(b * n, c), input_ids.reshape(b * n) == self.img_context_token_id
            flat[sel] = flat[sel] * 0.0 + vit_embeds.reshape(-1, c)[: int(sel.sum())].to(flat.dtype)
            embeds, ignore = flat.reshape(b, n, c), True
        outputs = self.language_model(inputs_embeds=embeds, attention_mask=attention_mask,
                                      position_ids=position_ids, past_key_values=past_key_values,
                                      use_cache=use_cache, output_attentions=output_attentions,
                                      output_hidden_states=output_hidden_states, return_dict=True)
        logits = outputs.logits
        loss = None
        if labels is not None:
            shift_logits = logits[..., :-1, :].contiguous().view(-1, self.language_model.config.vocab_size)
            shift_labels = labels[..., 1:].contiguous().view(-1).to(shift_logits.device)
            loss = CrossEntropyLoss()(shift_logits.float(), shift_labels)
            if ignore:
                loss = loss * 0.0
        if not return_dict:
            out = (logits, outputs.past_key_values)
            return (loss,) + out if loss is not None else out
        return CausalLMOutputWithPast(loss=loss, logits=logits, past_key_values=outputs.past_key_values,
                                      hidden_states=outputs.hidden_states, attentions=outputs.attentions)

    # -- inference ------------------------------------------------------------------------------
    def _query(self, question: str, history: list[tuple[str, str]], num_patches_list: list[int]) -> str:
        template = get_conv_template(self.template)
        template.system_message = self.system_message
        for old_q, old_a in history:
            template.append_message(template.roles[0], old_q)
            template.append_message(template.roles[1], old_a)
        template.append_message(template.roles[0], question)
        template.append_message(template.roles[1], None)
        query = template.get_prompt()
        for num_patches in num_patches_list:
            tokens = IMG_START_TOKEN + IMG_CONTEXT_TOKEN * self.num_image_token * num_patches + IMG_END_TOKEN
            query = query.replace("<image>", tokens, 1)
        return query

    def chat(self, tokenizer: Any, pixel_values: Optional[torch.Tensor], question: str,
             generation_config: dict, history: Optional[list[tuple[str, str]]] = None,
             return_history: bool = False, num_patches_list: Optional[list[int]] = None,
             IMG_START_TOKEN: str = IMG_START_TOKEN, IMG_END_TOKEN: str = IMG_END_TOKEN,
             IMG_CONTEXT_TOKEN: str = IMG_CONTEXT_TOKEN, verbose: bool = False) -> Any:
        """One chat turn; ``pixel_values`` holds the tiles of every image in ``question``."""
        if history is None and pixel_values is not None and "<image>" not in question:
            question = "<image>\n" + question
        if num_patches_list is None:
            num_patches_list = [pixel_values.shape[0]] if pixel_values is not None else []
        assert pixel_values is None or len(pixel_values) == sum(num_patches_list)
        self.img_context_token_id = tokenizer.convert_tokens_to_ids(IMG_CONTEXT_TOKEN)
        sep = get_conv_template(self.template).sep
        history = [] if history is None else list(history)
        query = self._query(question, history, num_patches_list)
        inputs = tokenizer(query, return_tensors="pt")
        gen = dict(generation_config)
        gen["eos_token_id"] = tokenizer.convert_tokens_to_ids(sep.strip())
        output = self.generate(pixel_values=pixel_values, input_ids=inputs["input_ids"].to(self.device),
                               attention_mask=inputs["attention_mask"].to(self.device), **gen)
        response = tokenizer.batch_decode(output, skip_special_tokens=True)[0].split(sep)[0].strip()
        history.append((question, response))
        if verbose:
            print(query.replace(IMG_CONTEXT_TOKEN, ""), response)
        return (response, history) if return_history else response

    def batch_chat(self, tokenizer: Any, pixel_values: Optional[torch.Tensor], questions: list[str],
                   generation_config: dict, num_patches_list: Optional[list[int]] = None,
                   history: Any = None, return_history: bool = False, **kwargs: Any) -> list[str]:
        """One turn for several questions (one image each, tiles given by ``num_patches_list``)."""
        if history is not None or return_history:
            raise NotImplementedError("multi-turn chat is not supported in batch_chat")
        self.img_context_token_id = tokenizer.convert_tokens_to_ids(IMG_CONTEXT_TOKEN)
        num_patches_list = num_patches_list or [0] * len(questions)
        queries = []
        for question, num_patches in zip(questions, num_patches_list):
            if pixel_values is not None and num_patches and "<image>" not in question:
                question = "<image>\n" + question
            queries.append(self._query(question, [], [num_patches] if num_patches else []))
        tokenizer.padding_side = "left"
        inputs = tokenizer(queries, return_tensors="pt", padding=True)
        sep = get_conv_template(self.template).sep
        gen = dict(generation_config)
        gen["eos_token_id"] = tokenizer.convert_tokens_to_ids(sep.strip())
        output = self.generate(pixel_values=pixel_values, input_ids=inputs["input_ids"].to(self.device),
                               attention_mask=inputs["attention_mask"].to(self.device), **gen)
        return [r.split(sep)[0].strip() for r in tokenizer.batch_decode(output, skip_special_tokens=True)]

    @torch.no_grad()
    def generate(self, pixel_values: Optional[torch.FloatTensor] = None,
                 input_ids: Optional[torch.LongTensor] = None, attention_mask: Optional[torch.LongTensor] = None,
                 visual_features: Optional[torch.FloatTensor] = None,
                 generation_config: Optional[GenerationConfig] = None,
                 output_hidden_states: Optional[bool] = None, **generate_kwargs: Any) -> torch.LongTensor:
        """Embed the prompt (image features in place of ``<IMG_CONTEXT>``) and let the LLM generate."""
        embeds = self.language_model.get_input_embeddings()(input_ids)
        if pixel_values is not None or visual_features is not None:
            assert self.img_context_token_id is not None, "set model.img_context_token_id first"
            vit_embeds = visual_features if visual_features is not None else self.extract_feature(pixel_values)
            embeds = self._merge(input_ids, embeds, vit_embeds)
        generate_kwargs.pop("return_dict", None)
        fix = self.llm_arch_name in REMOTE_LLMS
        with _embeds_on_first_step(self.language_model) if fix else contextlib.nullcontext():
            return self.language_model.generate(inputs_embeds=embeds, attention_mask=attention_mask,
                                                generation_config=generation_config,
                                                output_hidden_states=output_hidden_states, use_cache=True,
                                                **generate_kwargs)
