"""The serve-ready check: does a model folder answer an image question and stop, as it will be served?

``vlhub check MODEL`` and the Publish page's Check step call :func:`check`. It opens the folder on a
chat backend (:class:`vlhub.core.chat.Conversation`: ``transformers`` runs the folder's own ``chat``
code and its bundled chat template in the serve or train stage env, on the CPU or a GPU; ``lmdeploy``
runs LMDeploy's ``api_server`` in the serve env on a GPU), asks one question about an image made here
(:func:`make_image`) with greedy decoding, and requires the answer to end with a stop token within
``max_new_tokens`` tokens:

- the backend says how generation ended (the session's ``finish``: ``{"reason": "stop" | "length",
  "tokens": int | None, "token": str | None, "eos": [str]}``; the transformers worker names the last
  token and the folder's eos tokens, an OpenAI-compatible server such as LMDeploy its
  ``finish_reason`` and ``usage.completion_tokens``);
- the stop tokens accepted are the folder's eos tokens and the stop words of its chat template in
  the template catalog (:func:`vlhub.core.convert.template_for_folder`; LMDeploy stops on the same
  words), so a folder whose bundled template ends turns with another token fails;
- an empty answer (the first token was the stop token) fails too.

The result (:class:`CheckResult`) is recorded in the folder's ``vlhub_provenance.json`` as
``serve_check`` (:func:`vlhub.core.provenance.update`, atomic; the field is documented there); a
folder without a provenance file (not written by ``vlhub convert``) is checked but nothing is
recorded. :func:`state` reads the last check back for the publish gate (:func:`gate`) and the model
card. A backend that cannot run here, or a folder that is not a model folder, is bad input and
records nothing; a model that fails to load or answer is a failed check and is recorded.
"""
from __future__ import annotations

import datetime as _dt
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from . import __version__, messages, provenance
from .errors import BadInput, MissingDependency, VlhubError
from .fsutil import timestamp
from .types import GenerationSettings

#: The question asked about :func:`make_image`.
QUESTION = "What shapes and colours are in this image? Answer in one sentence."
#: The default limit: a one-sentence answer of any InternVL model fits well within it.
DEFAULT_MAX_NEW_TOKENS = 128
#: The chat backends a check may run on (a model folder loaded as it will be served).
BACKENDS = ("transformers", "lmdeploy")
#: The provenance field the result is recorded in.
FIELD = "serve_check"
#: What :func:`state` says of a folder that was never checked.
NOT_CHECKED = "not checked"
#: Longest answer kept in the record (characters).
ANSWER_CHARS = 500


@dataclass
class CheckResult:
    """One check: ``status`` ``"ok"`` or ``"failed"``, the reason (one English line, and its catalog key
    ``reason_key`` with ``params`` for other languages), the backend, the date (ISO 8601 UTC), the tokens
    generated (``None`` when the backend did not say), the limit, the stop token seen (``""`` when the
    backend does not name it), the catalog template (``""``: none matched), the question and the answer.
    ``recorded``: written into the folder's provenance; ``note``: why not, when it was not."""

    status: str
    reason: str
    reason_key: str
    params: dict[str, Any]
    backend: str
    date: str
    tokens: int | None
    max_new_tokens: int
    stop: str = ""
    template: str = ""
    question: str = QUESTION
    answer: str = ""
    recorded: bool = False
    note: str = ""
    folder: str = field(default="", repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def record(self) -> dict[str, Any]:
        """The JSON object written as the provenance's ``serve_check`` (no local path in it)."""
        data = asdict(self)
        for name in ("recorded", "note", "folder"):
            data.pop(name)
        return {**data, "vlhub_version": __version__}

    def public(self) -> dict[str, Any]:
        """JSON-ready: the record plus ``ok``, ``recorded``, ``note`` and the folder."""
        return {**self.record(), "ok": self.ok, "recorded": self.recorded, "note": self.note, "folder": self.folder}


def make_image(path: Path) -> Path:
    """Draw the check's image at ``path`` (PNG, 448x448: a red circle and a yellow square on blue).

    Returns:
        ``path``.
    """
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (448, 448), (40, 80, 200))
    draw = ImageDraw.Draw(image)
    draw.ellipse((40, 60, 220, 240), fill=(220, 30, 30))
    draw.rectangle((250, 230, 410, 390), fill=(240, 210, 30))
    image.save(path, format="PNG")
    return path


