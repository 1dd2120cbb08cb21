"""LLaVA-style records: reading JSON/JSONL sources, converting ``messages`` chats, structural checks.

A record is ``{"id", "image": str | list[str] (optional), "conversations": [{"from", "value"}]}``
with ``from`` alternating ``human`` / ``gpt`` and one ``<image>`` placeholder per image, in human
turns only. ``system`` turns are handled alike in the ``conversations`` and ``messages`` shapes
(:data:`SYSTEM_RULES`): by default a first system turn is the record's own system prompt (vlhub's
xtuner dataset trains it) and a later one is refused; ``system="reject"`` refuses any,
``system="drop"`` leaves them out.
A plugin wraps each converted record in an :class:`Item` for validation and the split.
"""
from __future__ import annotations

import codecs
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from vlhub.core.errors import BadInput

from .format import Problem

if TYPE_CHECKING:
    from .images import Checks

PLACEHOLDER = "<image>"
ROLES = {"human": "human", "user": "human", "gpt": "gpt", "assistant": "gpt"}


@dataclass
class Item:
    """A converted LLaVA record and what a plugin knows about it.

    ``source``/``index`` locate it in the input (a file name, the record's position),
    ``groups`` are the keys that must stay in one split (e.g. ``"dish:NAME"``, ``"img:PATH"`` with PATH
    an image reference of the record: validation turns it into the resolved file, so spellings of one
    file are one group; see :mod:`vlhub.core.prepared.split`), ``follower`` marks items placed after the split,
    ``mc`` the multiple-choice item kept in ``val_mc.json``, ``meta`` fields counted as
    categories in the stats.
    """

    record: dict[str, Any]
    index: int
    source: str
    groups: list[str] = field(default_factory=list)
    follower: bool = False
    mc: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def load_items(path: Path, checks: Checks | None = None, system: str = "keep") -> tuple[list[Item], list[Problem]]:
    """The records of a LLaVA-style or ``messages`` JSON/JSONL file as items grouped by image.

    Args:
        path: the JSON list or JSON Lines file (read as a stream).
        checks: image checks to feed each record's images as it is read (they run meanwhile).
        system: what ``system`` turns become: ``"keep"`` (a first one kept), ``"reject"`` (reported) or
            ``"drop"`` (left out); see
            :func:`to_llava`.
    Returns:
        ``(items, rejected)``: one :class:`Item` per record of either shape (``groups`` = its
        images, ``img:PATH``), and a :class:`Problem` per record that could not be converted (field
        ``"NAME: FIELD"``, e.g. ``"chat.json: conversations[0].value"``).
    Raises:
        BadInput: the file is missing, not a regular file, not UTF-8, not JSON, or not a list of records.
    """
    items, rejected = [], []
    for index, raw in enumerate(read_records(path)):
        try:
            record = to_llava(raw, index, system)
        except RecordError as exc:
            rejected.append(Problem(index, str(exc), f"{path.name}: {exc.field}"))
            continue
        refs = record_images(record)
        if checks:
            checks.add(refs)
        items.append(Item(record, index, path.name, [f"img:{r}" for r in refs if isinstance(r, str)]))
    return items, rejected


def read_json(path: Path) -> Any:
    """Load a whole UTF-8 JSON file (a BOM is accepted), e.g. a dataset's source file.

    Args:
        path: the file.
    Returns:
        The parsed value (any JSON type).
    Raises:
        BadInput: the file is missing, a folder, not UTF-8 or not valid JSON (the message names
            the file, and the line and column of a syntax error).
    """
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _not_json(path, exc.lineno, exc.colno, exc.msg) from None


def read_records(path: Path) -> Iterator[Any]:
    """The raw records of a JSON list, or of JSON Lines (one object per line), streamed.

    A JSON list is parsed record by record from 1 MiB blocks, so memory stays bounded by
    the largest record and a broken or non-UTF-8 file fails at the first bad byte, whatever its size.
    An object whose ``data`` is a list yields that list.

    Args:
        path: the JSON or JSONL file.
    Yields:
        Each record as parsed (not checked: any JSON value).
    Raises:
        BadInput: the file is missing, a folder, not UTF-8, not valid JSON (line and column named),
            or neither a list nor JSON Lines.
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
        _regular(path)
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


def _regular(path: Path) -> None:
    """Refuse, before opening it, a path that is not a regular file (a named pipe would block the read)."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise BadInput("file not found", "check the path", where=str(path)) from None
    except OSError as exc:
        raise BadInput(f"cannot be read ({exc.strerror or exc})", "check the path and its permissions",
                       where=str(path)) from None
    if stat.S_ISDIR(mode):
        raise BadInput("is a folder, not a file", "give the JSON file itself", where=str(path))
    if not stat.S_ISREG(mode):
        kind = "a named pipe" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or \
            stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "a special file"
        raise BadInput(f"is not a regular file: it is {kind}", "give the JSON file itself (save it to disk first)",
                       where=str(path))


