"""vlhub's InternVL model class and sample-output hook for xtuner (runs in the train stage env).

A training run copies this file into ``RUN/code/`` and puts that folder on ``PYTHONPATH``;
the generated config imports its model, dataset, hook and metric classes from it.

- ``VlhubInternVL`` is xtuner's ``InternVL_V1_5`` except that the LLM loads with
  flash-attn only when it is installed and a GPU is there (``sdpa``, or ``eager`` for
  InternLM2's remote code, otherwise): xtuner 0.2.0 forces ``flash_attention_2``.
- ``InternVLSampleHook`` logs ``Sample output:`` blocks like xtuner's ``EvaluateChatHook``
  (which only knows LLaVA models) through the model's own ``chat()``.
- ``VlhubInternVLDataset`` is xtuner's ``InternVL_V1_5_Dataset`` (same template, system prompt and
  tokenisation for the records xtuner reads) that also trains several images per record
  (InternVL's multi-image format: one ``<image>`` per image, each replaced in order by its tiles'
  tokens, ``max(1, max_dynamic_patch // images)`` tiles per image), a per-record system prompt
  (a first ``system`` turn replaces the model's default one), ``messages`` records and OpenAI
  content lists. Every record is checked when the dataset is built (:meth:`VlhubInternVLDataset.inspect`,
  also what ``vlhub train --dry-run`` and ``vlhub data validate --trainer xtuner`` report): one that
  would crash xtuner or train wrongly is left out with its index and reason, never met mid-run.
- Validation during training runs through mmengine's own ``ValLoop`` (``val_dataloader``,
  ``val_evaluator``, ``val_cfg`` and ``train_cfg.val_interval`` in the run's config):
  ``VlhubValDataset`` (records of ``val.json`` for the loss, items of ``val_mc.json`` for accuracy),
  ``val_collate_fn``, ``VlhubInternVL.forward(mode="predict")`` (what ``val_step`` calls) and
  ``VlhubValMetric`` (``val_loss``, ``val_acc``). mmengine's ``LoggerHook`` then writes the numbers to
  every visualizer backend (TensorBoard ...); ``VlhubCheckpointKeeper`` logs them for vlhub's records,
  marks the best checkpoint and applies ``--save-limit`` without ever deleting it.
"""
from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import os
import re
import shutil
from collections import Counter
from typing import Any, Iterator

import torch
import torchvision.transforms as T
from mmengine import print_log
from mmengine.dist import master_only
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.model import BaseModel, is_model_wrapper
from PIL import Image
from torchvision.transforms.functional import InterpolationMode
from transformers import AutoConfig, AutoModel, AutoTokenizer, BitsAndBytesConfig
from xtuner.dataset.internvl_dataset import InternVL_V1_5_Dataset, dynamic_preprocess, find_closest_aspect_ratio
from xtuner.model import InternVL_V1_5
from xtuner.utils import IGNORE_INDEX


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

    def forward(self, data: dict[str, Any], data_samples: Any = None, mode: str = "loss") -> Any:
        """xtuner's forward (``{"loss": tensor}``), except ``mode="predict"`` (mmengine's ``val_step``, the
        validation loop): one validation item of :func:`val_collate_fn` scored as a list of one result,
        ``{"kind": "loss", "loss_sum": float, "tokens": int}`` (cross-entropy summed over the answer tokens,
        computed as training computes its loss) or ``{"kind": "mc", "correct": bool, "picked": int}``."""
        if mode != "predict":
            return super().forward(data, data_samples, mode)
        val = data.get("vlhub_val") or {"kind": "loss"}
        labels = data["labels"]
        if val["kind"] == "loss":
            tokens = int((labels[:, 1:] != IGNORE_INDEX).sum())
            loss = super().forward(data, data_samples, "loss")["loss"]
            return [{"kind": "loss", "loss_sum": float(loss) * tokens, "tokens": tokens}]
        pixel_values = data["pixel_values"]
        if type(pixel_values) is list or pixel_values.ndim == 5:   # as xtuner's forward reads a batch's images
            pixel_values = torch.cat([x.unsqueeze(0) if x.ndim == 3 else x for x in pixel_values], dim=0)
        pixel_values = pixel_values.to(self.model.vision_model.dtype)
        logits = self._llm_forward(pixel_values=pixel_values, input_ids=data["input_ids"],
                                   attention_mask=data["attention_mask"], position_ids=data["position_ids"],
                                   image_flags=(torch.sum(pixel_values, dim=(1, 2, 3)) != 0).long(),
                                   labels=None, use_cache=False).logits
        picked = int(torch.argmax(choice_scores(logits, labels)))
        return [{"kind": "mc", "correct": picked == int(val["answer"]), "picked": picked}]

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
    with _unwrapped_llm(chat_model):
        for prompt in prompts:
            question = prompt if "<image>" in prompt else "<image>\n" + prompt
            with torch.no_grad():
                answers.append(f"{question}\n{chat_model.chat(tokenizer, pixels, question, generation)}")
    return answers