def stop_words(folder: Path) -> tuple[str, tuple[str, ...]]:
    """The chat template the catalog matches to the folder's ``config.json`` and its stop words;
    ``("", ())`` when none matches (then only the folder's eos tokens count as stops)."""
    from .convert import template_for_folder

    try:
        found = template_for_folder(folder)
    except BadInput:
        return "", ()
    return found.name, tuple(found.stop_words)


def judge(finish: Mapping[str, Any], answer: str, max_new_tokens: int, template: str,
          words: Sequence[str]) -> tuple[str, str, dict[str, Any]]:
    """Whether an answer passed: ``(status, reason_key, params)``.

    Args:
        finish: how generation ended (the session's ``finish``, see the module's documentation).
        answer: the answer's text.
        max_new_tokens: the limit asked for.
        template: the catalog template's name (``""``: none).
        words: its stop words.

    Returns:
        ``("ok", "check.ok" | "check.ok_unnamed", params)`` or ``("failed", "check.no_stop" | "check.empty" |
        "check.wrong_stop", params)``; ``params`` fill the key's text in :mod:`vlhub.core.messages`.
    """
    token = finish.get("token") if isinstance(finish.get("token"), str) else ""
    tokens = finish.get("tokens") if isinstance(finish.get("tokens"), int) else None
    accepted = {w for w in (*words, *(finish.get("eos") or [])) if isinstance(w, str) and w}
    params: dict[str, Any] = {"limit": max_new_tokens, "tokens": "?" if tokens is None else tokens,
                              "stop": token, "template": template or "none", "words": ", ".join(words) or "none",
                              "flag": "--max-new-tokens", "template_flag": "--template"}
    stopped = finish.get("reason") == "stop" or (bool(token) and token in accepted)
    if not stopped:
        return "failed", "check.no_stop", {**params, "stop": ""}
    if token and token not in accepted:
        return "failed", "check.wrong_stop", params
    if not answer.strip():
        return "failed", "check.empty", {**params, "stop": token or "eos"}
    return "ok", "check.ok" if token else "check.ok_unnamed", params


