"""Evaluation of one or two models on a prepared validation split: ``vlhub eval`` and the Chat page.

:func:`evaluate_models` asks each model every item (greedy, a fresh history per item; one model
loaded at a time), records the outcome as an ``eval`` run (:mod:`vlhub.core.runs`) whose folder
holds ``eval.json``, and returns what that file holds; :func:`load_eval` reads it back (the Chat
page's accuracy check and ``vlhub eval`` share both). :func:`evaluate` is one model on given items.

Which task an evaluation is depends on the data (:func:`load_set`):

* **multiple-choice** — a prepared folder's ``val_mc.json`` (or that file): each item is asked with
  its ``prompt`` (the training question) or else ``question / A. ... / B. ... / Answer with the
  option's letter ...``; the reply picks a choice when it starts with an option letter or names
  exactly one choice's text (:func:`parse_choice`), and is correct when that is the answer.
* **open-ended** — a prepared folder without ``val_mc.json`` but with ``val.json`` (CLoT, any
  LLaVA-style data without choices), or such a file: each record's first human turn is asked and its
  first gpt turn is the reference. Scored by **exact match** (the reply equals the reference after
  NFKC normalisation, whitespace collapsed, trailing sentence punctuation dropped: ``correct``) and
  **chrF** (character n-gram F-score, 0–100, from ``sacrebleu``: character n-grams need no word
  segmentation, so it works on Chinese as it is). sacrebleu rather than ``rouge-score``: it ships as a
  pure-Python wheel whose dependencies are prebuilt wheels (regex, lxml, portalocker, tabulate,
  colorama), its chrF has a printed signature that makes scores comparable, and it is the reference
  implementation used by WMT; rouge-score is a source package pulling in nltk and absl-py, and its
  default tokenizer drops every non-Latin character (a Chinese reply would score on nothing).

``eval.json`` (:data:`EVAL_FILE` in the run folder; :data:`FORMAT` ``vlhub.eval/1``)::

    {"format": "vlhub.eval/1", "run_id": str, "data": str (the --data given, resolved),
     "file": str (the items' file), "dataset": str (the plugin that prepared it; "" if unknown),
     "task": "multiple-choice" | "open-ended", "limit": int | null, "n": int (items asked),
     "categories": [field, ...] (the category fields the items carry, e.g. FoodieQA's
                   "food_type", "main_region"; [] when none),
     "notes": [str] (e.g. that the items carry no categories and how to get them),
     "results": [one per model, in the order given:
        {"model": str, "backend": str, "n": int, "correct": int,
         "accuracy": float (correct / n; open-ended: the exact-match rate),
         "ci95": [low, high] (95 % Wilson score interval of ``accuracy``, :func:`wilson`),
         "total": int (the same as "n": the name vlhub 0.1's results used),
         "unanswered": int (multiple-choice: replies that picked no choice),
         "chrf": float (open-ended only: corpus chrF of all replies, 0-100),
         "categories": {field: {value: {"n", "correct", "accuracy", "ci95"}}} (multiple-choice;
                       an item without the field is in none of its values),
         "items": [{"index": int (position in the items' file), "id": str, "question": str,
                    multiple-choice: "choices": [str], "answer": int, "picked": int | null,
                    open-ended: "reference": str, "chrf": float (sentence chrF),
                    "reply": str, "correct": bool, and each category field: str}]}],
     "fixed": [index] (two models only: wrong with the first, right with the second),
     "broken": [index] (two models only: right with the first, wrong with the second),
     "chrf": {"signature": str} (open-ended only: sacrebleu's signature of the chrF settings)}

``run.json`` holds a summary as its ``result`` (the same without the items and per-category
numbers), ``eval_json``, the file's path, and ``throughput``: per model ``{"model", "items",
"seconds", "items_per_s", "concurrency"}`` (items asked at once: :func:`concurrency`). A failed
evaluation records ``failed``, the error and the finished models' summaries, and writes no ``eval.json``.

Categories: FoodieQA's ``val_mc.json`` items carry ``categories`` (``food_type``, ``main_region``)
since the prepared-folder change that added them (:mod:`vlhub.core.prepared.format`); a folder
prepared before still evaluates, without per-category numbers and with a note that preparing it
again (``vlhub data prepare ... --force``) fills them.
"""
from __future__ import annotations

