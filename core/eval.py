"""Evaluation: multiple-choice accuracy on a prepared validation split, for ``vlhub eval`` and the Chat page.

:func:`evaluate` asks one open :class:`vlhub.core.chat.Conversation` every item (greedy, a fresh
history per item); :func:`evaluate_models` does it for one or more conversations (base and
fine-tuned) and records the outcome as an ``eval`` run (:mod:`vlhub.core.runs`), so ``vlhub runs``
lists evaluations from the CLI and from the launcher alike.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .boundary import user_error
from .chat import Conversation, plain_prompt, prepared_folder, record_images
from .errors import BadInput
from .fsutil import read_json
from .runs import new_run, process_record
from .types import GenerationSettings, Progress, ProgressCallback

KIND = "eval"
LETTERS = "ABCDEFGHIJ"


def mc_prompt(question: str, choices: Sequence[str]) -> str:
    """The multiple-choice prompt (the MMBench style InternVL is evaluated with)."""
    options = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))
    return f"{question}\n{options}\nAnswer with the option's letter from the given choices directly."


def parse_choice(answer: str, choices: Sequence[str]) -> int | None:
    """The chosen index: a leading option letter, else the one choice whose text the answer contains
    (``None`` when neither tells)."""
    match = re.match(r"\W*([A-J])\b", answer.strip())
    if match and LETTERS.index(match.group(1)) < len(choices):
        return LETTERS.index(match.group(1))
    hits = [i for i, c in enumerate(choices) if c and c in answer]
    return hits[0] if len(hits) == 1 else None


def load_mc(data: str | Path) -> list[dict[str, Any]]:
    """The items of ``val_mc.json`` in a prepared folder (or the file itself), with ``images`` resolved.

    Raises:
        BadInput: no items there, or a damaged file.
    """
    folder, root = prepared_folder(data)
    path = Path(data).expanduser().resolve()
    path = path if path.is_file() else folder / "val_mc.json"
    items = [item for item in read_json(path, [], expect=list) if isinstance(item, dict)]
    if not items:
        raise BadInput(f"{data}: no multiple-choice validation items (looked for {path})",
                       "give a folder prepared by `vlhub data prepare` with a validation split")
    return [{**item, "images": record_images(item, root)} for item in items]


def evaluate(convo: Conversation, items: Sequence[Mapping[str, Any]],
             progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Accuracy of one model on multiple-choice items (greedy, a fresh history per item).

    The conversation's own history and settings are put back afterwards.

    Returns:
        ``model``, ``backend``, ``correct``, ``total``, ``accuracy`` and every item's reply (``items``).
    Raises:
        BadInput, VlhubError: the backend failed (an image, the endpoint, the worker).
    """
    saved = convo.history, convo.settings
    convo.settings = GenerationSettings(temperature=0.0, top_p=1.0, max_new_tokens=16)
    rows = []
    try:
        for n, item in enumerate(items):
            convo.clear()
            prompt = plain_prompt(item.get("prompt") or mc_prompt(item["question"], item["choices"]))
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


def evaluate_models(sides: Sequence[Conversation | Callable[[], Conversation]], data: str | Path,
                    limit: int | None = None, progress: ProgressCallback | None = None) -> dict[str, Any]:
    """:func:`evaluate` for each side on the same items, recorded as an ``eval`` run.

    Args:
        sides: the models, e.g. the base and the fine-tuned one: each an open conversation (left open), or
            a function opening one (closed after its items, so one model at a time is loaded).
        data: a prepared folder (its ``val_mc.json``) or the items' file.
        limit: only the first ``limit`` items.
        progress: receives one task per model.
    Returns:
        ``data`` (the resolved path), ``run_id`` and ``results`` (one :func:`evaluate` report per side,
        in order); the run's ``run.json`` holds the same as its ``result``.
    Raises:
        BadInput: no items (no run is created then); BadInput, MissingDependency, VlhubError: a model
            cannot be opened or its backend failed (the run records ``failed`` and the error).
    """
    items = load_mc(data)[:limit]
    resolved = str(Path(data).expanduser().resolve())
    run = new_run(KIND, spec={"data": resolved, "limit": limit})
    # this process works for the run: it is `running` while this process lives (and provably is this one)
    run.update(status="running", **process_record(os.getpid(), "pid"))
    results = []
    try:
        for side in sides:
            if isinstance(side, Conversation):
                results.append(evaluate(side, items, progress))
                continue
            with side() as convo:
                results.append(evaluate(convo, items, progress))
    except BaseException as exc:  # a stopped page script too: the run never stays `running`
        error = user_error(exc) if isinstance(exc, Exception) else None
        run.update(status="failed", error=error.one_line() if error else f"interrupted ({type(exc).__name__})",
                   results=results)
        raise
    report = {"data": resolved, "run_id": run.id, "results": results}
    run.update(status="done", result=report)
    return report
