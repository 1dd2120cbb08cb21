"""Chat templates: the prompt rendered for chat is the string xtuner trained on, for every template.

Training strings come from xtuner's own code in the train env: ``InternVLDataset.get_inputid_labels``
(the dataset object built by xtuner for a model of the template's LLM architecture) or
``template_map_fn`` + ``encode_fn``. The tokenizer they call records the text of every ``encode``
so the ids map back to the exact pieces. Chat strings come from transformers'
``apply_chat_template`` in the train env and from vlhub's jinja2 renderer in the launcher.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import run_vlhub, train_python

from vlhub.core import stage
from vlhub.core.convert import template_for_model, templates as all_templates
from vlhub.plugins.templates.render import render
from vlhub.plugins.templates.catalog import INTERNVL_DATASET

#: The LLM family behind each xtuner template: the tokenizer class xtuner's code checks and its BOS.
FAMILIES = {
    "internlm2_chat": {"arch": "InternLM2ForCausalLM", "tokenizer_class": "InternLM2Tokenizer", "bos": "<s>"},
    "phi3_chat": {"arch": "Phi3ForCausalLM", "tokenizer_class": "LlamaTokenizer", "bos": "<s>"},
    "qwen_chat": {"arch": "Qwen2ForCausalLM", "tokenizer_class": "Qwen2TokenizerFast", "bos": ""},
}
CONVERSATION = [
    {"from": "human", "value": "<image>\nWhat is in the picture?"},
    {"from": "gpt", "value": "A red car."},
    {"from": "human", "value": "And its colour?  "},
    {"from": "gpt", "value": " Red. "},
    {"from": "human", "value": "Thanks"},
    {"from": "gpt", "value": "You're welcome!"},
]
CUSTOM_SYSTEM = "You are a careful food critic."

#: A config-only InternVL model (what ``InternVLDataset`` reads: llm_config.architectures, tiling settings).
PROBE_CONFIG = '''
from transformers import PretrainedConfig


class ProbeConfig(PretrainedConfig):
    model_type = "internvl_chat"

    def __init__(self, llm_config=None, vision_config=None, **kwargs):
        super().__init__(**kwargs)
        self.llm_config = PretrainedConfig(**(llm_config or {}))
        self.vision_config = PretrainedConfig(**(vision_config or {}))
'''

#: Runs in the train env: renders every case through xtuner (training) and transformers (chat).
RENDER = r'''
import copy, json, sys
from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast
from xtuner.dataset import InternVL_V1_5_Dataset
from xtuner.dataset.map_fns import template_map_fn
from xtuner.dataset.utils import encode_fn
from xtuner.utils import PROMPT_TEMPLATE


def make_recorder(class_name, bos, eos):
    """A tokenizer whose ids are indexes of the texts it was asked to encode."""
    def encode(self, text, add_special_tokens=True):
        ids = [self.piece(bos)] if add_special_tokens and bos else []
        return ids + [self.piece(text)]

    def piece(self, text):
        self.pieces.append(text)
        return len(self.pieces) - 1

    def init(self):
        self.pieces = []
        self.bos_token_id = self.piece(bos) if bos else None
        self.eos_token_id = self.piece(eos)

    return type(class_name, (), {"__init__": init, "encode": encode, "piece": piece})()


def chat_tokenizer(folder, bos):
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    hf.save_pretrained(folder)
    hf.bos_token = bos or None
    return hf


def training(case, folder):
    template = copy.deepcopy(PROMPT_TEMPLATE[case["xtuner_template"]])
    rec = make_recorder(case["tokenizer_class"], case["bos"], "</s>")
    if case["renderer"] == "InternVLDataset":
        data = Path(folder) / "data.json"
        data.write_text(json.dumps([{"image": "x.jpg", "conversations": case["conversation"]}]))
        dataset = InternVL_V1_5_Dataset(folder, template, str(data), image_folders=folder)
        dataset.tokenizer = rec
        ids = dataset.get_inputid_labels(copy.deepcopy(case["conversation"]), "<image>")["input_ids"]
    else:
        turns, q = [], ""
        for msg in case["conversation"]:
            if msg["from"] == "human":
                q += msg["value"].strip()
            else:
                turns.append({"input": q, "output": msg["value"].strip()})
                q = ""
        if case["system"]:
            turns[0]["system"] = case["system"]
        example = template_map_fn({"conversation": turns}, template)
        ids = encode_fn(example, rec, max_length=10**6)["input_ids"]
    return "".join(rec.pieces[i] for i in ids)


out = []
for case in json.loads(Path(sys.argv[1]).read_text()):
    folder = case["folder"]
    tokenizer = chat_tokenizer(folder, case["bos"])
    full = tokenizer.apply_chat_template(case["messages"], chat_template=case["jinja"], tokenize=False)
    prompts = [tokenizer.apply_chat_template(case["messages"][:k], chat_template=case["jinja"], tokenize=False,
                                             add_generation_prompt=True)
               for k in range(1, len(case["messages"]) + 1) if case["messages"][k - 1]["role"] == "user"]
    out.append({"name": case["name"], "system": case["system"], "training": training(case, folder),
                "chat": full, "generation_prompts": prompts})
print(json.dumps(out))
'''


def _messages(system: str | None) -> list[dict[str, Any]]:
    msgs = [{"role": "user" if m["from"] == "human" else "assistant", "content": m["value"]} for m in CONVERSATION]
    return ([{"role": "system", "content": system}] if system else []) + msgs


def _cases(tmp: Path) -> list[dict[str, Any]]:
    """One case per template (the default system), plus a custom system where xtuner's data can carry one."""
    cases = []
    for name, template in all_templates().items():
        family = FAMILIES[template.xtuner_template]
        systems = [None] + ([] if template.xtuner_renderer == INTERNVL_DATASET else [CUSTOM_SYSTEM])
        for system in systems:
            folder = tmp / f"{name}-{bool(system)}"
            folder.mkdir()
            (folder / "configuration_probe.py").write_text(PROBE_CONFIG)
            (folder / "config.json").write_text(json.dumps({
                "model_type": "internvl_chat", "auto_map": {"AutoConfig": "configuration_probe.ProbeConfig"},
                "llm_config": {"architectures": [family["arch"]]}, "vision_config": {"patch_size": 14},
                "force_image_size": 448, "downsample_ratio": 0.5, "min_dynamic_patch": 1, "max_dynamic_patch": 6,
                "use_thumbnail": True}))
            cases.append({"name": name, "folder": str(folder), "renderer": template.xtuner_renderer,
                          "xtuner_template": template.xtuner_template, "jinja": template.jinja,
                          "system": system or template.system, "messages": _messages(system),
                          "conversation": CONVERSATION, **family})
    return cases


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("templates")
    cases = _cases(tmp)
    (tmp / "cases.json").write_text(json.dumps(cases))
    python = train_python()
    proc = subprocess.run([str(python), "-c", RENDER, str(tmp / "cases.json")], capture_output=True, text=True,
                          timeout=300, env=stage.clean_env(python=python))
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for result, case in zip(results, cases):
        result["case"] = case
    return results