import math
import os
import re
import time
import unicodedata
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from statistics import NormalDist
from typing import Any, Callable, Mapping, Sequence

from .boundary import user_error
from .chat import Conversation, plain_prompt, prepared_folder, record_images
from .errors import BadInput, MissingDependency
from .fsutil import atomic_write_json, read_json
from .runs import Run, load_run, new_run, process_record
from .secrets import redact_data
from .types import GenerationSettings, Progress, ProgressCallback

KIND = "eval"
FORMAT = "vlhub.eval/1"
EVAL_FILE = "eval.json"
MC, OPEN = "multiple-choice", "open-ended"
LETTERS = "ABCDEFGHIJ"
#: z of a two-sided 95 % interval (1.959963...)
Z95 = NormalDist().inv_cdf(0.975)
#: new tokens per reply: a letter (multiple-choice), or a short answer (open-ended)
MAX_NEW_TOKENS = {MC: 16, OPEN: 256}
#: item keys a category field never overwrites in ``eval.json``'s items
RESERVED = {"index", "id", "question", "choices", "answer", "reply", "picked", "correct", "reference", "chrf",
            "images", "prompt", "subset", "image", "categories"}
NO_CATEGORIES = ("the items of {file} carry no categories, so per-category accuracy is left out (a folder "
                 "prepared before vlhub kept them on each item, or a dataset without any): preparing it again "
                 "with `vlhub data prepare ... --force` fills them (FoodieQA: food_type, main_region)")
PREPARE_AGAIN = "prepare the data again with `vlhub data prepare ... --force`"


# ------------------------------------------------------------------ scoring
def wilson(correct: int, n: int, z: float = Z95) -> list[float]:
    """The Wilson score interval ``[low, high]`` of the proportion ``correct / n`` (95 % by default).

    ``(p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)`` with ``p = correct / n``: unlike the
    normal approximation it stays inside [0, 1] and is not empty at 0 or n correct. ``n = 0`` gives
    ``[0.0, 1.0]`` (nothing is known).
    """
    if n <= 0:
        return [0.0, 1.0]
    p = correct / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return [max(0.0, centre - half), min(1.0, centre + half)]


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


def normalise(text: str) -> str:
    """Text as exact match compares it: NFKC, whitespace collapsed, trailing sentence punctuation dropped."""
    text = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip()
    return text.rstrip("。.!?~～ ")


def exact_match(reply: str, reference: str) -> bool:
    """Whether ``reply`` is ``reference`` (:func:`normalise` on both)."""
    return normalise(reply) == normalise(reference)


def _chrf() -> Any:
    try:
        from sacrebleu.metrics import CHRF
    except ImportError as exc:
        raise MissingDependency(f"open-ended evaluation scores replies with chrF from sacrebleu, which is not "
                                f"installed here ({exc})", "pip install 'sacrebleu>=2.3'") from None
    return CHRF()


def corpus_chrf(replies: Sequence[str], references: Sequence[str]) -> tuple[float, str]:
    """The corpus chrF (0-100) of replies against one reference each, and sacrebleu's signature of it."""
    metric = _chrf()
    score = metric.corpus_score(list(replies), [list(references)]).score if replies else 0.0
    if not replies:
        metric.corpus_score([""], [[""]])  # the signature needs a scored corpus
    return score, str(metric.get_signature())