def _read_text(path: Path) -> str:
    _regular(path)
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


#: what ``system`` turns become (the ``system`` option of the LLaVA plugins): ``keep`` (a first system
#: turn is the record's own system prompt, which vlhub's xtuner dataset trains; a later one is refused),
#: ``reject`` (a record with any system turn is dropped and listed) or ``drop`` (system turns are left out,
#: so the chat template's system prompt is used)
SYSTEM_RULES = ("keep", "reject", "drop")
SYSTEM_REASON = ("a system turn (--opt system=reject): remove it, or pass --opt system=keep to train it as the "
                 "record's system prompt, or --opt system=drop to leave system turns out")
LATE_SYSTEM_REASON = ("a system turn after the first turn: only the first turn may be the record's system prompt; "
                      "move it to the start, or pass --opt system=drop to leave system turns out")
_PART = 'an object like {"type": "text", "text": ...} or {"type": "image_url", "image_url": {"url": PATH}}'


class RecordError(ValueError):
    """A record that cannot be converted; ``field`` names where (e.g. ``conversations[0].value``)."""

    def __init__(self, reason: str, field: str = "record") -> None:
        super().__init__(reason)
        self.field = field


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number" if isinstance(value, (int, float)) else type(value).__name__)


def to_llava(raw: Any, index: int, system: str = "keep") -> dict[str, Any]:
    """One raw record as a LLaVA record; ShareGPT/OpenAI ``messages`` are converted.

    Both shapes are read alike: a turn is ``{"from", "value"}`` or ``{"role", "content"}``, and its
    text is a string or a list of OpenAI content parts (``{"type": "text", "text"}``, ``{"type":
    "image" | "image_url", ...}``: each image part becomes an ``<image>`` placeholder, and its path
    the record's image when the record has no ``image`` field).

    Args:
        raw: a record as read (``conversations`` or ``messages``).
        index: its position, the ``id`` when it has none.
        system: ``"keep"``: ``system`` turns are kept (:func:`structure_problem` accepts a first one
            and reports later ones); ``"reject"``: a record with a system turn is refused; ``"drop"``:
            they are left out. The same in both shapes.
    Returns:
        ``{"id": str, "image": str | list (when it has images), "conversations": [{"from", "value"}]}``,
        roles mapped to ``human``/``gpt``; not yet checked (:func:`structure_problem` does that).
    Raises:
        RecordError: the record has neither shape, a turn's content cannot be read, or (``"reject"``)
            it has a system turn (the message is the reason, ``field`` where).
    """
    if not isinstance(raw, dict):
        raise RecordError(f"record is a JSON {_json_type(raw)}, not an object")
    record: dict[str, Any] = {"id": str(raw.get("id", index))}
    images = raw.get("image", raw.get("images"))
    key = "conversations" if "conversations" in raw else "messages" if "messages" in raw else ""
    if not key:
        raise RecordError("no 'conversations' or 'messages' field")
    turns = raw[key]
    if not isinstance(turns, list):
        raise RecordError(f"'{key}' is a JSON {_json_type(turns)}, not a list of turns", key)
    conversations: list[dict[str, Any]] = []
    found: list[str] = []
    for i, turn in enumerate(turns):
        converted = _turn(turn, i, key, found)
        if converted["from"] == "system" and system == "drop":
            continue
        if converted["from"] == "system" and system == "reject":
            raise RecordError(f"turn {i} is {SYSTEM_REASON}", f"{key}[{i}]")
        conversations.append(converted)
    if images is None and found:
        images = found
    if images is not None:
        record["image"] = images[0] if isinstance(images, list) and len(images) == 1 else images
    record["conversations"] = conversations
    return record


def _turn(turn: Any, i: int, key: str, images: list[str]) -> dict[str, Any]:
    """One turn, ``{"from"/"role", "value"/"content"}``, as ``{"from", "value"}``; a content list is joined."""
    if not isinstance(turn, dict):
        raise RecordError(f"turn {i} is a JSON {_json_type(turn)}, not an object", f"{key}[{i}]")
    role = turn.get("from", turn.get("role"))
    role = ROLES.get(str(role), str(role)) if role is not None else None
    text_key = "value" if "value" in turn else "content" if "content" in turn else "value"
    value = turn.get(text_key)
    if isinstance(value, dict) and "type" in value:
        value = [value]
    if isinstance(value, list):
        value = _parts(value, f"turn {i} ({role})", f"{key}[{i}].{text_key}", text_key, images)
    return {"from": role, "value": value}


