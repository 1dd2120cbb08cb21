"""vlhub's InternVL model class and sample-output hook for xtuner (runs in the train stage env).

A training run copies this file into ``RUN/code/`` and puts that folder on ``PYTHONPATH``;
the generated config imports ``VlhubInternVL`` and ``InternVLSampleHook`` from it.

- ``VlhubInternVL`` is xtuner's ``InternVL_V1_5`` except that the LLM loads with
  flash-attn only when it is installed and a GPU is there (``sdpa``, or ``eager`` for
  InternLM2's remote code, otherwise): xtuner 0.2.0 forces ``flash_attention_2``.
- ``InternVLSampleHook`` logs ``Sample output:`` blocks like xtuner's ``EvaluateChatHook``
  (which only knows LLaVA models) through the model's own ``chat()``.
"""
from __future__ import annotations

import importlib.util
import os
from typing import Any

import torch
import torchvision.transforms as T
from mmengine import print_log
from mmengine.dist import master_only
from mmengine.hooks import Hook
from mmengine.model import BaseModel, is_model_wrapper
from PIL import Image
from torchvision.transforms.functional import InterpolationMode
from transformers import AutoConfig, AutoModel, AutoTokenizer, BitsAndBytesConfig
from xtuner.dataset.internvl_dataset import dynamic_preprocess
from xtuner.model import InternVL_V1_5


def attention_for(llm_model_type: str) -> str:
    """flash_attention_2 when usable, else what the LLM code supports without it."""
    if importlib.util.find_spec("flash_attn") is not None and torch.cuda.is_available():
        return "flash_attention_2"
    return "eager" if llm_model_type == "internlm2" else "sdpa"


class VlhubInternVL(InternVL_V1_5):
    """``InternVL_V1_5`` that chooses the attention implementation instead of forcing flash-attn."""

    def __init__(self, model_path: str, freeze_llm: bool = False, freeze_visual_encoder: bool = False,
                 llm_lora: Any = None, visual_encoder_lora: Any = None, quantization_vit: bool = False,
                 quantization_llm: bool = False, pretrained_pth: str | None = None,
                 attn_implementation: str | None = None) -> None:
        print_log("Start to load InternVL_V1_5 model (vlhub).", logger="current")
        BaseModel.__init__(self)
        self.freeze_llm = freeze_llm
        self.freeze_visual_encoder = freeze_visual_encoder
        self.use_llm_lora = llm_lora is not None
        self.use_visual_encoder_lora = visual_encoder_lora is not None
        self.quantization_vit = quantization_vit
        self.quantization_llm = quantization_llm
        if (quantization_vit and visual_encoder_lora is None) or (quantization_llm and llm_lora is None):
            raise ValueError("4-bit weights need LoRA adapters on the same part")

        config = AutoConfig.from_pretrained(model_path, trust_remote_code=True)
        attn = attn_implementation or attention_for(config.llm_config.model_type)
        config.llm_config.attn_implementation = attn      # read by InternLM2's remote code
        config.llm_config._attn_implementation = attn     # read by transformers' own LLMs (Phi-3)
        config.vision_config.use_flash_attn = attn == "flash_attention_2"
        print_log(f"LLM attention: {attn}", logger="current")

        self.model = AutoModel.from_pretrained(model_path, torch_dtype=torch.bfloat16, config=config,
                                               quantization_config=self._quantization(), trust_remote_code=True)
        tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=True)
        self.model.img_context_token_id = tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")

        if freeze_llm:
            self.model.language_model.requires_grad_(False)
        if freeze_visual_encoder:
            self.model.vision_model.requires_grad_(False)
        if hasattr(self.model.language_model, "enable_input_require_grads"):
            self.model.language_model.enable_input_require_grads()
        self.gradient_checkpointing_enable()
        if self.use_llm_lora:
            self._prepare_llm_for_lora(llm_lora)
        if self.use_visual_encoder_lora:
            self._prepare_visual_encoder_for_lora(visual_encoder_lora)
        if pretrained_pth is not None:
            from xtuner.model.utils import guess_load_checkpoint

            self.load_state_dict(guess_load_checkpoint(pretrained_pth), strict=False)
        self._count = 0
        print_log("InternVL_V1_5 construction is complete", logger="current")

    def _quantization(self) -> BitsAndBytesConfig | None:
        if not (self.quantization_llm or self.quantization_vit):
            return None
        skip = ["mlp1"]
        if not self.quantization_vit:
            skip.append("vision_model")
        if not self.quantization_llm:
            skip.append("language_model")
        return BitsAndBytesConfig(llm_int8_skip_modules=skip, load_in_4bit=True, load_in_8bit=False,
                                  llm_int8_threshold=6.0, llm_int8_has_fp16_weight=False,
                                  bnb_4bit_compute_dtype=torch.float16, bnb_4bit_use_double_quant=True,
                                  bnb_4bit_quant_type="nf4")