# ------------------------------------------------------------------ items
def _source(data: str | Path) -> tuple[Path, Path, Path, str]:
    """``(given path, folder, image root, dataset)`` of ``--data``; it must exist."""
    path = Path(data).expanduser().resolve()
    if not path.exists():
        raise BadInput(f"{data} does not exist", "give a folder prepared by `vlhub data prepare` or its val_mc.json")
    folder, root = prepared_folder(path)
    manifest = read_json(folder / "prepared.json", {}, expect=dict)
    dataset = manifest.get("dataset") if isinstance(manifest.get("dataset"), str) else ""
    return path, folder, root, dataset


def load_set(data: str | Path) -> dict[str, Any]:
    """The items to evaluate on and their task, from a prepared folder or one of its files.

    Args:
        data: a prepared folder (its ``val_mc.json``, else its ``val.json``), a ``val_mc.json``-style
            file (items with ``choices``) or a LLaVA-style file (records with ``conversations``).
    Returns:
        ``{"task": MC | OPEN, "file": Path, "dataset": str, "items": [...], "categories": [field],
        "notes": [str]}``. Every item has ``index`` (its position in the file), ``id``, ``question``,
        ``images`` (resolved) and ``prompt`` (what is asked); multiple-choice items also ``choices``,
        ``answer`` and ``categories`` ({field: str}; absent in folders prepared before them),
        open-ended ones ``reference``.
    Raises:
        BadInput: no such path; no validation items there (the fix says how to get some); a damaged file.
    """
    path, folder, root, dataset = _source(data)
    if path.is_file():
        file = path
    elif (folder / "val_mc.json").is_file():
        file = folder / "val_mc.json"
    elif (folder / "val.json").is_file():
        file = folder / "val.json"
    elif not (folder / "prepared.json").is_file():
        raise BadInput(f"{data} is not a prepared dataset folder (no prepared.json)",
                       f"prepare it with a validation share first: `vlhub data prepare NAME --source {data} "
                       "--out DIR --opt val_fraction=0.1`, then give DIR as --data")
    else:
        raise BadInput(f"{data}: no validation split to evaluate on (no val_mc.json or val.json)",
                       "prepare the data with a validation share, e.g. `vlhub data prepare NAME --source DIR "
                       "--out DIR --opt val_fraction=0.1`")
    raw = {n: item for n, item in enumerate(read_json(file, [], expect=list)) if isinstance(item, dict)}
    if any("choices" in item for item in raw.values()):
        items = [_mc_item(file, n, item, root) for n, item in raw.items()]
        task = MC
    else:
        items = [it for n, item in raw.items() if (it := _open_item(n, item, root)) is not None]
        task = OPEN
    if not items:
        raise BadInput(f"{data}: no validation items in {file}",
                       "give a folder prepared by `vlhub data prepare` with a validation split")
    notes = []
    fields = list(dict.fromkeys(k for it in items for k in it.get("categories") or {} if k not in RESERVED))
    if task == MC and any("categories" not in it for it in items):
        notes.append(NO_CATEGORIES.format(file=file))
    if task == OPEN and len(items) < len(raw):
        notes.append(f"{len(raw) - len(items)} record(s) of {file} have no question and answer turns and are "
                     "left out")
    return {"task": task, "file": file, "dataset": dataset, "items": items, "categories": fields, "notes": notes}


def _mc_item(file: Path, n: int, item: Mapping[str, Any], root: Path) -> dict[str, Any]:
    choices = item.get("choices")
    answer = item.get("answer")
    if isinstance(answer, str) and answer.strip().isdigit():  # a hand-written file may quote the index
        answer = int(answer)
    if not isinstance(choices, list) or not choices or not isinstance(item.get("question"), str) \
            or isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
        raise BadInput(f"{file} is damaged: item {n} needs a question, choices and an answer index into them",
                       PREPARE_AGAIN)
    out = {**item, "index": n, "id": str(item.get("id", n)), "choices": [str(c) for c in choices], "answer": answer,
           "images": record_images(item, root)}
    out["prompt"] = plain_prompt(item.get("prompt") or mc_prompt(item["question"], out["choices"]))
    if "categories" in item:
        found = item["categories"] if isinstance(item["categories"], dict) else {}
        out["categories"] = {str(k): str(v) for k, v in found.items() if v is not None and str(v).strip()}
    return out