def _parts(parts: list[Any], where: str, fld: str, text_key: str, images: list[str]) -> str:
    """OpenAI content parts as text: text parts joined by newlines, an ``<image>`` per image part."""
    texts = []
    intro = f"{where}: {text_key} is a list of content parts"
    if not parts:
        raise RecordError(f"{intro}, but it is empty", fld)
    for k, part in enumerate(parts):
        kind = part.get("type") if isinstance(part, dict) else None
        if not isinstance(part, dict):
            raise RecordError(f"{intro}; part {k} is a JSON {_json_type(part)}, not {_PART}", fld)
        if kind == "text":
            text = part.get("text", "")
            if not isinstance(text, str):
                raise RecordError(f"{intro}; part {k}'s text is a JSON {_json_type(text)}, not a string", fld)
            texts.append(text)
        elif kind in ("image", "image_url"):
            ref = part.get("image") or part.get("image_url") or part.get("url") or part.get("path")
            ref = ref.get("url") if isinstance(ref, dict) else ref
            if ref:
                images.append(ref if isinstance(ref, str) else str(ref))
            texts.append(PLACEHOLDER)
        else:
            shown = "no 'type'" if kind is None else f"type {kind!r}"
            raise RecordError(f"{intro}; part {k} has {shown} (only 'text', 'image' and 'image_url' parts are "
                              "converted)", fld)
    return "\n".join(texts)


def record_images(record: dict[str, Any]) -> list[Any]:
    """The record's image references as a list: ``[]`` (text-only), ``[image]`` or the ``image`` list.

    Args:
        record: a LLaVA record (``image`` a string, a list, or absent).
    """
    image = record.get("image")
    if image is None:
        return []
    return list(image) if isinstance(image, list) else [image]


def structure_problem(record: dict[str, Any]) -> tuple[str, str] | None:
    """The first structural problem of a LLaVA record (images are not opened).

    Args:
        record: a LLaVA record, e.g. from :func:`to_llava`.
    Returns:
        ``(field, reason)``, e.g. ``("conversations[1].value", "turn 1 (gpt) is empty")``, or ``None``
        when the image list, the alternating human/gpt turns and the ``<image>`` count are right.
    """
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
    lead = 1 if isinstance(turns[0], dict) and turns[0].get("from") == "system" else 0
    if lead:
        value = turns[0].get("value")
        if not isinstance(value, str) or not value.strip():
            return "conversations[0].value", "turn 0 (system) is empty: give the system prompt or remove the turn"
        if "<image>" in value:
            return "conversations[0].value", "turn 0 (system) contains <image>: images belong in the question"
        if len(turns) == 1:
            return "conversations", "only a system turn: a record needs a human question and a gpt answer"
    for i, turn in enumerate(turns[lead:], start=lead):
        fld = f"conversations[{i}]"
        if not isinstance(turn, dict):
            return fld, f"turn {i} is a JSON {_json_type(turn)}, not an object"
        expected = "human" if (i - lead) % 2 == 0 else "gpt"
        role, value = turn.get("from"), turn.get("value")
        if role == "system":
            return f"{fld}.from", f"turn {i} is {LATE_SYSTEM_REASON}"
        if role is None:
            return f"{fld}.from", f"turn {i} has no 'from' (role); expected {expected!r}"
        if role != expected:
            return f"{fld}.from", f"turn {i} is {role!r}, expected {expected!r} (roles must alternate human/gpt)"
        if value is None:
            return f"{fld}.value", f"turn {i} ({role}) has no text ('value' or 'content')"
        if isinstance(value, list):
            return f"{fld}.value", (f"turn {i} ({role}): value is a list of content parts; convert them to text "
                                    "with one <image> per image (the llava-json plugin does)")
        if not isinstance(value, str):
            return f"{fld}.value", f"turn {i} ({role}): value is a JSON {_json_type(value)}, not text"
        if not value.strip():
            return f"{fld}.value", f"turn {i} ({role}) is empty"
        if role == "gpt" and PLACEHOLDER in value:
            return f"{fld}.value", (f"turn {i} (gpt) contains <image>: images belong in the question; move the "
                                    "placeholder to a human turn")
        placeholders += value.count(PLACEHOLDER)
    if (len(turns) - lead) % 2:
        return f"conversations[{len(turns) - 1}]", "the last turn is from human: it has no gpt answer"
    if placeholders != len(images):
        where = "" if images else " (a text-only record: remove the placeholder, or add its image)"
        return "conversations", f"{placeholders} <image> placeholder(s) for {len(images)} image(s){where}"
    return None