def check(folder: Path, backend: str = "transformers", max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
          options: Mapping[str, Any] | None = None, *, record: bool = True) -> CheckResult:
    """Load ``folder`` on ``backend``, ask one image question, require a stop token; record the result.

    Args:
        folder: the model folder.
        backend: ``transformers`` or ``lmdeploy`` (:data:`BACKENDS`).
        max_new_tokens: the most tokens the answer may take (>= 1).
        options: the backend's own options (``device``, ``env``, ``engine``, ...).
        record: write the result into the folder's provenance (when it has one).

    Returns:
        The result (failed too: a model that does not load, answer or stop).

    Raises:
        BadInput: an unknown backend, a limit below 1, or not a model folder. MissingDependency: the
            backend cannot run here (no stage environment, no GPU); nothing is recorded then.
    """
    from .chat import Conversation
    from .secrets import redact

    folder = Path(folder).expanduser()
    if backend not in BACKENDS:
        raise BadInput("check.bad_backend", flag="--backend", backend=backend, choices=", ".join(BACKENDS))
    if max_new_tokens < 1:
        raise BadInput("check.bad_limit", flag="--max-new-tokens", value=max_new_tokens)
    if not (folder / "config.json").is_file():
        raise BadInput("check.not_model", path=str(folder))
    folder = folder.resolve()
    template, words = stop_words(folder)
    settings = GenerationSettings(temperature=0.0, top_p=1.0, max_new_tokens=max_new_tokens)
    answer, finish = "", {}
    with tempfile.TemporaryDirectory(prefix="vlhub-check-") as tmp:
        image = make_image(Path(tmp) / "check.png")
        try:
            with Conversation(str(folder), backend, options, settings) as chat:
                answer = chat.answer(QUESTION, [image])
                finish = dict(getattr(chat.session, "finish", None) or {})
        except (BadInput, MissingDependency):
            raise
        except VlhubError as exc:  # the model did not load or answer: a failed check
            error = exc.message.replace(str(folder), folder.name)
            status, key, params = "failed", "check.load_failed", {"backend": backend, "error": redact(error)}
        else:
            status, key, params = judge(finish, answer, max_new_tokens, template, words)
    tokens = finish.get("tokens") if isinstance(finish.get("tokens"), int) else None
    stop = str(params.get("stop") or "") if key in ("check.ok", "check.wrong_stop", "check.empty") else ""
    result = CheckResult(status, messages.render(key, "en", params)[0], key, params, backend,
                         _dt.datetime.fromtimestamp(timestamp(), _dt.timezone.utc).isoformat(timespec="seconds"),
                         tokens, max_new_tokens, stop, template, QUESTION, answer[:ANSWER_CHARS], folder=str(folder))
    if record:
        if (folder / provenance.PROVENANCE).is_file():
            provenance.update(folder, {FIELD: result.record()})
            result.recorded = True
        else:
            result.note = (f"not recorded: {folder.name} has no {provenance.PROVENANCE} (a folder `vlhub convert` "
                           "did not write), so a publish will call it not checked")
    return result


def state(folder: Path) -> dict[str, Any]:
    """The folder's last check as the publish preflight and the pages show it.

    Returns:
        ``{"status": "ok" | "failed" | "not checked", "date", "backend", "reason", "reason_key", "params",
        "tokens", "max_new_tokens", "stop", "template", "answer"}`` (the recorded fields; only ``status``
        when never checked). A missing or damaged provenance file reads as never checked (its damage
        is reported by the card's preflight).
    """
    try:
        record = provenance.read(Path(folder).expanduser()).serve_check
    except (VlhubError, OSError):
        record = {}
    if record.get("status") not in ("ok", "failed"):
        return {"status": NOT_CHECKED}
    return {"status": record["status"], **{k: record.get(k) for k in (
        "date", "backend", "reason", "reason_key", "params", "tokens", "max_new_tokens", "stop", "template",
        "answer")}}


def gate(folder: Path, skip: bool = False) -> dict[str, Any]:
    """The publish gate: the folder's :func:`state`, refused when its last check failed.

    Args:
        folder: the model folder being published.
        skip: ``--skip-serve-check`` (publish even so; the state then says ``skipped``).

    Returns:
        :func:`state`, with ``skipped`` (bool).

    Raises:
        BadInput: the last check failed and ``skip`` is False (the message names the date, the backend,
            the reason, and both fixes).
    """
    found = {**state(folder), "skipped": False}
    if found["status"] == "failed":
        if not skip:
            raise BadInput("check.publish_refused", folder=str(folder), date=found.get("date") or "?",
                           backend=found.get("backend") or "?", reason=found.get("reason") or "?",
                           flag="--skip-serve-check")
        found["skipped"] = True
    return found


def summary(found: Mapping[str, Any]) -> str:
    """One English line for a :func:`state` (``serve check: ok (transformers, DATE): ...``)."""
    if found.get("status") not in ("ok", "failed"):
        return "serve check: not checked (run `vlhub check FOLDER` before publishing)"
    text = f"serve check: {found['status']} ({found.get('backend') or '?'}, {found.get('date') or '?'})"
    text += f": {found.get('reason')}" if found.get("reason") else ""
    return text + (" - published anyway (--skip-serve-check)" if found.get("skipped") else "")