def _open_item(n: int, record: Mapping[str, Any], root: Path) -> dict[str, Any] | None:
    """The first human turn and the gpt turn after it, or ``None`` when the record has no such pair."""
    turns = record.get("conversations") if isinstance(record.get("conversations"), list) else []
    turns = [t for t in turns if isinstance(t, dict) and isinstance(t.get("value"), str)]
    for k, turn in enumerate(turns[:-1]):
        if turn.get("from") == "human" and turns[k + 1].get("from") == "gpt":
            question = plain_prompt(turn["value"])
            return {"index": n, "id": str(record.get("id", n)), "question": question, "prompt": question,
                    "reference": turns[k + 1]["value"], "images": record_images(record, root)}
    return None


def load_mc(data: str | Path) -> list[dict[str, Any]]:
    """The multiple-choice items of a prepared folder (``val_mc.json``) or of that file (:func:`load_set`).

    Raises:
        BadInput: no multiple-choice items there, or a damaged file.
    """
    found = load_set(data)
    if found["task"] != MC:
        raise BadInput(f"{data}: no multiple-choice validation items (looked for val_mc.json)",
                       "give a folder prepared by `vlhub data prepare` with a validation split")
    return found["items"]


# ------------------------------------------------------------------ one model
def concurrency(convo: Conversation) -> int:
    """How many items :func:`evaluate` asks ``convo`` at once by default: its session's ``concurrency``
    (LMDeploy's ``max_batch_size``, the openai backend's ``concurrency`` option), else 1."""
    try:
        return max(1, int(getattr(convo.session, "concurrency", 1) or 1))
    except (TypeError, ValueError):
        return 1


def _replies(convo: Conversation, prompts: Sequence[tuple[str, list[str]]], width: int,
             done: Callable[[int], None]) -> list[str]:
    """Each ``(text, images)`` asked alone (:meth:`Conversation.reply_once`), ``width`` at a time on threads,
    in the prompts' order; ``done(count)`` after each answer (in this thread)."""
    if width == 1:
        out = []
        for text, images in prompts:
            out.append(convo.reply_once(text, images))
            done(len(out))
        return out
    answers = [""] * len(prompts)
    pool = ThreadPoolExecutor(max_workers=width, thread_name_prefix="vlhub-eval")
    try:
        futures = {pool.submit(convo.reply_once, text, images): n for n, (text, images) in enumerate(prompts)}
        for count, future in enumerate(as_completed(futures), 1):
            answers[futures[future]] = future.result()
            done(count)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # after a failure: nothing new starts, started answers end
    return answers