def test_every_template_is_checked(rendered: list[dict[str, Any]]) -> None:
    assert {r["name"] for r in rendered} == set(all_templates()) and len(all_templates()) >= 5


def test_chat_prompt_equals_training_prompt(rendered: list[dict[str, Any]]) -> None:
    for result in rendered:
        case = result["case"]
        assert result["chat"] == result["training"], result["name"]
        launcher = render(case["jinja"], case["messages"], bos_token=case["bos"])
        assert launcher == result["training"], result["name"]
        assert result["system"] in result["training"]


def test_generation_prompts_are_prefixes_of_the_training_string(rendered: list[dict[str, Any]]) -> None:
    for result in rendered:
        answers = [m["value"].strip() for m in CONVERSATION if m["from"] == "gpt"]
        assert len(result["generation_prompts"]) == len(answers)
        for prompt, answer in zip(result["generation_prompts"], answers):
            assert result["training"].startswith(prompt + answer), (result["name"], prompt)


def test_template_for_model_matches_config_json() -> None:
    assert template_for_model({"template": "internlm2-chat",
                               "llm_config": {"architectures": ["InternLM2ForCausalLM"]}}).name == "internvl2-internlm2"
    assert template_for_model({"template": "phi3-chat", "llm_config": {"architectures": ["Phi3ForCausalLM"]}}).name \
        == "internvl2-phi3"
    assert template_for_model({"llm_config": {"architectures": ["Phi3ForCausalLM"]}}).name == "internvl2-phi3"
    assert template_for_model({"template": "internvl2_5",
                               "llm_config": {"architectures": ["Qwen2ForCausalLM"]}}).name == "internvl2_5"
    assert template_for_model({"architectures": ["InternLM2ForCausalLM"]}).name == "internlm2-chat"
    assert template_for_model({"architectures": ["Qwen2ForCausalLM"]}).name == "qwen-chat"