@contextlib.contextmanager
def _unwrapped_llm(chat_model: Any) -> Iterator[None]:
    """Generate with the LoRA-wrapped LLM's own model (its LoRA layers stay in place).

    peft's ``PeftModelForCausalLM.generate`` hands remote-code LLMs an empty ``input_ids`` beside
    ``inputs_embeds`` under transformers 4.48, and InternLM2's ``_update_causal_mask`` then fails with
    "size of tensor a (0) must match" (seen on the GPU proof with ``--llm internlm2``). peft injects the
    LoRA layers into the wrapped model's modules, so ``get_base_model()`` answers with the adapters.
    """
    wrapped = chat_model.language_model
    if not hasattr(wrapped, "get_base_model"):
        yield
        return
    chat_model.language_model = wrapped.get_base_model()
    try:
        yield
    finally:
        chat_model.language_model = wrapped


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


# ---------------------------------------------------------------- the dataset
PLACEHOLDER = "<image>"
#: roles as this dataset reads them, in both record shapes (``from``/``value`` and ``role``/``content``)
ROLES = {"human": "human", "user": "human", "gpt": "gpt", "assistant": "gpt", "system": "system"}
#: why a record is left out: the record itself (xtuner would crash on it or train it wrongly), one of its
#: image files (missing or unreadable: xtuner would silently train another record instead), or its
#: length (``max_length`` would cut image tokens, or every answer token)
RECORD, IMAGE, LENGTH = "record", "image", "length"


class Rejected(ValueError):
    """A record the dataset leaves out: ``reason`` (one line), ``field`` (where) and ``kind``."""

    def __init__(self, reason: str, field: str = "record", kind: str = RECORD) -> None:
        super().__init__(reason)
        self.field = field
        self.kind = kind


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number" if isinstance(value, (int, float)) else type(value).__name__)


def _content_parts(parts: list[Any], where: str, field: str, images: list[str]) -> str:
    """OpenAI content parts as text: text parts joined by newlines, one ``<image>`` per image part
    (its path appended to ``images``); the same conversion as ``vlhub data prepare``."""
    if not parts:
        raise Rejected(f"{where}: the list of content parts is empty", field)
    texts = []
    for k, part in enumerate(parts):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text", ""), str):
            texts.append(part.get("text", ""))
        elif kind in ("image", "image_url"):
            ref = part.get("image") or part.get("image_url") or part.get("url") or part.get("path")
            ref = ref.get("url") if isinstance(ref, dict) else ref
            if ref:
                images.append(ref if isinstance(ref, str) else str(ref))
            texts.append(PLACEHOLDER)
        else:
            raise Rejected(f"{where}: content part {k} is not a text or image part", field)
    return "\n".join(texts)