def image_tiles(path: str, config: Any) -> torch.Tensor:
    """An image as InternVL's dynamic 448x448 tiles, normalised like xtuner's dataset does."""
    size = config.force_image_size
    transform = T.Compose([
        T.Resize((size, size), interpolation=InterpolationMode.BICUBIC), T.ToTensor(),
        T.Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))])
    image = Image.open(path).convert("RGB")
    tiles = dynamic_preprocess(image, config.min_dynamic_patch, config.max_dynamic_patch, size,
                               config.use_thumbnail)
    return torch.stack([transform(t) for t in tiles])


def sample_outputs(chat_model: Any, tokenizer: Any, image: str, prompts: list[str],
                   max_new_tokens: int) -> list[str]:
    """Answers of an InternVL chat model (``model.chat``) to ``prompts`` about one image, greedy."""
    device = next(chat_model.parameters()).device
    pixels = image_tiles(image, chat_model.config).to(device, dtype=chat_model.vision_model.dtype)
    generation = dict(max_new_tokens=max_new_tokens, do_sample=False)
    answers = []
    for prompt in prompts:
        question = prompt if "<image>" in prompt else "<image>\n" + prompt
        with torch.no_grad():
            answers.append(f"{question}\n{chat_model.chat(tokenizer, pixels, question, generation)}")
    return answers


class InternVLSampleHook(Hook):
    """Before, during (every N iterations and at checkpoints) and after training, log sample answers."""

    priority = "LOW"

    def __init__(self, model_path: str, evaluation_inputs: list[str], evaluation_image: str,
                 every_n_iters: int | None = None, max_new_tokens: int = 128) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=True)
        self.prompts = list(evaluation_inputs)
        self.image = evaluation_image
        self.every_n_iters = every_n_iters
        self.max_new_tokens = max_new_tokens

    @master_only
    def _save(self, runner: Any, outputs: list[str]) -> None:
        path = os.path.join(runner.log_dir, "vis_data", f"eval_outputs_iter_{runner.iter}.txt")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.writelines(f"Eval output {i + 1}:\n{text}\n\n" for i, text in enumerate(outputs))

    def _generate(self, runner: Any, max_new_tokens: int | None = None, save: bool = False) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        llm_config = model.model.language_model.config
        use_cache = llm_config.use_cache
        model.activation_checkpointing_disable()
        llm_config.use_cache = True
        model.eval()
        try:  # every rank generates (ZeRO-3 gathers weights collectively; tests/test_convert_zero3.py); rank 0 logs
            outputs = sample_outputs(model.model, self.tokenizer, self.image, self.prompts,
                                     max_new_tokens or self.max_new_tokens)
        finally:
            model.activation_checkpointing_enable()
            llm_config.use_cache = use_cache
            model.train()
        for text in outputs:
            runner.logger.info(f"Sample output:\n{text}\n")
        if save:
            self._save(runner, outputs)

    def before_train(self, runner: Any) -> None:
        self._generate(runner, max_new_tokens=32)

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        if self.every_n_iters and self.every_n_train_iters(runner, self.every_n_iters):
            self._generate(runner, save=True)

    def after_train(self, runner: Any) -> None:
        self._generate(runner, save=True)