def evaluate(convo: Conversation, items: Sequence[Mapping[str, Any]],
             progress: ProgressCallback | None = None, width: int | None = None) -> dict[str, Any]:
    """One model on items of :func:`load_set` (greedy, each item asked alone: no history).

    The task is the items' (``choices``: multiple-choice, else open-ended). ``width`` items are asked at
    once (default :func:`concurrency`: a server that batches, LMDeploy's, answers them together; 1 asks
    one at a time); the rows keep the items' order. The conversation's history is not touched and its
    settings are put back afterwards.

    Returns:
        One entry of ``eval.json``'s ``results`` (the module's docstring).
    Raises:
        BadInput, VlhubError: the backend failed (an image, the endpoint, the worker).
        MissingDependency: open-ended items and no sacrebleu.
    """
    task = MC if items and "choices" in items[0] else OPEN
    chrf = _chrf() if task == OPEN else None
    width = max(1, int(width or concurrency(convo)))
    saved = convo.settings
    convo.settings = GenerationSettings(temperature=0.0, top_p=1.0, max_new_tokens=MAX_NEW_TOKENS[task])
    prompts = [(plain_prompt(item.get("prompt") or (mc_prompt(item["question"], item["choices"]) if task == MC
                                                    else item["question"])), list(item.get("images") or []))
               for item in items]
    label = f"eval {Path(convo.model).name or convo.model}"

    def done(count: int) -> None:
        if progress:
            progress(Progress(label, count, len(items), "items"))

    try:
        replies = _replies(convo, prompts, width, done)
    finally:
        convo.settings = saved
    rows = []
    for n, (item, reply) in enumerate(zip(items, replies)):
        row: dict[str, Any] = {"index": item.get("index", n), "id": str(item.get("id", n)),
                               "question": item["question"]}
        if task == MC:
            picked = parse_choice(reply, item["choices"])
            row |= {"choices": list(item["choices"]), "answer": int(item["answer"]), "reply": reply,
                    "picked": picked, "correct": picked == int(item["answer"])}
        else:
            row |= {"reference": item["reference"], "reply": reply,
                    "correct": exact_match(reply, item["reference"]),
                    "chrf": chrf.sentence_score(reply, [item["reference"]]).score}
        row |= {k: v for k, v in (item.get("categories") or {}).items() if k not in RESERVED}
        rows.append(row)
    result = {"model": convo.model, "backend": convo.backend, **_score(rows)}
    result["total"] = result["n"]
    if task == MC:
        result["unanswered"] = sum(r["picked"] is None for r in rows)
        fields = list(dict.fromkeys(k for it in items for k in it.get("categories") or {} if k not in RESERVED))
        result["categories"] = by_category(rows, fields)
    else:
        result["chrf"] = corpus_chrf([r["reply"] for r in rows], [r["reference"] for r in rows])[0]
        result["categories"] = {}
    result["items"] = rows
    return result