def read_record(raw: Any) -> dict[str, Any]:
    """One record of the training file as ``{"images": [str], "system": str | None, "conversations":
    [{"from": "human" | "gpt", "value": str}]}``, or :class:`Rejected` with the reason.

    Accepted: ``conversations`` (``from``/``value``) or ``messages`` (``role``/``content``) turns, text or
    OpenAI content lists, an optional first ``system`` turn (the record's system prompt), then
    questions and answers alternating, ``human`` first and ``gpt`` last, none empty; ``image`` (or
    ``images``, or the content lists' image parts) a path or a non-empty list of paths, with exactly one
    ``<image>`` per image, in questions only. Anything else would crash xtuner 0.2.0's dataset (``messages``,
    content lists, unknown roles, a missing text, several images) or train it wrongly (xtuner joins two
    questions in a row, skips answers before the first question and questions without answer, strips
    ``<image>`` from text-only records and keeps it as text in answers).
    """
    if not isinstance(raw, dict):
        raise Rejected(f"the record is a JSON {_json_type(raw)}, not an object")
    key = "conversations" if "conversations" in raw else "messages" if "messages" in raw else ""
    if not key:
        raise Rejected("no 'conversations' or 'messages' list of turns")
    turns = raw[key]
    if not isinstance(turns, list) or not turns:
        raise Rejected(f"'{key}' is {'empty' if turns == [] else 'a JSON ' + _json_type(turns)}, not a list of turns",
                       key)
    found: list[str] = []
    read: list[tuple[str, str]] = []
    for i, turn in enumerate(turns):
        field = f"{key}[{i}]"
        if not isinstance(turn, dict):
            raise Rejected(f"turn {i} is a JSON {_json_type(turn)}, not an object", field)
        role = turn.get("from", turn.get("role"))
        if role not in ROLES:
            raise Rejected(f"turn {i} has role {role!r}; xtuner reads human/user, gpt/assistant (and vlhub's "
                           "dataset a first system turn)", f"{field}.from")
        role = ROLES[role]
        text_key = "value" if "value" in turn else "content" if "content" in turn else "value"
        value = turn.get(text_key)
        if isinstance(value, dict) and "type" in value:
            value = [value]
        if isinstance(value, list):
            value = _content_parts(value, f"turn {i} ({role})", f"{field}.{text_key}", found)
        if not isinstance(value, str):
            raise Rejected(f"turn {i} ({role}) has no text" if value is None else
                           f"turn {i} ({role}): its text is a JSON {_json_type(value)}", f"{field}.{text_key}")
        if not value.strip():
            raise Rejected(f"turn {i} ({role}) is empty", f"{field}.{text_key}")
        read.append((role, value))
    system = None
    if read[0][0] == "system":
        system = read.pop(0)[1]
        if PLACEHOLDER in system:
            raise Rejected("the system turn contains <image>: images belong in a question", f"{key}[0]")
    offset = len(turns) - len(read)
    if not read:
        raise Rejected("the record holds only a system turn", key)
    conversations = []
    for i, (role, value) in enumerate(read):
        expected = "human" if i % 2 == 0 else "gpt"
        field = f"{key}[{i + offset}]"
        if role == "system":
            raise Rejected(f"turn {i + offset} is a system turn after the conversation started: only a first "
                           "system turn is read (the record's system prompt)", f"{field}.from")
        if role != expected:
            what = ("xtuner would skip this answer" if i == 0 else
                    "xtuner would join the two questions into one" if role == "human" else
                    "two answers in a row")
            raise Rejected(f"turn {i + offset} is {role!r}, expected {expected!r} ({what})", f"{field}.from")
        if role == "gpt" and PLACEHOLDER in value:
            raise Rejected(f"turn {i + offset} (gpt) contains <image>: images belong in a question", field)
        conversations.append({"from": role, "value": value})
    if len(read) % 2:
        raise Rejected(f"the last turn ({len(turns) - 1}) is a question without an answer (xtuner would skip it)",
                       f"{key}[{len(turns) - 1}]")
    images = raw.get("image", raw.get("images"))
    if images is None and found:
        images = found
    refs = [] if images is None else [images] if isinstance(images, str) else images
    if not isinstance(refs, list) or (images is not None and not refs):
        raise Rejected("empty image list" if refs == [] else f"image is a JSON {_json_type(images)}, not a path",
                       "image")
    for ref in refs:
        if not isinstance(ref, str) or not ref.strip():
            raise Rejected(f"image path is not a non-empty string: {ref!r:.60}", "image")
    placeholders = sum(t["value"].count(PLACEHOLDER) for t in conversations)
    if placeholders != len(refs):
        where = " (xtuner would strip them: add the image, or remove the placeholder)" if not refs else \
            " (an image without its <image> has no place in the text)" if placeholders < len(refs) else ""
        raise Rejected(f"{placeholders} <image> placeholder(s) for {len(refs)} image(s){where}", key)
    return {"images": refs, "system": system, "conversations": conversations}


def tile_count(size: tuple[int, int], min_num: int, max_num: int, image_size: int, use_thumbnail: bool) -> int:
    """How many tiles ``dynamic_preprocess`` cuts an image of ``size`` (width, height) into (thumbnail included)."""
    width, height = size
    ratios = sorted({(i, j) for n in range(min_num, max_num + 1) for i in range(1, n + 1) for j in range(1, n + 1)
                     if min_num <= i * j <= max_num}, key=lambda x: x[0] * x[1])
    best = find_closest_aspect_ratio(width / height, ratios, width, height, image_size)
    blocks = best[0] * best[1]
    return blocks + 1 if use_thumbnail and blocks != 1 else blocks