def test_template_for_model_tells_the_generations_sharing_a_template_name() -> None:
    """InternVL3 and InternVL3.5 both declare template "internvl2_5"; the LLM tells them apart. The
    transformers-native (-hf) checkpoints have no llm_config and match by text_config."""
    qwen3 = {"template": "internvl2_5", "llm_config": {"architectures": ["Qwen3ForCausalLM"]}}
    assert template_for_model(qwen3).name == "internvl3_5"
    assert template_for_model({"llm_config": {"architectures": ["Qwen3ForCausalLM"]}}).name == "internvl3_5"
    qwen2 = {"template": "internvl2_5", "llm_config": {"architectures": ["Qwen2ForCausalLM"]}}
    assert template_for_model(qwen2).name == "internvl2_5"
    native = {"architectures": ["InternVLForConditionalGeneration"], "model_type": "internvl"}
    assert template_for_model({**native, "text_config": {"architectures": ["Qwen2ForCausalLM"]}}).name == "internvl-hf"
    assert template_for_model({**native, "text_config": {"model_type": "qwen3"}}).name == "internvl3_5-hf"
    assert not all_templates()["internvl-hf"].matches(qwen2)  # a remote-code config is never native
    assert not all_templates()["internvl2_5"].matches({**native, "text_config": {"model_type": "qwen2"}})


THINKING = [
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many cars?"}]},
    {"role": "assistant", "content": "<think>\nCount them.\n</think>\n\nTwo."},
    {"role": "user", "content": "Which one is bigger?"},
    {"role": "assistant", "content": "The red one.", "reasoning_content": "Compare the sizes."},
]


@pytest.mark.parametrize("name", ["internvl3_5", "internvl3_5-hf"])
def test_qwen3_templates_handle_think_blocks(name: str) -> None:
    """Qwen3's rule: an answer before the last user message loses its <think> block; after it, the reasoning
    (``reasoning_content``, or the <think> block of the text) is written as ``<think>\n...\n</think>\n\n``."""
    jinja = all_templates()[name].jinja
    image = "<IMG_CONTEXT>\n" if name.endswith("-hf") else "<image>\n"
    out = render(jinja, THINKING)
    assert out.endswith(f"<|im_start|>user\n{image}How many cars?<|im_end|>\n<|im_start|>assistant\nTwo.<|im_end|>\n"
                        "<|im_start|>user\nWhich one is bigger?<|im_end|>\n<|im_start|>assistant\n"
                        "<think>\nCompare the sizes.\n</think>\n\nThe red one.<|im_end|>\n"), out
    inline = [*THINKING[:3], {"role": "assistant", "content": "<think>Compare the sizes.</think>The red one."}]
    assert render(jinja, inline) == out  # a <think> block in the text is the same reasoning
    plain = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
             {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Bye."}]
    qwen2 = all_templates()["internvl-hf" if name.endswith("-hf") else "internvl2_5"].jinja
    assert render(jinja, plain) == render(qwen2, plain)  # without reasoning: the Qwen2 generation's ChatML


def test_template_for_unknown_model_is_a_one_line_error() -> None:
    from vlhub.core.errors import BadInput

    with pytest.raises(BadInput, match="no chat template matches"):
        template_for_model({"template": "Hermes-2", "llm_config": {"architectures": ["Qwen2ForCausalLM"]}})


def test_multimodal_content_parts_render_like_image_placeholders() -> None:
    template = all_templates()["internvl2-phi3"]
    parts = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is it?"}]}]
    plain = [{"role": "user", "content": "<image>\nWhat is it?"}]
    assert render(template.jinja, parts, add_generation_prompt=True, bos_token="<s>") == \
        render(template.jinja, plain, add_generation_prompt=True, bos_token="<s>")


def test_templates_command_lists_templates_and_models() -> None:
    rows = json.loads(run_vlhub("templates", "--json", check=True).stdout)
    by_name = {r["name"]: r for r in rows}
    assert by_name["internvl2-internlm2"]["xtuner_template"] == "internlm2_chat"
    assert "InternVL2-2B" in by_name["internvl2-internlm2"]["models"]
    assert all(r["matches"] and r["jinja"] and r["stop_words"] for r in rows)
    human = run_vlhub("templates", check=True).stdout
    assert "internvl2-phi3" in human and "phi3_chat" in human
