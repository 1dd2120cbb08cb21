"""FoodieQA (``lyan62/FoodieQA``) as XTuner InternVL data.

Source: the folder holding ``sivqa_tidy.json`` (single-image questions:
``question``, ``choices``, ``answer`` index, ``food_meta`` with ``food_file`` and
``food_name``), ``mivqa_tidy.json`` (``question``, ``images``, ``answer``) and
``textqa_tidy.json`` (``question``, ``choices``, ``answer``), with the images they
name; a ``FoodieQA/`` subfolder (the Hub zip, extracted) is found too.

The default single-image conversion is the tutorial's ``process_food.py``: human
= question + ``"\\n<image>"``, gpt = ``choices[answer] + "，图中的菜是" + food_name``.
The split is by dish (see :mod:`vlhub.core.prepared.split`); validation keeps its
choices and answer index in ``val_mc.json``, with each question's categories
(:data:`CATEGORIES`, from its ``food_meta``) for ``vlhub eval``'s per-category accuracy.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from vlhub.core.errors import BadInput
from vlhub.core.options import Option, translated
from vlhub.core.prepared.folder import check_out, finish
from vlhub.core.prepared.format import PreparedData, Problem
from vlhub.core.prepared.images import Checks
from vlhub.core.prepared.records import PLACEHOLDER, Item, read_json
from vlhub.core.prepared.split import split
from vlhub.core.prepared.validate import validate
from vlhub.core.types import ProgressCallback

from . import labels_zh

REPO = "lyan62/FoodieQA"
SUBSETS = {"sivqa": "sivqa_tidy.json", "mivqa": "mivqa_tidy.json", "textqa": "textqa_tidy.json"}
LETTERS = "ABCDEFGHIJ"
FIELDS = {"answer": "", "letter": "", "index": 0, "food_name": "", "question": ""}
#: meta fields that are text, not categories
NOT_META = {"question", "question_en", "choices", "choices_en", "answer", "images", "food_meta", "food_file"}
#: the fields each ``val_mc.json`` item carries as its ``categories`` when the source question has them
CATEGORIES = ("food_type", "main_region")


class FoodieQA:
    name = "foodieqa"
    description = "FoodieQA (lyan62/FoodieQA): Chinese food multiple-choice VQA, split by dish."
    descriptions = {"zh": labels_zh.DESCRIPTIONS["foodieqa"]}
    #: what a published model card says about the data (:class:`vlhub.core.types.Dataset`, optional)
    card_data = {"hub_id": REPO, "license": "cc-by-nc-nd-4.0",
                 "license_url": "https://creativecommons.org/licenses/by-nc-nd/4.0/", "evaluation_only": True}
    options = translated((
        Option("subsets", "Comma-separated subsets: sivqa, mivqa, textqa.", str, "sivqa"),
        Option("answer_template", "sivqa answer; fields {answer} {letter} {index} {food_name} {question}.",
               str, "{answer}，图中的菜是{food_name}"),
        Option("mivqa_template", "mivqa answer (same fields; {answer} is 图{letter}).", str, "图{letter}"),
        Option("textqa_template", "textqa answer (same fields).", str, "{answer}"),
        Option("with_choices", "Append the lettered choices to each question.", bool, False),
        Option("val_fraction", "Share of records kept for validation (whole dishes).", float, 0.1),
        Option("seed", "Seed of the split.", int, 0),
    ), "zh", labels_zh.FOODIEQA)

    def prepare(self, source: Path, out: Path, options: Mapping[str, Any],
                progress: ProgressCallback | None = None) -> PreparedData:
        """Convert the FoodieQA folder ``source`` into ``out`` (:meth:`vlhub.core.types.Dataset.prepare`)."""
        subsets = _subsets(options["subsets"])
        for key in ("answer_template", "mivqa_template", "textqa_template"):
            _check_template(key, options[key])
        if not 0 <= options["val_fraction"] < 1:
            raise BadInput(f"val_fraction={options['val_fraction']} is outside [0, 1)", "use e.g. 0.1")
        root = find_root(Path(source), subsets)
        check_out(Path(source), out, options["force"])
        sources = {subset: _load_list(root / SUBSETS[subset]) for subset in subsets}
        with Checks(str(root)) as checks:  # the images are checked while the records are converted
            checks.add(ref for subset, rows in sources.items() for raw in rows for ref in _source_refs(subset, raw))
            items: list[Item] = []
            rejected: list[Problem] = []
            for subset, rows in sources.items():
                for index, raw in enumerate(rows):
                    try:
                        items.append(_convert(subset, index, raw, options))
                    except (KeyError, ValueError, TypeError, IndexError) as exc:
                        rejected.append(Problem(index, _reason(exc), f"{SUBSETS[subset]}: {_field(exc)}"))
            checked = validate(items, root, progress, rejected, checks)
        anchors = [i for i in checked.items if not i.follower]
        followers = [i for i in checked.items if i.follower]
        parts = split(anchors, options["val_fraction"], options["seed"], followers)
        return finish(out, dataset=self.name, source=Path(source), image_root=root, validation=checked,
                      split=parts, options=options, progress=progress,
                      root_fix=f"the image paths must be relative to the FoodieQA folder {root} (beside "
                      f"{SUBSETS[subsets[0]]}): give the folder that holds both as --source")

    def download(self, out: Path, token: str | None = None, progress: ProgressCallback | None = None) -> Path:
        """Download the gated dataset with ``token``, extract ``FoodieQA.zip``; the source folder."""
        from .hub import extract_zip, snapshot

        folder = snapshot(REPO, Path(out), token, progress)
        archive = folder / "FoodieQA.zip"
        if archive.is_file() and not _has_subsets(folder / "FoodieQA") and not _has_subsets(folder):
            extract_zip(archive, folder)
        return find_root(folder, ["sivqa"])


def _subsets(text: str) -> list[str]:
    names = [s.strip() for s in str(text).split(",") if s.strip()]
    bad = [s for s in names if s not in SUBSETS]
    if bad or not names:
        raise BadInput(f"unknown subset(s) {', '.join(bad) or '(none)'}",
                       f"choose from {', '.join(SUBSETS)}, comma-separated (e.g. subsets=sivqa,textqa)")
    return list(dict.fromkeys(names))


def _check_template(key: str, template: str) -> None:
    try:
        template.format(**FIELDS)
    except (KeyError, IndexError, ValueError) as exc:
        raise BadInput(f"option {key}={template!r} is not a valid template ({type(exc).__name__}: {exc})",
                       f"use only the fields {', '.join('{' + f + '}' for f in FIELDS)}") from None


def _has_subsets(folder: Path, subsets: list[str] | None = None) -> bool:
    return any((folder / SUBSETS[s]).exists() for s in subsets or SUBSETS)


def find_root(source: Path, subsets: list[str]) -> Path:
    """The folder holding the subset files: ``source`` or its ``FoodieQA/`` subfolder."""
    source = source.resolve()
    if not source.is_dir():
        raise BadInput(f"{source} is not a folder", "give the FoodieQA folder (with sivqa_tidy.json) as --source")
    for folder in (source, source / "FoodieQA"):
        if _has_subsets(folder, subsets):
            missing = [SUBSETS[s] for s in subsets if not (folder / SUBSETS[s]).exists()]
            if missing:
                raise BadInput(f"{folder} has no {', '.join(missing)}",
                               "choose subsets that exist (e.g. --opt subsets=sivqa)")
            return folder
    if (source / "FoodieQA.zip").is_file():
        raise BadInput(f"{source / 'FoodieQA.zip'} is not extracted",
                       f"run `unzip FoodieQA.zip -d {source}` or `vlhub data download foodieqa --out DIR`")
    raise BadInput(f"{source} has no {', '.join(SUBSETS[s] for s in subsets)}",
                   "give the FoodieQA folder as --source (download it with `vlhub data download foodieqa`)")


def _load_list(path: Path) -> list[Any]:
    data = read_json(path)
    if not isinstance(data, list):
        raise BadInput(f"expected a list of questions, found a JSON {type(data).__name__}",
                       "give the original FoodieQA file", where=str(path))
    return data


def _source_refs(subset: str, raw: Any) -> list[Any]:
    """The image paths a source question names, read before conversion to start the checks."""
    if not isinstance(raw, dict):
        return []
    if subset == "mivqa":
        refs = raw.get("images")
    else:
        meta = raw.get("food_meta") if subset == "sivqa" else None
        refs = [meta.get("food_file")] if isinstance(meta, dict) else None
    return refs if isinstance(refs, list) else []


class _Missing(KeyError):
    """A required field is absent (its name is the key)."""


def _get(raw: Mapping[str, Any], key: str) -> Any:
    if not isinstance(raw, dict):
        raise TypeError(f"record is a JSON {type(raw).__name__}, not an object")
    if key not in raw:
        raise _Missing(key)
    return raw[key]


def _reason(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"missing field {exc.args[0]!r}"
    return str(exc)


def _field(exc: Exception) -> str:
    return str(exc.args[0]) if isinstance(exc, KeyError) else getattr(exc, "field", "record")


class _BadAnswer(ValueError):
    field = "answer"


def _answer(raw: Mapping[str, Any], count: int) -> int:
    value = _get(raw, "answer")
    try:
        index = int(value)
    except (TypeError, ValueError):
        raise _BadAnswer(f"answer {value!r} is not a choice index") from None
    if not 0 <= index < count:
        raise _BadAnswer(f"answer {index} is out of range for {count} choices")
    return index


def _lettered(choices: list[Any]) -> str:
    return "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))


def _meta(raw: Mapping[str, Any], subset: str) -> dict[str, Any]:
    """The record's short fields and its ``food_meta`` (stats keep the categorical ones)."""
    meta = {k: v for k, v in raw.items() if k not in NOT_META}
    food_meta = raw.get("food_meta")
    if isinstance(food_meta, dict):
        meta |= food_meta
    meta["subset"] = subset
    return meta