def spread(count: int, limit: int | None) -> list[int]:
    """Indexes of at most ``limit`` of ``count`` records, evenly spaced from the first (all when ``limit`` is None
    or not smaller): a validation subset that samples the whole file, not only its start."""
    if limit is None or limit >= count:
        return list(range(count))
    return sorted({int(i * count / limit) for i in range(max(0, limit))})


def _load_records(path: str) -> list[Any]:
    """The records of a ``.json`` list or ``.jsonl`` file (the names xtuner reads), as UTF-8 whatever the
    locale; blank JSONL lines are skipped."""
    if not path.endswith((".json", ".jsonl")):
        raise ValueError(f"Unsupported file format: {path}, only support .json and .jsonl.")
    with open(path, encoding="utf-8-sig") as handle:
        if path.endswith(".jsonl"):
            return [json.loads(line) for line in handle if line.strip()]
        data = json.load(handle)
    if not isinstance(data, list):
        raise ValueError(f"{path} holds a JSON {_json_type(data)}, not a list of records")
    return data


class VlhubInternVLDataset(InternVL_V1_5_Dataset):
    """xtuner's InternVL dataset with several images per record, a per-record system prompt, and every
    record checked when it is built (bad ones left out, each with its index and reason).

    Records xtuner 0.2.0 reads (one image or none, no system turn) are tokenised exactly as it does:
    the same template, the model's default system prompt, the image's tokens put before the question.
    Attributes besides xtuner's: ``checked`` (one :meth:`inspect` result per record of the files, in order),
    ``data`` (the kept records, as :func:`read_record` returns them plus ``index`` and ``image``).
    ``limit`` (validation sets) reads at most that many records of each file, evenly spaced (:func:`spread`).
    """

    def __init__(self, model_path: str, template: Any, data_paths: Any, image_folders: Any = None,
                 repeat_times: Any = 1, max_length: int = 8192, limit: int | None = None) -> None:
        # xtuner's own set-up (config, template and system prompt, tokenizer, transform) on no data
        super().__init__(model_path, template, [], [], [], max_length)
        self.img_context_id = self.tokenizer.convert_tokens_to_ids(self.IMG_CONTEXT_TOKEN)
        self.img_end_id = self.tokenizer.convert_tokens_to_ids(self.IMG_END_TOKEN)
        paths = list(data_paths) if isinstance(data_paths, (list, tuple)) else [data_paths]
        folders = list(image_folders) if isinstance(image_folders, (list, tuple)) else [image_folders] * len(paths)
        repeats = list(repeat_times) if isinstance(repeat_times, (list, tuple)) else [repeat_times] * len(paths)
        assert len(paths) == len(folders) == len(repeats)
        self._sizes: dict[str, Any] = {}
        self.checked: list[dict[str, Any]] = []
        for path, folder, repeat in zip(paths, folders, repeats):
            print_log(f"=======Starting to process {path} (vlhub) =======", logger="current")
            records = _load_records(path)
            for index in spread(len(records), limit):
                result = self.inspect(records[index], folder or "", index)
                self.checked.append(result)
                if result["problem"] is None:
                    for _ in range(max(1, int(repeat))):
                        self.data.append(result["record"])
                        self.image_folder.append(folder or "")
                        self.group_length.append(result["tokens"] if result["images"] else -result["tokens"])
        self._log_checked()

    # ------------------------------------------------------------ checking
    def max_tiles(self, images: int) -> int:
        """Tiles per image of a record with ``images`` images (InternVL's multi-image rule)."""
        return self.max_dynamic_patch if images <= 1 else max(1, self.max_dynamic_patch // images)

    def _image_size(self, path: str) -> tuple[int, int]:
        if path not in self._sizes:
            try:
                with Image.open(path) as image:
                    self._sizes[path] = image.size
            except FileNotFoundError:
                self._sizes[path] = Rejected(f"image not found: {path}", "image", IMAGE)
            except Exception as exc:  # noqa: BLE001 (any decoder error: the record is left out)
                self._sizes[path] = Rejected(f"image cannot be read: {path} ({type(exc).__name__}: {exc})"[:300],
                                             "image", IMAGE)
        found = self._sizes[path]
        if isinstance(found, Rejected):
            raise found
        return found

    def inspect(self, raw: Any, image_folder: str, index: int = 0) -> dict[str, Any]:
        """Whether and how this dataset trains one record, without loading its pixels.

        Returns:
            ``index``; ``problem`` (``None``, or ``{"field", "reason", "kind"}``: the record is left out);
            for a kept record also ``record`` (:func:`read_record`'s form), ``images``, ``tiles`` (per image),
            ``system`` (whether it brings its own system prompt), ``tokens`` (its exact length before
            ``max_length`` cuts it, image tokens included), ``image_end`` (tokens up to its last image
            token) and ``trained`` (answer tokens left after the cut).
        """
        out: dict[str, Any] = {"index": index, "problem": None}
        try:
            record = read_record(raw)
            record["index"] = index
            record["image"] = record["images"] or None
            sizes = [self._image_size(os.path.join(image_folder, ref)) for ref in record["images"]]
            top = self.max_tiles(len(sizes))
            tiles = [tile_count(size, min(self.min_dynamic_patch, top), top, self.image_size, self.use_thumbnail)
                     for size in sizes]
            out.update(record=record, images=len(tiles), tiles=tiles, system=record["system"] is not None,
                       **self._measure(record, tiles))
            if out["image_end"] > self.max_length:
                raise Rejected(f"{out['tokens']} tokens, its {len(tiles)} image(s) up to token {out['image_end']}: "
                               f"--max-length {self.max_length} would cut image tokens (the model then pairs "
                               "the batch's images with the wrong records)", "image", LENGTH)
            if out["trained"] == 0:
                raise Rejected(f"{out['tokens']} tokens: --max-length {self.max_length} cuts every answer token "
                               "(nothing left to train)", "conversations", LENGTH)
        except Rejected as exc:
            out = {"index": index, "problem": {"field": exc.field, "reason": str(exc), "kind": exc.kind}}
        return out

    def _measure(self, record: dict[str, Any], tiles: list[int]) -> dict[str, int]:
        """Exact length, end of the last image and answer tokens kept, from one tokenisation with one
        ``<IMG_CONTEXT>`` per image (a special token, so each image's run of them only shifts what follows)."""
        ids, labels = self.tokenize(record, [1] * len(tiles))
        extra = [n * self.patch_token - 1 for n in tiles]
        if sum(1 for t in ids if t == self.img_context_id) != len(tiles):  # not a single special token here
            ids, labels = self.tokenize(record, [n * self.patch_token for n in tiles])
            extra = [0] * len(tiles)
        shift, seen, real, image_end = 0, 0, [], 0
        for pos, token in enumerate(ids):
            real.append(pos + shift)
            if token == self.img_context_id and seen < len(extra):
                shift += extra[seen]
                seen += 1
            if token == self.img_end_id:
                image_end = pos + shift + 1
        trained = sum(1 for pos, label in zip(real, labels) if label != IGNORE_INDEX and pos < self.max_length)
        return {"tokens": len(ids) + shift, "image_end": image_end, "trained": trained}

    def _log_checked(self) -> None:
        left_out = [c for c in self.checked if c["problem"]]
        print_log(f"=======total {len(self.data)} samples; {len(left_out)} of {len(self.checked)} records "
                  f"left out (vlhub) =======", logger="current")
        if left_out:
            kinds = Counter(c["problem"]["kind"] for c in left_out)
            first = left_out[0]
            print_log(f"left out: {dict(kinds)}; first: record {first['index']}: {first['problem']['reason']}",
                      logger="current")

    # ------------------------------------------------------------ tokenising
    def tokenize(self, record: dict[str, Any], image_tokens: list[int]) -> tuple[list[int], list[int]]:
        """``input_ids`` and ``labels`` of a record as xtuner's ``get_inputid_labels`` builds them (before the
        ``max_length`` cut), image ``i`` given ``image_tokens[i]`` ``<IMG_CONTEXT>`` tokens.

        One image: its tokens go before its question's text, as xtuner does. Several: each ``<image>`` is
        replaced in order (InternVL's multi-image format). The record's own system prompt, when it has
        one, replaces the model's default.
        """
        strs = [f"{self.IMG_START_TOKEN}{self.IMG_CONTEXT_TOKEN * n}{self.IMG_END_TOKEN}" for n in image_tokens]
        pending = list(strs)
        turns, question = [], ""
        for msg in record["conversations"]:
            value = msg["value"]
            if msg["from"] == "human":
                if PLACEHOLDER in value and len(strs) == 1:
                    value = (pending.pop(0) + "\n" + value.replace(PLACEHOLDER, "").strip()).strip()
                else:
                    while PLACEHOLDER in value and pending:
                        value = value.replace(PLACEHOLDER, pending.pop(0), 1)
                question += value.strip()
            else:
                turns.append((question, value.strip()))
                question = ""
        system = record.get("system")
        input_ids: list[int] = []
        labels: list[int] = []
        for i, (question, answer) in enumerate(turns):
            text = self.template.INSTRUCTION.format(input=question, round=i + 1)
            if i == 0:
                text = self.template.SYSTEM.format(system=self._system if system is None else system) + text
                encoded = self.tokenizer.encode(text, add_special_tokens=True)
            else:
                encoded = self.tokenizer.encode(text, add_special_tokens=False)
            input_ids += encoded
            labels += [IGNORE_INDEX] * len(encoded)
            if self.template.get("SUFFIX", None):
                answer += self.template.SUFFIX
            encoded = self.tokenizer.encode(answer, add_special_tokens=False)
            input_ids += encoded
            labels += copy.deepcopy(encoded)
        return input_ids, labels

    def prepare_data(self, index: int) -> dict[str, Any] | None:
        """One sample: ``pixel_values`` (every image's tiles, in order), ``input_ids``, ``labels``; ``None``
        when an image cannot be loaded (xtuner then takes another sample, as for its own records)."""
        record = self.data[index]
        folder = self.image_folder[index]
        out: dict[str, Any] = {}
        if record["images"]:
            top = self.max_tiles(len(record["images"]))
            pixels = []
            for ref in record["images"]:
                try:
                    image = self.get_image(os.path.join(folder, ref))
                except Exception as e:  # noqa: BLE001 (as xtuner: logged, another sample is used)
                    print_log(f"Error: {e}", logger="current")
                    return None
                tiles = dynamic_preprocess(image, min(self.min_dynamic_patch, top), top, self.image_size,
                                           self.use_thumbnail)
                pixels.append(torch.stack([self.transformer(tile) for tile in tiles]))
            out["pixel_values"] = torch.cat(pixels)
            input_ids, labels = self.tokenize(record, [p.shape[0] * self.patch_token for p in pixels])
        else:
            input_ids, labels = self.tokenize(record, [])
            out["pixel_values"] = torch.zeros(1, 3, self.image_size, self.image_size)
        if len(input_ids) > self.max_length:
            input_ids = input_ids[:self.max_length]
            labels = labels[:self.max_length]
            print_log(f"Warning: input_ids length({len(input_ids)}) is longer than max_length, cut to "
                      f"{self.max_length}", logger="current")
        if record["images"] and input_ids.count(self.img_context_id) != out["pixel_values"].shape[0] * self.patch_token:
            print_log(f"record {record['index']}: its image tokens do not match its tiles; another sample is used",
                      logger="current")
            return None
        out.update(input_ids=input_ids, labels=labels)
        return out


# ---------------------------------------------------------------- validation during training
#: the multiple-choice prompt of an item without its own ``prompt``: the same as ``vlhub eval``'s
#: (``vlhub.core.eval.mc_prompt``, the MMBench style InternVL is evaluated with); its answer is the letter
LETTERS = "ABCDEFGHIJ"


def mc_prompt(question: str, choices: list[str]) -> str:
    """The prompt ``vlhub eval`` asks an item without ``prompt`` (``vlhub.core.eval.mc_prompt``)."""
    options = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))
    return f"{question}\n{options}\nAnswer with the option's letter from the given choices directly."


