"""vlhub's prepared records in ms-swift's dataset format (written into the run folder by the ``swift`` trainer).

Input: the prepared folder's LLaVA-style records (:mod:`vlhub.core.prepared.format`: ``image`` (str or list),
``conversations`` of ``{"from": "system" | "human" | "gpt", "value"}``, one ``<image>`` per image in the
human turns) or ``messages`` records (``{"role", "content"}`` with a string content).

Output: JSON lines in ms-swift's standard multimodal format (ms-swift docs, "Custom Dataset"; read by
``swift/dataset/preprocessor/core.py``, ``MessagesPreprocessor``)::

    {"messages": [{"role": "system", "content": "..."},          (only when the record has its own)
                  {"role": "user", "content": "<image>\\nWhat dish is this?"},
                  {"role": "assistant", "content": "..."}],
     "images": ["/abs/path/a.jpg"]}

Image paths become absolute (``image_root`` / path) so the file can be read from any working folder;
the ``<image>`` tags stay where the record put them (ms-swift replaces each, in order, by the template's
image placeholder). Records whose turns are not a conversation ms-swift can train are left out and
counted, by index, with the reason.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlhub.core.fsutil import atomic_write_text

from .inputs import record_images

ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}
IMAGE_TAG = "<image>"


@dataclass
class Converted:
    """What :func:`convert_records` wrote."""

    path: Path
    records: int                                   # records read
    kept: int                                      # records written
    problems: list[dict[str, Any]] = field(default_factory=list)   # {"index", "field", "reason", "kind"}
    with_image: int = 0
    multi_image: int = 0
    system_prompts: int = 0


def _turns(record: dict[str, Any]) -> list[Any] | None:
    turns = record.get("conversations", record.get("messages"))
    return turns if isinstance(turns, list) else None


def to_messages(record: Any, image_root: Path) -> tuple[dict[str, Any] | None, str]:
    """One record in ms-swift's format, or ``(None, reason)``.

    Args:
        record: a prepared (LLaVA-style) or ``messages`` record.
        image_root: the folder its image paths are relative to.
    Returns:
        ``({"messages": [...], "images": [...]}, "")``, or ``(None, reason)`` for a record ms-swift cannot
        train (no turns, an unknown role, a non-text turn, no assistant answer, or ``<image>`` tags that do
        not match its images).
    """
    if not isinstance(record, dict):
        return None, "not a JSON object"
    turns = _turns(record)
    if not turns:
        return None, "no conversations/messages list"
    messages = []
    for n, turn in enumerate(turns):
        if not isinstance(turn, dict):
            return None, f"turn {n} is not an object"
        role = ROLES.get(str(turn.get("from", turn.get("role"))))
        text = turn.get("value", turn.get("content"))
        if role is None:
            return None, f"turn {n} has the role {turn.get('from', turn.get('role'))!r}"
        if not isinstance(text, str):
            return None, f"turn {n} is not text (content lists are not converted)"
        if role == "system" and n != 0:
            return None, f"turn {n} is a system turn after the first turn"
        messages.append({"role": role, "content": text})
    if not any(m["role"] == "assistant" for m in messages):
        return None, "no assistant (gpt) turn to train on"
    images = [str((image_root / ref).resolve()) for ref in record_images(record)]
    tags = sum(m["content"].count(IMAGE_TAG) for m in messages if m["role"] == "user")
    if tags != len(images):
        if tags == 0 and len(images) == 1:   # a single image without its tag: it goes first, as LLaVA does
            first = next(m for m in messages if m["role"] == "user")
            first["content"] = f"{IMAGE_TAG}\n{first['content']}"
        else:
            return None, f"{tags} <image> tag(s) for {len(images)} image(s)"
    return {"messages": messages, "images": images}, ""


def convert_records(records: list[Any], image_root: Path, out: Path) -> Converted:
    """Write ``records`` as ms-swift JSON lines to ``out`` (atomically), the ones it cannot train left out.

    Args:
        records: the training records (a prepared split).
        image_root: the folder their image paths are relative to.
        out: the ``.jsonl`` file to write.
    Returns:
        :class:`Converted` (counts and the records left out: ``kind`` ``record``, or ``image`` for a missing
        image file).
    """
    lines, problems = [], []
    done = Converted(Path(out), len(records), 0)
    for index, record in enumerate(records):
        converted, reason = to_messages(record, image_root)
        if converted is None:
            problems.append({"index": index, "field": "conversations", "reason": reason, "kind": "record"})
            continue
        missing = [p for p in converted["images"] if not Path(p).is_file()]
        if missing:
            problems.append({"index": index, "field": "image", "reason": f"no such image: {missing[0]}",
                             "kind": "image"})
            continue
        done.with_image += bool(converted["images"])
        done.multi_image += len(converted["images"]) > 1
        done.system_prompts += converted["messages"][0]["role"] == "system"
        lines.append(json.dumps(converted, ensure_ascii=False) + "\n")
    done.kept, done.problems = len(lines), problems
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(out), "".join(lines))
    return done
