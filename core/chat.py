"""Chatting with models: the one API the ``vlhub chat`` command and the Chat page call.

A :class:`Conversation` opens a session on a registered chat backend, keeps the history,
sends user turns with images, streams the answers and exports the conversation.
:class:`Comparison` asks two conversations the same question (base vs fine-tuned);
:func:`examples` offers prompts from a prepared dataset. Accuracy on a validation split is
:mod:`vlhub.core.eval`'s.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from PIL import Image, UnidentifiedImageError

from . import plugins
from .errors import BadInput, MissingDependency
from .fsutil import read_json
from .types import ChatBackend, ChatSession, GenerationSettings, Turn, to_dict


def backends() -> dict[str, ChatBackend]:
    """The registered chat backends by name."""
    return plugins.registry("chat_backends")


def auto_backend(model: str | None, base_url: str | None = None) -> str:
    """``openai`` for an endpoint; for a model folder ``lmdeploy`` when it can run here, else ``transformers``."""
    if base_url or not model:
        return "openai"
    if Path(model).expanduser().is_dir():
        lmdeploy = backends().get("lmdeploy")
        return "lmdeploy" if lmdeploy is not None and lmdeploy.missing() is None else "transformers"
    if os.environ.get("OPENAI_BASE_URL"):
        return "openai"
    raise BadInput(f"{model}: no such model folder", "give a model folder, or --backend openai --base-url URL")


def check_image(path: str | Path) -> Path:
    """The resolved path of a readable image, or a one-line error."""
    image = Path(path).expanduser()
    if not image.is_file():
        raise BadInput(f"image not found: {path}", "check the path given with --image or /image")
    try:
        with Image.open(image) as img:
            img.verify()
    except (UnidentifiedImageError, OSError) as exc:
        raise BadInput(f"{path}: not a readable image ({exc})", "give a PNG, JPEG or WebP file") from exc
    return image.resolve()


class Conversation:
    """One model on one backend, with the history of the conversation."""

    def __init__(self, model: str, backend: str | None = None, options: Mapping[str, Any] | None = None,
                 settings: GenerationSettings | None = None) -> None:
        self.backend = backend or auto_backend(model, (options or {}).get("base_url"))
        self.model = model
        self.settings = settings or GenerationSettings()
        self.history: list[Turn] = []
        impl = plugins.get("chat_backends", self.backend)
        reason = impl.missing()
        if reason:
            raise MissingDependency(f"the {self.backend} chat backend cannot run here: {reason}")
        self.session: ChatSession = impl.open(model, dict(options or {}))

    def ask(self, text: str, images: Sequence[str | Path] = ()) -> Iterator[str]:
        """Send a user turn and stream the answer; both join the history once the answer is complete."""
        turn = Turn("user", text, [check_image(p) for p in images])
        chunks: list[str] = []
        for chunk in self.session.reply([*self.history, turn], self.settings):
            chunks.append(chunk)
            yield chunk
        self.history += [turn, Turn("assistant", "".join(chunks).strip())]

    def answer(self, text: str, images: Sequence[str | Path] = ()) -> str:
        """:meth:`ask`, collected."""
        return "".join(self.ask(text, images)).strip()

    def clear(self) -> None:
        """Forget the history (the model stays loaded)."""
        self.history = []

    def close(self) -> None:
        """Stop the backend's worker or server."""
        self.session.close()

    def __enter__(self) -> Conversation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def public(self) -> dict[str, Any]:
        """The conversation as JSON-ready data: backend, model, settings and turns."""
        return {"backend": self.backend, "model": self.model, "settings": to_dict(self.settings),
                "turns": [to_dict(t) for t in self.history]}

    def to_markdown(self, title: str = "") -> str:
        """The conversation as Markdown (images as links to their files)."""
        lines = [f"# {title or self.model} ({self.backend})", ""]
        for turn in self.history:
            lines += [f"**{turn.role}**:", "", turn.text, ""]
            lines += [f"![{p.name}]({p.as_uri()})" for p in turn.images]
            lines += [""] if turn.images else []
        return "\n".join(lines)


@dataclass
class Comparison:
    """The same questions to several conversations, e.g. the base and the fine-tuned model."""

    sides: list[Conversation] = field(default_factory=list)

    def ask(self, text: str, images: Sequence[str | Path] = ()) -> list[Iterator[str]]:
        """One answer stream per side (consume them in order)."""
        checked = [check_image(p) for p in images]
        return [side.ask(text, checked) for side in self.sides]

    def clear(self) -> None:
        """Forget every side's history (the models stay loaded)."""
        for side in self.sides:
            side.clear()

    def close(self) -> None:
        """Stop every side's worker or server."""
        for side in self.sides:
            side.close()

    def public(self) -> dict[str, Any]:
        """Every side's :meth:`Conversation.public`."""
        return {"sides": [side.public() for side in self.sides]}

    def to_markdown(self) -> str:
        """Every side's :meth:`Conversation.to_markdown`, one after the other."""
        return "\n\n".join(side.to_markdown() for side in self.sides)


def export(convo: Conversation | Comparison, fmt: str) -> str:
    """``json`` or ``md`` text of a conversation or comparison.

    Raises:
        BadInput: another format.
    """
    if fmt == "json":
        return json.dumps(convo.public(), indent=2, ensure_ascii=False)
    if fmt == "md":
        return convo.to_markdown()
    raise BadInput(f"unknown export format {fmt!r}", "use json or md")


# ------------------------------------------------------------------ prompts from prepared data
def prepared_folder(data: str | Path) -> tuple[Path, Path]:
    """``(folder, image root)`` of a prepared dataset folder, or of a file inside one.

    Raises:
        BadInput: its ``prepared.json`` is damaged.
    """
    path = Path(data).expanduser().resolve()
    folder = path if path.is_dir() else path.parent
    manifest = read_json(folder / "prepared.json", {}, expect=dict)
    root = manifest.get("image_root")
    return folder, Path(root) if isinstance(root, str) and root else folder


def plain_prompt(text: str) -> str:
    """A dataset prompt without its ``<image>`` placeholders (backends place the images)."""
    return re.sub(r"[ \t]*<image>[ \t]*\n?", "", text).strip()


def record_images(record: Mapping[str, Any], root: Path) -> list[str]:
    """The image paths of a LLaVA-style record (``image``: one or a list), under ``root``."""
    value = record.get("image") or []
    return [str(root / v) for v in ([value] if isinstance(value, str) else value)]


def examples(data: str | Path, limit: int = 12) -> list[dict[str, Any]]:
    """Example prompts with their images from a prepared folder (``val.json``, else ``train.json``).

    Returns:
        Up to ``limit`` ``{"prompt", "images"}`` (the first human turn of each record).
    Raises:
        BadInput: a damaged JSON file.
    """
    folder, root = prepared_folder(data)
    records = read_json(folder / "val.json", [], expect=list) or read_json(folder / "train.json", [], expect=list)
    out = []
    for record in [r for r in records if isinstance(r, dict)][:limit]:
        turns = record.get("conversations") if isinstance(record.get("conversations"), list) else []
        human = next((c["value"] for c in turns if isinstance(c, dict) and c.get("from") == "human"), "")
        out.append({"prompt": plain_prompt(human), "images": record_images(record, root)})
    return out
