"""The built-in chat templates: one per way xtuner 0.2.0 formats a conversation for training.

Each template's Jinja renders, for any conversation, exactly the string xtuner trained on
(``tests/test_templates.py`` checks that against xtuner's own code in the train environment):

- InternVL models train through ``xtuner.dataset.InternVLDataset``, which replaces the
  ``PROMPT_TEMPLATE`` entry's SYSTEM/INSTRUCTION by the official InternVL ones for
  InternLM2 and Phi3 language models and hard-codes the system prompt;
- LLMs (and the ChatML InternVL2.5 / InternVL3 / InternVL3.5 families, remote-code or
  transformers-native) train through ``template_map_fn`` + ``encode_fn`` with the ``PROMPT_TEMPLATE``
  entry as it is (xtuner 0.2.0 has no Qwen3 entry: Qwen3's ChatML is ``qwen_chat``'s).

Qwen3 templates also carry Qwen3's ``<think>`` handling of assistant messages (``reasoning_content``
shown as a ``<think>`` block after the last user message, dropped from earlier turns).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .render import build_jinja

#: How xtuner renders the training prompt for a template.
INTERNVL_DATASET = "InternVLDataset"
TEMPLATE_MAP_FN = "template_map_fn"


@dataclass(frozen=True)
class PromptTemplate:
    """A chat format shared by training (xtuner) and serving (tokenizer / LMDeploy)."""

    name: str
    description: str
    jinja: str
    stop_words: tuple[str, ...]
    system: str
    xtuner_template: str
    lmdeploy_name: str | None
    xtuner_renderer: str
    multimodal: bool
    template_names: tuple[str, ...] = ()
    architectures: tuple[str, ...] = ()
    models: tuple[str, ...] = field(default_factory=tuple)
    #: An InternVL config must also have one of ``architectures`` (a template name several LLMs share).
    require_architecture: bool = False
    #: Matches transformers-native InternVL configs (``model_type: internvl``, ``text_config``) instead.
    native: bool = False
    #: ``text_config.model_type`` values a native config may name instead of ``architectures``.
    model_types: tuple[str, ...] = ()

    def matches(self, config: Mapping[str, Any]) -> bool:
        """Whether a model's ``config.json`` uses this format.

        An InternVL config (with ``llm_config``) is matched by its ``template`` field when it has
        one (and by ``llm_config.architectures`` too with ``require_architecture``), else by
        ``llm_config.architectures``; a transformers-native InternVL config (``model_type: internvl``)
        by ``text_config.architectures`` (or ``model_type``); an LLM config by its ``architectures``.
        """
        if self.native:
            text = config.get("text_config")
            if config.get("model_type") != "internvl" or not isinstance(text, Mapping):
                return False
            archs = text.get("architectures") or []
            if archs:
                return archs[0] in self.architectures
            return text.get("model_type") in self.model_types
        llm = config.get("llm_config")
        if self.multimodal != isinstance(llm, Mapping):
            return False
        archs = (llm if isinstance(llm, Mapping) else config).get("architectures") or []
        arch_ok = bool(archs) and archs[0] in self.architectures
        declared = config.get("template")
        if self.multimodal and declared:
            return declared in self.template_names and (arch_ok or not self.require_architecture)
        return arch_ok

    def match_rule(self) -> str:
        """The matching rule in words (for ``vlhub templates``)."""
        archs = "/".join(self.architectures)
        if self.native:
            return ('transformers-native InternVL config.json (model_type "internvl") with '
                    f"text_config.architectures [{archs}]")
        if not self.multimodal:
            return f"LLM config.json with architectures [{archs}]"
        names = "/".join(self.template_names)
        if self.require_architecture:
            return f'InternVL config.json with llm_config.architectures [{archs}] and template "{names}" (or none)'
        return f'InternVL config.json with template "{names}" (or none and llm_config.architectures [{archs}])'

    def public(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {"name": self.name, "description": self.description, "matches": self.match_rule(),
                "models": list(self.models), "xtuner_template": self.xtuner_template,
                "xtuner_renderer": self.xtuner_renderer, "lmdeploy_name": self.lmdeploy_name,
                "stop_words": list(self.stop_words), "system": self.system, "jinja": self.jinja}


_CHATML_TURNS = dict(system="<|im_start|>system\n{system}<|im_end|>\n", user="<|im_start|>user\n{content}<|im_end|>\n",
                     assistant="<|im_start|>assistant\n", end="<|im_end|>\n")
_INTERNLM2_SYSTEM = "You are an AI assistant whose name is InternLM (书生·浦语)."
_PHI3_SYSTEM = "You are an AI assistant whose name is Phi-3."
_INTERNVL2_5_SYSTEM = ("你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的"
                       "多模态大语言模型。")
#: transformers' native InternVL processor expands this placeholder into the image tokens.
_HF_IMAGE = "<IMG_CONTEXT>\n"

BUILTIN: tuple[PromptTemplate, ...] = (
    PromptTemplate(
        name="internvl2-internlm2",
        description="InternVL2 / InternVL-Chat-V1-5 with an InternLM2 LLM (ChatML without newlines between turns)",
        jinja=build_jinja(bos=True, system="<|im_start|>system\n{system}<|im_end|>",
                          user="<|im_start|>user\n{content}<|im_end|>", assistant="<|im_start|>assistant\n",
                          end="<|im_end|>", default_system=_INTERNLM2_SYSTEM),
        stop_words=("<|im_end|>",), system=_INTERNLM2_SYSTEM, xtuner_template="internlm2_chat",
        lmdeploy_name="internvl2-internlm2", xtuner_renderer=INTERNVL_DATASET, multimodal=True,
        template_names=("internlm2-chat",), architectures=("InternLM2ForCausalLM",),
        models=("InternVL2-2B", "InternVL2-8B", "InternVL2-26B", "InternVL-Chat-V1-5", "Mini-InternVL-Chat-2B-V1-5"),
    ),
    PromptTemplate(
        name="internvl2-phi3",
        description="InternVL2 / Mini-InternVL with a Phi-3 LLM",
        jinja=build_jinja(bos=True, system="<|system|>\n{system}<|end|>\n", user="<|user|>\n{content}<|end|>",
                          assistant="<|assistant|>\n", end="<|end|>", default_system=_PHI3_SYSTEM),
        stop_words=("<|end|>",), system=_PHI3_SYSTEM, xtuner_template="phi3_chat",
        lmdeploy_name="internvl2-phi3", xtuner_renderer=INTERNVL_DATASET, multimodal=True,
        template_names=("phi3-chat",), architectures=("Phi3ForCausalLM",),
        models=("InternVL2-4B", "Mini-InternVL-Chat-4B-V1-5"),
    ),
    PromptTemplate(
        name="internvl3_5",
        description="InternVL3.5 with a Qwen3 LLM (InternVL2.5's ChatML and system prompt, Qwen3's <think> handling)",
        jinja=build_jinja(bos=False, default_system=_INTERNVL2_5_SYSTEM, think=True, **_CHATML_TURNS),
        stop_words=("<|im_end|>", "<|endoftext|>"), system=_INTERNVL2_5_SYSTEM, xtuner_template="qwen_chat",
        lmdeploy_name="internvl2_5", xtuner_renderer=TEMPLATE_MAP_FN, multimodal=True,
        template_names=("internvl2_5",), architectures=("Qwen3ForCausalLM",), require_architecture=True,
        models=("InternVL3_5-1B", "InternVL3_5-2B", "InternVL3_5-4B", "InternVL3_5-8B", "InternVL3_5-14B",
                "InternVL3_5-38B"),
    ),
    PromptTemplate(
        name="internvl2_5",
        description="InternVL2.5 / InternVL3 with a Qwen2 / InternLM2.5 LLM (ChatML, Qwen2-style)",
        jinja=build_jinja(bos=False, default_system=_INTERNVL2_5_SYSTEM, **_CHATML_TURNS),
        stop_words=("<|im_end|>",), system=_INTERNVL2_5_SYSTEM, xtuner_template="qwen_chat",
        lmdeploy_name="internvl2_5", xtuner_renderer=TEMPLATE_MAP_FN, multimodal=True,
        template_names=("internvl2_5",), architectures=("Qwen2ForCausalLM",),
        models=("InternVL2_5-1B", "InternVL2_5-4B", "InternVL2_5-8B", "InternVL2_5-38B", "InternVL3-1B",
                "InternVL3-2B", "InternVL3-8B", "InternVL3-14B", "InternVL3-38B", "InternVL3-78B"),
    ),
    PromptTemplate(
        name="internvl-hf",
        description="transformers-native InternVL (InternVLForConditionalGeneration) with a Qwen2 LLM "
                    "(ChatML without a default system prompt, <IMG_CONTEXT> per image)",
        jinja=build_jinja(bos=False, default_system="", image=_HF_IMAGE, **_CHATML_TURNS),
        stop_words=("<|im_end|>", "<|endoftext|>"), system="", xtuner_template="qwen_chat",
        lmdeploy_name=None, xtuner_renderer=TEMPLATE_MAP_FN, multimodal=True, native=True,
        architectures=("Qwen2ForCausalLM",), model_types=("qwen2",),
        models=("InternVL3-1B-hf", "InternVL3-2B-hf", "InternVL3-8B-hf", "InternVL3-14B-hf", "InternVL3-38B-hf"),
    ),
    PromptTemplate(
        name="internvl3_5-hf",
        description="transformers-native InternVL3.5 (InternVLForConditionalGeneration) with a Qwen3 LLM "
                    "(ChatML without a default system prompt, <IMG_CONTEXT> per image, Qwen3's <think> handling)",
        jinja=build_jinja(bos=False, default_system="", image=_HF_IMAGE, think=True, **_CHATML_TURNS),
        stop_words=("<|im_end|>", "<|endoftext|>"), system="", xtuner_template="qwen_chat",
        lmdeploy_name=None, xtuner_renderer=TEMPLATE_MAP_FN, multimodal=True, native=True,
        architectures=("Qwen3ForCausalLM",), model_types=("qwen3",),
        models=("InternVL3_5-1B-HF", "InternVL3_5-2B-HF", "InternVL3_5-4B-HF", "InternVL3_5-8B-HF"),
    ),
    PromptTemplate(
        name="internlm2-chat",
        description="xtuner's internlm2_chat for InternLM2 / InternLM2.5 LLMs (ChatML after <s>)",
        jinja=build_jinja(bos=True, default_system="", **_CHATML_TURNS),
        stop_words=("<|im_end|>",), system="", xtuner_template="internlm2_chat",
        lmdeploy_name="internlm2", xtuner_renderer=TEMPLATE_MAP_FN, multimodal=False,
        architectures=("InternLM2ForCausalLM",),
        models=("internlm2-chat-1_8b", "internlm2_5-1_8b-chat", "internlm2_5-7b-chat"),
    ),
    PromptTemplate(
        name="qwen-chat",
        description="xtuner's qwen_chat for Qwen / Qwen2 LLMs (ChatML, no BOS)",
        jinja=build_jinja(bos=False, default_system="", **_CHATML_TURNS),
        stop_words=("<|im_end|>", "<|endoftext|>"), system="", xtuner_template="qwen_chat",
        lmdeploy_name="qwen", xtuner_renderer=TEMPLATE_MAP_FN, multimodal=False,
        architectures=("Qwen2ForCausalLM",),
        models=("Qwen2-0.5B-Instruct", "Qwen2.5-1.5B-Instruct", "Qwen2.5-7B-Instruct"),
    ),
)
