"""LLaVA-style JSON / JSONL (and ShareGPT/OpenAI ``messages`` records), and CLoT_cn_2000.

Both read a list of records, convert ``messages`` chats to LLaVA turns, validate,
optionally sample N usable records, and split by image (no image in two splits).
CLoT is the same format with a fixed layout: ``ex_cn.json`` + ``ex_images/``.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Mapping

from vlhub.core.errors import BadInput
from vlhub.core.options import Option, translated
from vlhub.core.prepared.folder import check_out, finish
from vlhub.core.prepared.format import PreparedData
from vlhub.core.prepared.images import Checks, normalise
from vlhub.core.prepared.records import SYSTEM_RULES, load_items
from vlhub.core.prepared.split import split
from vlhub.core.prepared.validate import validate
from vlhub.core.types import ProgressCallback

from . import labels_zh

COMMON_OPTIONS = translated((
    Option("sample", "Keep N usable records, chosen at random with the seed (0: all).", int, 0),
    Option("val_fraction", "Share of records kept for validation (whole images).", float, 0.0),
    Option("seed", "Seed of the sample and the split.", int, 0),
    Option("system", "System turns: keep (a first system turn is the record's own system prompt; a later one "
           "is refused), reject (records with a system turn are dropped and listed) or drop (system turns are "
           "left out; training uses the chat template's system prompt).", str, "keep", SYSTEM_RULES),
), "zh", labels_zh.COMMON)


def build(name: str, source: Path, data_file: Path, image_root: Path, out: Path, opts: Mapping[str, Any],
          progress: ProgressCallback | None, root_fix: str = "") -> PreparedData:
    """Validate, sample, split and write one LLaVA-style file (``root_fix``: see :func:`finish`)."""
    if not 0 <= opts["val_fraction"] < 1:
        raise BadInput(f"val_fraction={opts['val_fraction']} is outside [0, 1)", "use e.g. 0.1")
    if opts["sample"] < 0:
        raise BadInput(f"sample={opts['sample']} is negative", "give a count of records, or 0 for all")
    for given in (source, image_root):
        check_out(given, out, opts["force"])
    with Checks(str(image_root)) as checks:
        items, rejected = load_items(data_file, checks, opts.get("system", "keep"))
        checked = validate(items, image_root, progress, rejected, checks)
    usable = checked.items
    if opts["sample"] and opts["sample"] < len(usable):
        keep = sorted(random.Random(opts["seed"]).sample(range(len(usable)), opts["sample"]))
        usable = [usable[i] for i in keep]
    parts = split(usable, opts["val_fraction"], opts["seed"])
    return finish(out, dataset=name, source=source, image_root=image_root, validation=checked,
                  split=parts, options=opts, progress=progress, root_fix=root_fix)


class LlavaJson:
    name = "llava-json"
    description = "Any LLaVA-style JSON/JSONL, or ShareGPT/OpenAI `messages` records, converted to LLaVA."
    descriptions = {"zh": labels_zh.DESCRIPTIONS["llava-json"]}
    options = translated((
        Option("file", "The JSON/JSONL file inside --source (when --source is a folder).", str, ""),
        Option("image_root", "Folder the image paths are relative to (default: the file's folder).", str, ""),
        *COMMON_OPTIONS,
    ), "zh", labels_zh.LLAVA_JSON)

    def prepare(self, source: Path, out: Path, options: Mapping[str, Any],
                progress: ProgressCallback | None = None) -> PreparedData:
        """Convert the file ``source`` (or the one in folder ``source``) into ``out``
        (:meth:`vlhub.core.types.Dataset.prepare`)."""
        data_file = _data_file(Path(source).resolve(), options["file"])
        image_root = Path(options["image_root"]).resolve() if options["image_root"] else data_file.parent
        if not image_root.is_dir():
            raise BadInput(f"image_root {image_root} is not a folder", "pass --opt image_root=DIR")
        return build(self.name, data_file, data_file, image_root, out, options, progress,
                     "pass the folder the image paths are relative to: --opt image_root={root}")


def _data_file(source: Path, name: str) -> Path:
    if source.is_file():
        return source
    if source.exists() and not source.is_dir():
        raise BadInput(f"{source} is not a regular file or folder", "give the JSON/JSONL file or its folder as --source")
    if not source.is_dir():
        raise BadInput(f"{source} does not exist", "give the JSON/JSONL file or its folder as --source")
    if name:
        return source / normalise(name)
    found = sorted(p for p in source.iterdir() if p.suffix in (".json", ".jsonl") and p.is_file())
    if len(found) != 1:
        listed = ", ".join(p.name for p in found) or "none"
        raise BadInput(f"{source} holds {len(found)} JSON/JSONL files ({listed})",
                       "pass the file itself as --source, or --opt file=NAME")
    return found[0]


class Clot:
    name = "clot"
    description = "CLoT_cn_2000 (ex_cn.json + ex_images/): validate, sample N, write LLaVA data."
    descriptions = {"zh": labels_zh.DESCRIPTIONS["clot"]}
    #: what a published model card says about the data (:class:`vlhub.core.types.Dataset`, optional):
    #: CLoT_cn_2000 is a sample of the Chinese part of CLoT's Oogiri-GO
    card_data = {"hub_id": "zhongshsh/CLoT-Oogiri-GO", "license": "mit", "evaluation_only": False}
    options = COMMON_OPTIONS

    def prepare(self, source: Path, out: Path, options: Mapping[str, Any],
                progress: ProgressCallback | None = None) -> PreparedData:
        """Convert the CLoT_cn_2000 folder ``source`` into ``out`` (:meth:`vlhub.core.types.Dataset.prepare`)."""
        source = Path(source).resolve()
        data_file = source / "ex_cn.json"
        if not data_file.exists():
            raise BadInput(f"{source} has no ex_cn.json",
                           "give the CLoT_cn_2000 folder (ex_cn.json + ex_images/) as --source")
        return build(self.name, source, data_file, source, out, options, progress,
                     f"the image paths must be relative to the CLoT_cn_2000 folder {source} (ex_images/ beside "
                     "ex_cn.json): move the images there, or prepare the file with `vlhub data prepare llava-json "
                     "--opt image_root={root}`")