def _categories(meta: Mapping[str, Any]) -> dict[str, str]:
    """The :data:`CATEGORIES` a question has (short non-empty text or numbers), as text."""
    found = {key: meta.get(key) for key in CATEGORIES}
    return {key: str(value).strip() for key, value in found.items()
            if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip()}


def _convert(subset: str, index: int, raw: Any, opts: Mapping[str, Any]) -> Item:
    question = str(_get(raw, "question"))
    meta = _meta(raw, subset)
    food = str((raw.get("food_meta") or {}).get("food_name") or raw.get("food_name") or "")
    if subset == "mivqa":
        images = _get(raw, "images")
        if not isinstance(images, list) or not images:
            raise TypeError("'images' is not a non-empty list")
        choices = list(LETTERS[:len(images)])
        answer = _answer(raw, len(images))
        human = "".join(f"{LETTERS[i]}. {PLACEHOLDER}\n" for i in range(len(images))) + question
        text = f"图{choices[answer]}"
        image: Any = images
        template = opts["mivqa_template"]
    else:
        choices = _get(raw, "choices")
        if not isinstance(choices, list) or not choices:
            raise TypeError("'choices' is not a non-empty list")
        answer = _answer(raw, len(choices))
        text = str(choices[answer])
        human = question + (f"\n{_lettered(choices)}" if opts["with_choices"] else "")
        if subset == "sivqa":
            food_meta = _get(raw, "food_meta")
            image = _get(food_meta, "food_file")
            food = str(_get(food_meta, "food_name"))
            human += f"\n{PLACEHOLDER}"
            template = opts["answer_template"]
        else:
            image = None
            template = opts["textqa_template"]
    gpt = template.format(answer=text, letter=LETTERS[answer], index=answer, food_name=food, question=question)
    record: dict[str, Any] = {"id": f"{subset}-{index}"}
    if image is not None:
        record["image"] = image
    record["conversations"] = [{"from": "human", "value": human}, {"from": "gpt", "value": gpt}]
    refs = image if isinstance(image, list) else [image] if image else []
    groups = [f"img:{r}" for r in refs if isinstance(r, str)]
    if subset != "mivqa" and food:
        groups.insert(0, f"dish:{food}")
    mc = {"id": record["id"], "subset": subset, "image": image, "question": question, "choices": choices,
          "answer": answer, "prompt": human, "food_name": food, "categories": _categories(meta)}
    return Item(record, index, SUBSETS[subset], groups, follower=subset == "mivqa", mc=mc, meta=meta)
