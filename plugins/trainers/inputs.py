"""Checks of the model folder and the prepared data that need no heavy import.

They run in the launcher before anything is generated, so a missing file, a template
that does not fit the model or data without images is a one-line error at once.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlhub.core import messages
from vlhub.core.errors import BadInput
from vlhub.core.prepared.format import MANIFEST, load_manifest

#: LLM architectures xtuner 0.2.0's InternVL_V1_5_Dataset accepts, and their prompt template.
TEMPLATE_FOR_ARCH = {"InternLM2ForCausalLM": "internlm2_chat", "Phi3ForCausalLM": "phi3_chat"}
#: The refusal of a model whose LLM xtuner 0.2.0 cannot train (InternVL2.5/3/3.5 with Qwen LLMs): it names the
#: trainer that can.
OTHER_LLM = "xtuner.other_llm"
messages.register(
    OTHER_LLM,
    ("--model {path}: its LLM is {arch}; xtuner 0.2.0 trains InternVL with {trains} only",
     "train it with `--trainer swift` (ms-swift: InternVL2.5/3 with Qwen2.5, InternVL3.5 with Qwen3), or use an "
     "InternVL2 model with an InternLM2 or Phi-3 LLM (e.g. InternVL2-2B, -4B, -8B, -26B)"),
    ("--model {path}：它的 LLM 是 {arch}；xtuner 0.2.0 只能训练 LLM 为 {trains} 的 InternVL",
     "请改用 `--trainer swift`（ms-swift：LLM 为 Qwen2.5 的 InternVL2.5/3、LLM 为 Qwen3 的 InternVL3.5），或使用 LLM 为 "
     "InternLM2 或 Phi-3 的 InternVL2 模型（例如 InternVL2-2B、-4B、-8B、-26B）"))


@dataclass
class ModelInfo:
    """What the trainer needs to know about an InternVL2-format model folder."""

    path: Path
    architecture: str
    llm_type: str
    template: str
    tile_tokens: int                # image tokens per 448x448 tile
    max_tiles: int                  # max_dynamic_patch + thumbnail

    @property
    def max_image_tokens(self) -> int:
        return self.tile_tokens * self.max_tiles


@dataclass
class DataInfo:
    """The training JSON, its image root and what a quick look at the records found."""

    file: Path
    image_root: Path
    records: int
    with_image: int
    missing_images: list[str] = field(default_factory=list)  # per record with a missing image: the first


def _read_json(path: Path, flag: str) -> Any:
    try:
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadInput(f"{flag} {path}: cannot read JSON ({exc})", "fix the file or prepare the data again "
                       "with `vlhub data prepare`") from None


def check_model(model: Path) -> ModelInfo:
    """The model folder's config, remote code, tokenizer and weights, or a BadInput naming what is missing."""
    model = Path(model).expanduser().resolve()
    fix = "give --model an InternVL2 folder (config.json, remote code, tokenizer, weights)"
    if not model.is_dir():
        raise BadInput(f"--model {model}: no such folder", fix)
    config = model / "config.json"
    if not config.is_file():
        raise BadInput(f"--model {model}: no config.json", fix)
    cfg = _read_json(config, "--model")
    llm = cfg.get("llm_config") or {}
    vision = cfg.get("vision_config") or {}
    if not llm or not vision:
        raise BadInput(f"--model {model}: config.json has no llm_config/vision_config (not an InternVL model)", fix)
    missing = [f"{ref.split('.')[0]}.py" for ref in (cfg.get("auto_map") or {}).values()
               if not (model / f"{ref.split('.')[0]}.py").is_file()]
    if not cfg.get("auto_map"):
        missing.append("auto_map in config.json (remote code)")
    if not (model / "tokenizer_config.json").is_file():
        missing.append("tokenizer_config.json")
    if not any((model / name).is_file() for name in ("tokenizer.model", "tokenizer.json")):
        missing.append("tokenizer.model or tokenizer.json")
    index = next((p for p in (model / "model.safetensors.index.json", model / "pytorch_model.bin.index.json")
                  if p.is_file()), None)
    if index is not None:
        shards = set((_read_json(index, "--model").get("weight_map") or {}).values())
        missing += sorted(s for s in shards if not (model / s).is_file())
    elif not any(model.glob("*.safetensors")) and not any(model.glob("*.bin")):
        missing.append("weights (*.safetensors or *.bin)")
    if missing:
        raise BadInput(f"--model {model}: missing {', '.join(missing)}", "copy the complete model folder "
                       "(a download may have stopped half-way)")
    arch = (llm.get("architectures") or ["?"])[0]
    if arch not in TEMPLATE_FOR_ARCH:
        raise BadInput(OTHER_LLM, path=model, arch=arch, trains=" or ".join(TEMPLATE_FOR_ARCH))
    tile = int(cfg.get("force_image_size") or vision.get("image_size") or 448)
    patch = int(vision.get("patch_size") or 14)
    ratio = float(cfg.get("downsample_ratio") or 0.5)
    tiles = int(cfg.get("max_dynamic_patch") or 12) + int(bool(cfg.get("use_thumbnail")))
    return ModelInfo(model, arch, str(llm.get("model_type", "")), TEMPLATE_FOR_ARCH[arch],
                     int((tile // patch) ** 2 * ratio ** 2), tiles)


def trains(model: Path) -> bool:
    """Whether xtuner 0.2.0 trains the InternVL folder ``model``: its ``llm_config.architectures`` is one of
    :data:`TEMPLATE_FOR_ARCH` (the rule :func:`check_model` refuses by); never raises."""
    try:
        config = json.loads((Path(model) / "config.json").read_text(encoding="utf-8"))
        return (config["llm_config"]["architectures"] or ["?"])[0] in TEMPLATE_FOR_ARCH
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return False


def check_template(info: ModelInfo, template: str | None) -> str:
    """The prompt template to use: the given one if it fits the model, else an error."""
    if template is None or template == info.template:
        return info.template
    raise BadInput(f"--template {template} does not fit the model ({info.architecture} chats in "
                   f"{info.template})", f"use --template {info.template}, or leave --template out")


def _data_file(data: Path) -> tuple[Path, Path | None]:
    """The training JSON in ``data`` (a prepared folder of any format version, or a JSON file) and
    the image root it names."""
    if data.is_file():
        return data, None
    if (data / MANIFEST).is_file():
        manifest = load_manifest(data)
        if "train" in manifest.files:
            return manifest.files["train"], manifest.image_root
    for name in ("train.json", "train.jsonl"):
        if (data / name).is_file():
            return data / name, None
    raise BadInput(f"--data {data}: no prepared.json or train.json there",
                   "prepare the data first (`vlhub data prepare NAME --source DIR --out OUT`) and give --data OUT")


def record_images(record: Any) -> list[str]:
    """A raw record's image paths: ``image`` (or ``images``), else its content lists' image parts."""
    if not isinstance(record, dict):
        return []
    images = record.get("image", record.get("images"))
    if images is None:
        turns = record.get("conversations", record.get("messages"))
        parts = [part for turn in (turns if isinstance(turns, list) else []) if isinstance(turn, dict)
                 for part in (lambda v: v if isinstance(v, list) else [v])(turn.get("value", turn.get("content")))
                 if isinstance(part, dict) and part.get("type") in ("image", "image_url")]
        images = [ref.get("url") if isinstance(ref, dict) else ref for ref in
                  (p.get("image") or p.get("image_url") or p.get("url") or p.get("path") for p in parts)]
    images = [images] if isinstance(images, str) else images if isinstance(images, list) else []
    return [i for i in images if isinstance(i, str) and i]


def check_data(data: Path, image_root: str | None = None) -> DataInfo:
    """The training records: readable, a list of LLaVA-style (``conversations``) or ``messages`` records,
    some with images that exist. Each record is checked later, in the train env, by the dataset itself."""
    data = Path(data).expanduser().resolve()
    if not data.exists():
        raise BadInput(f"--data {data}: no such file or folder", "give --data the prepared data folder")
    file, root = _data_file(data)
    if not file.is_file():
        raise BadInput(f"--data {data}: {file} is missing", "prepare the data again with `vlhub data prepare`")
    root = Path(image_root).expanduser().resolve() if image_root else (root or file.parent).resolve()
    records = _read_json(file, "--data")
    if not isinstance(records, list) or not records:
        raise BadInput(f"--data {file}: no records (expected a JSON list)", "prepare the data again")
    if not any(isinstance(r, dict) and isinstance(r.get("conversations", r.get("messages")), list) for r in records):
        raise BadInput(f"--data {file}: no record has a `conversations` (or `messages`) list (not LLaVA-style)",
                       "prepare the data with `vlhub data prepare`, which writes LLaVA-style records")
    images = [refs for refs in map(record_images, records) if refs]
    if not images:
        raise BadInput(f"--data {file}: none of the {len(records)} records has an image",
                       "InternVL fine-tuning needs image records: add an `image` field to each record")
    exists = [[(root / ref).is_file() for ref in refs] for refs in images]
    missing = [next((ref for ref, ok in zip(refs, found) if not ok), None) for refs, found in zip(images, exists)]
    if not any(map(any, exists)):
        raise BadInput(f"--data {file}: no image found under {root} (e.g. {images[0][0]})",
                       "give --image-root the folder the image paths are relative to")
    return DataInfo(file, root, len(records), len(images), [ref for ref in missing if ref])
