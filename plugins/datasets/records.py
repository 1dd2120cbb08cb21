"""LLaVA-style records: reading JSON/JSONL sources, converting ``messages`` chats, structural checks.

A record is ``{"id", "image": str | list[str] (optional), "conversations": [{"from", "value"}]}``
with ``from`` alternating ``human`` / ``gpt`` and one ``<image>`` placeholder per image.
"""
from __future__ import annotations

import codecs
import json
from pathlib import Path
from typing import Any, Iterator

from vlhub.core.errors import BadInput

PLACEHOLDER = "<image>"
ROLES = {"human": "human", "user": "human", "gpt": "gpt", "assistant": "gpt"}


def read_json(path: Path) -> Any:
    """Load a UTF-8 JSON file (a BOM is accepted); unreadable input is :class:`BadInput`."""
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _not_json(path, exc.lineno, exc.colno, exc.msg) from None


def read_records(path: Path) -> Iterator[Any]:
    """The raw records of a JSON list, or of JSON Lines (one object per line), streamed.

    A JSON list is parsed record by record from 1 MiB blocks, so memory stays bounded by
    the largest record and a broken or non-UTF-8 file fails at the first bad byte, whatever its size.
    """
    stream = _Stream(Path(path))
    first = stream.peek()
    if first == "[":
        yield from stream.json_list()
    elif first == "{" and (stream.path.suffix == ".jsonl" or stream.looks_like_lines()):
        yield from stream.json_lines()
    else:
        data = stream.value()
        stream.end()
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            yield from data["data"]
        else:
            raise BadInput(f"expected a list of records, found a JSON {type(data).__name__}",
                           "give a JSON list (or JSON Lines) of LLaVA or messages records", where=str(path))


def _not_json(path: Path, line: int, column: int, msg: str) -> BadInput:
    return BadInput(f"not valid JSON (line {line}, column {column}: {msg})", "fix the file or re-export it as JSON",
                    where=str(path))


class _Stream:
    """UTF-8 text of a file read in blocks, with a JSON value parser that keeps only unread text."""

    BLOCK = 1 << 20

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._file = open(path, "rb")  # noqa: SIM115 (closed at the end of the file or when collected)
        except FileNotFoundError:
            raise BadInput("file not found", "check the path", where=str(path)) from None
        except IsADirectoryError:
            raise BadInput("is a folder, not a file", "give the JSON file itself", where=str(path)) from None
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self._offset = 0                # bytes read so far
        self.buf, self.pos, self.eof = "", 0, False
        self._lines, self._col = 0, 0   # newlines and last-line length of the text dropped from ``buf``

    def _fill(self, size: int = BLOCK) -> bool:
        """Append the next block to the buffer (dropping consumed text); False at the end of the file."""
        if self.eof:
            return False
        dropped = self.buf[:self.pos]
        newlines = dropped.count("\n")
        self._lines += newlines
        self._col = len(dropped) - dropped.rfind("\n") - 1 if newlines else self._col + len(dropped)
        self.buf, self.pos = self.buf[self.pos:], 0
        block = self._file.read(size)
        pending = len(self._decoder.getstate()[0])
        try:
            self.buf += self._decoder.decode(block, final=not block)
        except UnicodeDecodeError as exc:
            raise BadInput(f"not UTF-8 (invalid byte at offset {self._offset - pending + exc.start})",
                           "re-save the file as UTF-8 (e.g. `iconv -f GBK -t UTF-8`)", where=str(self.path)) from None
        self._offset += len(block)
        if not block:
            self.eof = True
            self._file.close()
        return True

    def _where(self, pos: int) -> tuple[int, int]:
        before = self.buf[:pos]
        newlines = before.count("\n")
        column = pos - before.rfind("\n") if newlines else self._col + pos + 1
        return self._lines + newlines + 1, column

    def fail(self, msg: str, pos: int | None = None) -> BadInput:
        return _not_json(self.path, *self._where(self.pos if pos is None else pos), msg)

    def peek(self) -> str:
        """The next non-whitespace character ('' at the end of the file), not consumed."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < len(self.buf) or not self._fill():
                return self.buf[self.pos:self.pos + 1]

    def value(self) -> Any:
        """The next JSON value; reads more only while the value may continue past the buffer."""
        self.peek()
        size = self.BLOCK
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
                if end < len(self.buf) or self.eof:
                    self.pos = end
                    return value
            except json.JSONDecodeError as exc:
                cut_short = exc.pos >= len(self.buf) - 16 or exc.msg.startswith("Unterminated string")
                if self.eof or not cut_short:
                    raise self.fail(exc.msg, exc.pos) from None
            self._fill(size)
            size *= 2

    def end(self) -> None:
        if self.peek():
            raise self.fail("Extra data")

    def json_list(self) -> Iterator[Any]:
        self.pos += 1  # "["
        if self.peek() == "]":
            self.pos += 1
            return self.end()
        while True:
            yield self.value()
            sep = self.peek()
            if sep not in (",", "]"):
                raise self.fail("Expecting ',' delimiter")
            self.pos += 1
            if sep == "]":
                return self.end()

    def _line(self) -> str | None:
        while "\n" not in self.buf[self.pos:] and self._fill():
            pass
        if self.pos >= len(self.buf) and self.eof:
            return None
        end = self.buf.find("\n", self.pos)
        end = len(self.buf) if end < 0 else end
        line, self.pos = self.buf[self.pos:end], end + 1
        return line

    def looks_like_lines(self) -> bool:
        """Whether the text holds a second line starting with ``{`` (JSON Lines, not one object)."""
        while self.buf.count("\n", self.pos) < 2 and len(self.buf) < 64 * self.BLOCK and self._fill():
            pass
        return "\n{" in self.buf[self.pos:]

    def json_lines(self) -> Iterator[Any]:
        number = 0
        while (line := self._line()) is not None:
            number += 1
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise BadInput(f"line {number} is not valid JSON ({exc.msg})",
                               "fix that line: JSON Lines needs one JSON object per line",
                               where=str(self.path)) from None


_DECODER = json.JSONDecoder()


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
