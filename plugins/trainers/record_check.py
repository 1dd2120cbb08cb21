"""What the xtuner trainer's record check found, as errors and warnings (launcher side, no heavy import).

The check itself runs in the train env: ``VlhubInternVLDataset`` (``plugins/workers/train_internvl.py``)
inspects every record as it is built, and ``train_inspect.py`` reports what it found
(:func:`check_report` there). Each record it cannot train is left out with its index, field, reason
and ``kind``:

- ``record``: xtuner 0.2.0 would crash on it or train it wrongly (see ``read_record``);
- ``length``: ``--max-length`` would cut its image tokens, or every answer token;
- ``image``: an image file is missing or unreadable (xtuner would train another record instead).

``vlhub train`` refuses ``record`` and ``length`` problems (exit 2: the data needs fixing) and warns
about ``image`` ones; samples longer than ``--max-length`` are a warning (they are cut), an error
with ``--strict``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from vlhub.core.errors import BadInput

from . import notices

#: problem kinds that stop a plan (the others are warnings)
REFUSED = ("record", "length")
#: records named in one line
SHOWN = 3


def _describe(problem: dict[str, Any]) -> str:
    where = f" ({problem['field']})" if problem.get("field") else ""
    return f"record {problem['index']}{where}: {problem['reason']}"


def validate_hint(file: Path, image_root: Path, model: Path) -> str:
    """The command that lists every record the check refuses."""
    return (f"`vlhub data validate {file} --images {image_root} --trainer xtuner --model {model}` "
            "lists every one")


def refused(check: dict[str, Any]) -> list[dict[str, Any]]:
    """The problems that stop a plan (kinds :data:`REFUSED`), as listed (capped) in the report."""
    return [p for p in check.get("problems", []) if p.get("kind") in REFUSED]


def raise_refused(check: dict[str, Any], file: Path, image_root: Path, model: Path) -> None:
    """A :class:`BadInput` naming the records the trainer cannot train (index and reason), if any.

    Raises:
        BadInput: some record would crash xtuner or train wrongly, or ``--max-length`` would cut its
            image tokens or every answer token.
    """
    bad = refused(check)
    if not bad:
        return
    count = sum(n for kind, n in check.get("left_out", {}).items() if kind in REFUSED)
    others = [str(p["index"]) for p in bad[1:SHOWN + 1]]
    also = f"; also record{'s' if len(others) > 1 else ''} {', '.join(others)}" if others else ""
    more = f" and {count - 1 - len(others)} more" if count - 1 > len(others) else ""
    lengths = any(p["kind"] == "length" for p in bad)
    raise BadInput(f"--data {file}: {count} of {check['records']} records cannot be trained by xtuner "
                   f"(first: {_describe(bad[0])}{also}{more})",
                   "fix or remove those records" + (" (or raise --max-length)" if lengths else "") + "; "
                   + validate_hint(file, image_root, model))


def over_length(check: dict[str, Any]) -> str:
    """``3 of 15 samples exceed --max-length 4096 and will be cut (worst: record 7, 5123 tokens, 1027 over)``,
    or ``""``."""
    count = check.get("over_max_length", 0)
    if not count:
        return ""
    return notices.over_length(count, check["kept"], check["max_length"], check["over_max_length_worst"])


def raise_over_length(check: dict[str, Any], file: Path) -> None:
    """With ``--strict``: a :class:`BadInput` when some sample is longer than ``--max-length``."""
    text = over_length(check)
    if text:
        first = ", ".join(str(r["index"]) for r in check.get("over_max_length_records", [])[:SHOWN + 1])
        raise BadInput(f"--data {file}: {text.replace(' and will be cut', '')}; record(s) {first}",
                       f"raise --max-length to {check['over_max_length_worst']['tokens']}, shorten those records, "
                       "or drop --strict to train them cut")


def notes(check: dict[str, Any]) -> list[str]:
    """Warnings: records left out for their images, samples over ``--max-length``."""
    out = []
    images = [p for p in check.get("problems", []) if p.get("kind") == "image"]
    if images:
        count = check.get("left_out", {}).get("image", len(images))
        out.append(notices.images_left_out(count, _describe(images[0])))
    text = over_length(check)
    if text:
        out.append(text)
    return out