def choice_scores(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each sequence's summed log-probability of its labelled tokens (one sequence per choice).

    Args:
        logits: ``(choices, length, vocabulary)`` of the model on the choices' sequences.
        labels: ``(choices, length)``: the scored tokens, ``IGNORE_INDEX`` elsewhere.
    Returns:
        ``(choices,)`` float32: ``log P(choice | prompt)``, the probability that the reply starts with that
        choice (the usual multiple-choice scoring of language models, lm-evaluation-harness's ``acc``).
    """
    targets = labels[:, 1:]
    scores = []
    for row in range(labels.shape[0]):
        positions = torch.nonzero(targets[row] != IGNORE_INDEX).flatten()
        picked = logits[row, :-1][positions].float().log_softmax(-1)
        scores.append(picked.gather(-1, targets[row][positions].unsqueeze(-1)).sum())
    return torch.stack(scores)


def _read_mc(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8-sig") as handle:
        items = json.load(handle)
    return [i for i in items if isinstance(i, dict) and isinstance(i.get("choices"), list) and len(i["choices"]) > 1
            and isinstance(i.get("answer"), int) and 0 <= i["answer"] < len(i["choices"])]


class VlhubValDataset(VlhubInternVLDataset):
    """The validation set of a run: records of ``val.json`` (the loss) then items of ``val_mc.json`` (accuracy).

    Loss records are tokenised exactly as training tokenises them (this is the training dataset class,
    reading at most ``items`` records, evenly spaced). A multiple-choice item (``{"image", "question",
    "choices", "answer", "prompt"}``, the prepared folder's format) is asked with its ``prompt`` (the
    training question; each choice's text is then the answer scored) or else :func:`mc_prompt` (each
    choice's letter is scored); every choice becomes one sequence ``prompt + answer`` whose answer tokens
    are scored by :func:`choice_scores`, and the item counts as correct when the best-scored choice is
    its answer. At most ``mc_items`` items, evenly spaced.
    """

    def __init__(self, model_path: str, template: Any, data_path: str | None = None, image_folder: str = "",
                 mc_path: str | None = None, items: int = 0, mc_items: int = 0, max_length: int = 8192) -> None:
        super().__init__(model_path, template, [data_path] if data_path and items else [], image_folder,
                         max_length=max_length, limit=items)
        self.folder = image_folder or ""
        found = _read_mc(mc_path) if mc_path and mc_items else []
        self.mc = [found[i] for i in spread(len(found), mc_items)]
        self.loss_count = len(self.data)
        print_log(f"validation: {self.loss_count} loss record(s), {len(self.mc)} multiple-choice item(s)",
                  logger="current")

    def __len__(self) -> int:
        return self.loss_count + len(self.mc)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if index < self.loss_count:
            return super().__getitem__(index)
        return self.mc_sample(self.mc[index - self.loss_count])

    def mc_sample(self, item: dict[str, Any]) -> dict[str, Any]:
        """One item as ``{"pixel_values", "choices": [{"input_ids", "labels"}], "answer"}`` (labels: the
        choice's own tokens only)."""
        image = item.get("image")
        images = [image] if isinstance(image, str) and image else []
        prompt = item.get("prompt") if isinstance(item.get("prompt"), str) and item.get("prompt") else None
        question = prompt or mc_prompt(str(item.get("question", "")), [str(c) for c in item["choices"]])
        if images and PLACEHOLDER not in question:
            question = f"{PLACEHOLDER}\n{question}"
        if not images:
            question = question.replace(PLACEHOLDER, "").strip()
        answers = [str(c) for c in item["choices"]] if prompt else list(LETTERS[:len(item["choices"])])
        if images:
            image = self.get_image(os.path.join(self.folder, images[0]))
            top = self.max_tiles(1)
            tiles = dynamic_preprocess(image, min(self.min_dynamic_patch, top), top, self.image_size,
                                       self.use_thumbnail)
            pixels = torch.stack([self.transformer(tile) for tile in tiles])
            image_tokens = [pixels.shape[0] * self.patch_token]
        else:
            pixels = torch.zeros(1, 3, self.image_size, self.image_size)
            image_tokens = []
        choices = []
        for answer in answers:
            record = {"images": images, "system": None,
                      "conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]}
            input_ids, labels = self.tokenize(record, image_tokens)
            keep = len(self.tokenizer.encode(answer, add_special_tokens=False))
            scored = [i for i, label in enumerate(labels) if label != IGNORE_INDEX][:keep]
            labels = [label if i in scored else IGNORE_INDEX for i, label in enumerate(labels)]
            choices.append({"input_ids": input_ids, "labels": labels})
        return {"pixel_values": pixels, "choices": choices, "answer": int(item["answer"])}


def val_collate_fn(instances: list[dict[str, Any]]) -> dict[str, Any]:
    """One validation item (batch size 1) as xtuner's ``default_collate_fn`` batches it, plus ``vlhub_val``
    (``{"kind": "loss"}``, or ``{"kind": "mc", "answer": int}`` with one sequence per choice)."""
    from xtuner.dataset.collate_fns import default_collate_fn

    if len(instances) != 1:
        raise ValueError("the validation dataloader takes one item per batch")
    item = instances[0]
    if "choices" not in item:
        out = default_collate_fn(instances)
        out["data"]["vlhub_val"] = {"kind": "loss"}
        return out
    out = default_collate_fn([{**choice, "pixel_values": item["pixel_values"]} for choice in item["choices"]])
    out["data"]["vlhub_val"] = {"kind": "mc", "answer": item["answer"]}
    return out


class VlhubValMetric(BaseMetric):
    """``val_loss`` (cross-entropy per answer token over every loss record, summed over all ranks' records)
    and ``val_acc`` (share of multiple-choice items answered right), from :meth:`VlhubInternVL.forward`'s
    predict results (mmengine's evaluator gathers them across ranks)."""

    default_prefix = None

    def process(self, data_batch: Any, data_samples: Any) -> None:
        self.results.extend(data_samples)

    def compute_metrics(self, results: list) -> dict[str, float]:
        losses = [r for r in results if r["kind"] == "loss"]
        choices = [r for r in results if r["kind"] == "mc"]
        out: dict[str, float] = {}
        tokens = sum(r["tokens"] for r in losses)
        if tokens:
            out["val_loss"] = sum(r["loss_sum"] for r in losses) / tokens
        if choices:
            out["val_acc"] = sum(1 for r in choices if r["correct"]) / len(choices)
        return out


class VlhubCheckpointKeeper(Hook):
    """Logs each validation (``Validation at iteration N: val_loss: ...``), marks the best checkpoint by
    ``metric`` in ``marker`` (``best_checkpoint.json``, ``vlhub.core.train_metrics``'s format) and keeps the
    newest ``keep`` checkpoints plus the best one (mmengine's ``CheckpointHook`` runs with no limit:
    ``max_keep_ckpts=-1``; this hook deletes the others after each save and each new best).

    Runs after ``CheckpointHook`` (``LOWEST`` priority); only the main process writes or deletes.
    """

    priority = "LOWEST"

    def __init__(self, interval: int, keep: int = -1, metric: str | None = "val_loss", mode: str = "min",
                 marker: str | None = None, filename_tmpl: str = "iter_{}.pth") -> None:
        self.interval = interval
        self.keep = keep
        self.metric = metric
        self.mode = mode
        self.marker = marker
        self.filename_tmpl = filename_tmpl
        self.best: dict[str, Any] | None = None

    def before_train(self, runner: Any) -> None:
        if self.marker and os.path.isfile(self.marker):   # a resumed run goes on from its best so far
            with open(self.marker, encoding="utf-8") as handle:
                found = json.load(handle)
            self.best = found if found.get("metric") == self.metric else None

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value < self.best["value"] if self.mode == "min" else value > self.best["value"]

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        if self.every_n_train_iters(runner, self.interval) or self.is_last_train_iter(runner):
            self._prune(runner)

    def after_val_epoch(self, runner: Any, metrics: dict[str, float] | None = None) -> None:
        values = {k: float(v) for k, v in (metrics or {}).items() if k.startswith("val_")}
        dataset = runner.val_loop.dataloader.dataset
        counts = {"val_items": getattr(dataset, "loss_count", 0), "val_mc_items": len(getattr(dataset, "mc", []))}
        shown = "  ".join([*(f"{k}: {v:.6g}" for k, v in values.items()), *(f"{k}: {v}" for k, v in counts.items())])
        runner.logger.info(f"Validation at iteration {runner.iter}: {shown}")
        checkpoint = os.path.join(runner.work_dir, self.filename_tmpl.format(runner.iter))
        if self.metric in values and os.path.exists(checkpoint) and self._better(values[self.metric]):
            self.best = {"format": "vlhub.best/1", "metric": self.metric, "mode": self.mode,
                         "value": values[self.metric], "iter": runner.iter,
                         "checkpoint": os.path.relpath(checkpoint, os.path.dirname(os.path.abspath(self.marker)))
                         if self.marker else checkpoint, "metrics": values}
            self._write_marker()
            runner.logger.info(f"Best checkpoint: {os.path.basename(checkpoint)} ({self.metric} {values[self.metric]:.6g})")
        self._prune(runner)

    @master_only
    def _write_marker(self) -> None:
        if not self.marker:
            return
        temp = f"{self.marker}.{os.getpid()}.tmp"
        with open(temp, "w", encoding="utf-8") as handle:
            json.dump(self.best, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, self.marker)

    @master_only
    def _prune(self, runner: Any) -> None:
        if self.keep <= 0:
            return
        pattern = re.compile("^" + re.escape(self.filename_tmpl).replace(r"\{\}", r"(\d+)") + "$")
        steps = sorted(int(m.group(1)) for m in map(pattern.match, os.listdir(runner.work_dir)) if m)
        kept = set(steps[-self.keep:]) | ({self.best["iter"]} if self.best else set())
        for step in steps:
            if step not in kept:
                path = os.path.join(runner.work_dir, self.filename_tmpl.format(step))
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
                runner.logger.info(f"Removed checkpoint {os.path.basename(path)} (--save-limit {self.keep}, "
                                   "the best is kept)")
