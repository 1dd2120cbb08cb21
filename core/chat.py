"""Chatting with models: the one API the ``vlhub chat`` / ``vlhub eval`` commands and the Chat page call.

A :class:`Conversation` opens a session on a chat backend, keeps the history,
sends user turns with images, streams the answers and exports the conversation.
:class:`Comparison` asks two conversations the same question (base vs fine-tuned);
:func:`evaluate` measures multiple-choice accuracy on a prepared validation split.
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
from .types import ChatBackend, ChatSession, GenerationSettings, Progress, ProgressCallback, Turn, to_dict

LETTERS = "ABCDEFGHIJ"


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

    def to_data(self) -> dict[str, Any]:
        """The conversation as JSON-ready data."""
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
        for side in self.sides:
            side.clear()

    def close(self) -> None:
        for side in self.sides:
            side.close()

    def to_data(self) -> dict[str, Any]:
        return {"sides": [side.to_data() for side in self.sides]}

    def to_markdown(self) -> str:
        return "\n\n".join(side.to_markdown() for side in self.sides)


def export(convo: Conversation | Comparison, fmt: str) -> str:
    """``json`` or ``md`` text of a conversation or comparison."""
    if fmt == "json":
        return json.dumps(convo.to_data(), indent=2, ensure_ascii=False)
    if fmt == "md":
        return convo.to_markdown()
    raise BadInput(f"unknown export format {fmt!r}", "use json or md")


# ------------------------------------------------------------------ evaluation
def mc_prompt(question: str, choices: Sequence[str]) -> str:
    """The multiple-choice prompt (the MMBench style InternVL is evaluated with)."""
    options = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))
    return f"{question}\n{options}\nAnswer with the option's letter from the given choices directly."


def parse_choice(answer: str, choices: Sequence[str]) -> int | None:
    """The chosen index: a leading option letter, else the one choice whose text the answer contains."""
    match = re.match(r"\W*([A-J])\b", answer.strip())
    if match and LETTERS.index(match.group(1)) < len(choices):
        return LETTERS.index(match.group(1))
    hits = [i for i, c in enumerate(choices) if c and c in answer]
    return hits[0] if len(hits) == 1 else None


def _prepared(data: str | Path) -> tuple[Path, Path]:
    """(folder, image root) of a prepared dataset folder or of a file inside one."""
    path = Path(data).expanduser().resolve()
    folder = path if path.is_dir() else path.parent
    manifest = read_json(folder / "prepared.json", {}, expect=dict)
    root = manifest.get("image_root")
    return folder, Path(root) if isinstance(root, str) and root else folder


def _plain(text: str) -> str:
    """A dataset prompt without its ``<image>`` placeholders (backends place the images)."""
    return re.sub(r"[ \t]*<image>[ \t]*\n?", "", text).strip()


def _images(record: Mapping[str, Any], root: Path) -> list[str]:
    value = record.get("image") or []
    return [str(root / v) for v in ([value] if isinstance(value, str) else value)]


def load_mc(data: str | Path) -> list[dict[str, Any]]:
    """Items of ``val_mc.json`` in a prepared folder (or the file itself), with ``images`` resolved."""
    folder, root = _prepared(data)
    path = Path(data).expanduser().resolve()
    path = path if path.is_file() else folder / "val_mc.json"
    items = read_json(path, [], expect=list)
    items = [item for item in items if isinstance(item, dict)]
    if not items:
        raise BadInput(f"{data}: no multiple-choice validation items (looked for {path})",
                       "give a folder prepared by `vlhub data prepare` with a validation split")
    return [{**item, "images": _images(item, root)} for item in items]


def examples(data: str | Path, limit: int = 12) -> list[dict[str, Any]]:
    """Example prompts with their images from a prepared folder (val.json, else train.json)."""
    folder, root = _prepared(data)
    records = read_json(folder / "val.json", [], expect=list) or read_json(folder / "train.json", [], expect=list)
    out = []
    for record in [r for r in records if isinstance(r, dict)][:limit]:
        turns = record.get("conversations") if isinstance(record.get("conversations"), list) else []
        human = next((c["value"] for c in turns if isinstance(c, dict) and c.get("from") == "human"), "")
        out.append({"prompt": _plain(human), "images": _images(record, root)})
    return out


def evaluate(convo: Conversation, items: Sequence[Mapping[str, Any]],
             progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Accuracy of one model on multiple-choice items (greedy, a fresh history per item).

    The conversation's own history and settings are put back afterwards.
    """
    saved = convo.history, convo.settings
    convo.settings = GenerationSettings(temperature=0.0, top_p=1.0, max_new_tokens=16)
    rows = []
    try:
        for n, item in enumerate(items):
            convo.clear()
            prompt = _plain(item.get("prompt") or mc_prompt(item["question"], item["choices"]))
            answer = convo.answer(prompt, item["images"])
            chosen = parse_choice(answer, item["choices"])
            rows.append({"id": item.get("id", n), "answer": int(item["answer"]), "chosen": chosen,
                         "reply": answer, "correct": chosen == int(item["answer"])})
            if progress:
                progress(Progress(f"eval {Path(convo.model).name}", n + 1, len(items), "items"))
    finally:
        convo.history, convo.settings = saved
    correct = sum(r["correct"] for r in rows)
    return {"model": convo.model, "backend": convo.backend, "correct": correct, "total": len(rows),
            "accuracy": correct / len(rows) if rows else 0.0, "items": rows}
