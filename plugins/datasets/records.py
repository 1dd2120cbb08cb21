"""LLaVA-style records: reading JSON/JSONL sources, converting ``messages`` chats, structural checks.

A record is ``{"id", "image": str | list[str] (optional), "conversations": [{"from", "value"}]}``
with ``from`` alternating ``human`` / ``gpt`` and one ``<image>`` placeholder per image.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vlhub.core.errors import BadInput

PLACEHOLDER = "<image>"
ROLES = {"human": "human", "user": "human", "gpt": "gpt", "assistant": "gpt"}


def read_json(path: Path) -> Any:
    """Load a UTF-8 JSON file (a BOM is accepted); unreadable input is :class:`BadInput`."""
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
                       "fix the file or re-export it as JSON", where=str(path)) from None


def read_records(path: Path) -> list[Any]:
    """A JSON list, or JSON Lines (one object per line), as a list of raw records."""
    text = _read_text(path)
    stripped = text.lstrip()
    if stripped.startswith("["):
        data = read_json(path)
    elif path.suffix == ".jsonl" or stripped.startswith("{") and "\n{" in stripped:
        data = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                data.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise BadInput(f"line {number} is not valid JSON ({exc.msg})",
                               "fix that line: JSON Lines needs one JSON object per line", where=str(path)) from None
    else:
        data = read_json(path)
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise BadInput(f"expected a list of records, found a JSON {type(data).__name__}",
                       "give a JSON list (or JSON Lines) of LLaVA or messages records", where=str(path))
    return data


def _read_text(path: Path) -> str:
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise BadInput("file not found", "check the path", where=str(path)) from None
    except IsADirectoryError:
        raise BadInput("is a folder, not a file", "give the JSON file itself", where=str(path)) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadInput(f"not UTF-8 (invalid byte at offset {exc.start})",
                       "re-save the file as UTF-8 (e.g. `iconv -f GBK -t UTF-8`)", where=str(path)) from None


def to_llava(raw: Any, index: int) -> dict[str, Any]:
    """One raw record as a LLaVA record; ShareGPT/OpenAI ``messages`` are converted.

    Raises ``ValueError`` with the reason when the record has neither shape.
    """
    if not isinstance(raw, dict):
        raise ValueError(f"record is a JSON {type(raw).__name__}, not an object")
    record: dict[str, Any] = {"id": str(raw.get("id", index))}
    images = raw.get("image", raw.get("images"))
    if "conversations" in raw:
        turns = raw["conversations"]
        if not isinstance(turns, list):
            raise ValueError("'conversations' is not a list")
        conversations = [_turn(t, "from", "value", i) for i, t in enumerate(turns)]
    elif "messages" in raw:
        turns = raw["messages"]
        if not isinstance(turns, list):
            raise ValueError("'messages' is not a list")
        conversations, found = _from_messages(turns)
        if images is None and found:
            images = found
    else:
        raise ValueError("no 'conversations' or 'messages' field")
    if images is not None:
        record["image"] = images[0] if isinstance(images, list) and len(images) == 1 else images
    record["conversations"] = conversations
    return record


def _turn(turn: Any, role_key: str, text_key: str, i: int) -> dict[str, Any]:
    if not isinstance(turn, dict):
        raise ValueError(f"turn {i} is not an object")
    role = turn.get(role_key, turn.get("role"))
    return {"from": ROLES.get(str(role), str(role)), "value": turn.get(text_key, turn.get("content"))}


def _from_messages(messages: list[Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """OpenAI-style messages (``content`` a string or a list of text/image parts) as LLaVA turns."""
    conversations: list[dict[str, Any]] = []
    images: list[str] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ValueError(f"message {i} is not an object")
        if message.get("role") == "system":
            continue
        content = message.get("content")
        if isinstance(content, list):
            parts = []
            for part in content:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "text":
                    parts.append(str(part.get("text", "")))
                elif kind in ("image", "image_url"):
                    ref = part.get("image") or part.get("image_url")
                    ref = ref.get("url") if isinstance(ref, dict) else ref
                    if ref:
                        images.append(str(ref))
                    parts.append(PLACEHOLDER)
                else:
                    raise ValueError(f"message {i}: unknown content part {part!r:.60}")
            content = "\n".join(parts)
        conversations.append({"from": ROLES.get(str(message.get("role")), str(message.get("role"))),
                              "value": content})
    return conversations, images


def record_images(record: dict[str, Any]) -> list[Any]:
    """The record's image references as a list (empty for text-only records)."""
    image = record.get("image")
    if image is None:
        return []
    return list(image) if isinstance(image, list) else [image]


def structure_problem(record: dict[str, Any]) -> tuple[str, str] | None:
    """``(field, reason)`` for the first structural problem of a LLaVA record, or ``None``."""
    images = record_images(record)
    if "image" in record and not images:
        return "image", "empty image list"
    for ref in images:
        if not isinstance(ref, str) or not ref.strip():
            return "image", f"image path is not a non-empty string: {ref!r:.60}"
    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        return "conversations", "no conversation turns"
    placeholders = 0
    for i, turn in enumerate(turns):
        expected = "human" if i % 2 == 0 else "gpt"
        role, value = turn.get("from"), turn.get("value")
        if role != expected:
            return f"conversations[{i}].from", f"turn {i} is {role!r}, expected {expected!r} (roles must alternate human/gpt)"
        if not isinstance(value, str) or not value.strip():
            return f"conversations[{i}].value", f"turn {i} ({role}) is empty"
        placeholders += value.count(PLACEHOLDER)
    if len(turns) % 2:
        return f"conversations[{len(turns) - 1}]", "the last turn is from human: it has no gpt answer"
    if placeholders != len(images):
        return "conversations", f"{placeholders} <image> placeholder(s) for {len(images)} image(s)"
    return None