def _score(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``n``, ``correct``, ``accuracy`` and ``ci95`` of rows with a ``correct`` flag."""
    n, correct = len(rows), sum(bool(r["correct"]) for r in rows)
    return {"n": n, "correct": correct, "accuracy": correct / n if n else 0.0, "ci95": wilson(correct, n)}


def by_category(rows: Sequence[Mapping[str, Any]], fields: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{field: {value: {n, correct, accuracy, ci95}}}`` of rows carrying the fields (values by count,
    then by name); a row without a field counts in none of its values."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for field in fields:
        groups: dict[str, list[Mapping[str, Any]]] = {}
        for row in rows:
            if row.get(field) is not None:
                groups.setdefault(str(row[field]), []).append(row)
        out[field] = {value: _score(groups[value]) for value in sorted(groups, key=lambda v: (-len(groups[v]), v))}
    return out


def fixed_and_broken(first: Mapping[str, Any], second: Mapping[str, Any]) -> tuple[list[int], list[int]]:
    """Item indices wrong with ``first`` and right with ``second`` (fixed), and the reverse (broken)."""
    before = {r["index"]: bool(r["correct"]) for r in first["items"]}
    after = {r["index"]: bool(r["correct"]) for r in second["items"]}
    common = [i for i in before if i in after]
    return ([i for i in common if not before[i] and after[i]], [i for i in common if before[i] and not after[i]])


# ------------------------------------------------------------------ eval runs
def _summary(result: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k not in ("items", "categories")}


def evaluate_models(sides: Sequence[Conversation | Callable[[], Conversation]], data: str | Path,
                    limit: int | None = None, progress: ProgressCallback | None = None) -> dict[str, Any]:
    """:func:`evaluate` for each side on the same items, recorded as an ``eval`` run with its ``eval.json``.

    Args:
        sides: the models, e.g. the base and the fine-tuned one: each an open conversation (left open), or
            a function opening one (closed after its items, so one model at a time is loaded).
        data: a prepared folder or one of its files (:func:`load_set`).
        limit: only the first ``limit`` items.
        progress: receives one task per model.
    Returns:
        What the run's ``eval.json`` holds (the module's docstring), ``run_id`` included.
    Raises:
        BadInput: no items (no run is created then); BadInput, MissingDependency, VlhubError: a model
            cannot be opened or its backend failed (the run records ``failed`` and the error).
    """
    if limit is not None and limit < 1:
        raise BadInput(f"--limit {limit} is below 1", "give a number of items, or leave --limit out for all")
    found = load_set(data)
    items = found["items"][:limit]
    if found["task"] == OPEN:
        _chrf()  # before any model is loaded
    resolved = str(Path(data).expanduser().resolve())
    run = new_run(KIND, spec={"data": resolved, "limit": limit, "task": found["task"]})
    # this process works for the run: it is `running` while this process lives (and provably is this one)
    run.update(status="running", **process_record(os.getpid(), "pid"))
    results: list[dict[str, Any]] = []
    throughput: list[dict[str, Any]] = []

    def timed(convo: Conversation) -> dict[str, Any]:
        width, started = concurrency(convo), time.monotonic()
        result = evaluate(convo, items, progress, width)
        seconds = time.monotonic() - started
        throughput.append({"model": convo.model, "items": len(items), "seconds": round(seconds, 3),
                           "items_per_s": len(items) / seconds if seconds > 0 else None, "concurrency": width})
        return result

    try:
        for side in sides:
            if isinstance(side, Conversation):
                results.append(timed(side))
                continue
            with side() as convo:
                results.append(timed(convo))
        report: dict[str, Any] = {
            "format": FORMAT, "run_id": run.id, "data": resolved, "file": str(found["file"]),
            "dataset": found["dataset"], "task": found["task"], "limit": limit, "n": len(items),
            "categories": found["categories"], "notes": found["notes"], "results": results}
        if len(results) == 2:
            report["fixed"], report["broken"] = fixed_and_broken(*results)
        if found["task"] == OPEN:
            report["chrf"] = {"signature": corpus_chrf([], [])[1]}  # the settings, the same for every corpus
        report = redact_data(report)
        atomic_write_json(run.path(EVAL_FILE), report)
    except BaseException as exc:  # a stopped page script too: the run never stays `running`
        error = user_error(exc) if isinstance(exc, Exception) else None
        run.update(status="failed", error=error.one_line() if error else f"interrupted ({type(exc).__name__})",
                   results=[_summary(r) for r in results], throughput=throughput)
        raise
    summary = {k: v for k, v in report.items() if k != "results"}
    summary["results"] = [_summary(r) for r in results]
    run.update(status="done", eval_json=str(run.path(EVAL_FILE)), result=summary, throughput=throughput)
    return report


def eval_file(run: str | Path | Run) -> Path:
    """The path of an ``eval`` run's ``eval.json`` (by run id, folder or :class:`~.runs.Run`).

    Raises:
        BadInput: no such run.
    """
    return (run if isinstance(run, Run) else load_run(run)).path(EVAL_FILE)


def load_eval(run: str | Path | Run) -> dict[str, Any]:
    """The data of an ``eval`` run (its ``eval.json``), by run id, folder or :class:`~.runs.Run`.

    Raises:
        BadInput: no such run; not an ``eval`` run; no ``eval.json`` (the evaluation failed, is still
            running, or was recorded by vlhub 0.1); a damaged file.
    """
    found = run if isinstance(run, Run) else load_run(run)
    if found.kind != KIND:
        raise BadInput(f"run {found.id} is a {found.kind or 'unknown'} run, not an evaluation",
                       "`vlhub runs --kind eval` lists the evaluations")
    data = read_json(found.path(EVAL_FILE), expect=dict)
    if data is None:
        raise BadInput(f"run {found.id} ({found.status}) has no {EVAL_FILE}",
                       "a failed, unfinished or vlhub 0.1 evaluation has none: run `vlhub eval` again")
    return data
