"""Chatting with models: the one API the ``vlhub chat`` command and the Chat page call.

A :class:`Conversation` opens a session on a registered chat backend, keeps the history (and an
optional system prompt), sends user turns with images, streams the answers, asks the last question
again (:meth:`Conversation.regenerate`) and exports the conversation. :class:`Comparison` asks two
conversations the same question (base vs fine-tuned); :func:`examples` offers prompts from a prepared
dataset. Accuracy on a validation split is :mod:`vlhub.core.eval`'s.

Each answer records the engine that served it (:class:`Answer`'s ``engine``: what the session reports as
its ``engine``, e.g. LMDeploy's ``turbomind`` or ``pytorch``, or ``transformers``); the export carries it
(:meth:`Conversation.public`: ``engine`` at the top and on each answer; Markdown: in the title line).
Sessions may also offer ``prepare(images)`` (start encoding or tiling images attached before their
question is asked: :meth:`Conversation.prepare`) and ``concurrency`` (how many replies they serve at
once: :mod:`vlhub.core.eval` sends that many items together).

**Models the launcher keeps loaded** (:func:`load`, :class:`Loaded`). The Chat page cannot know when
its browser tab is closed, so every model it loads is *leased*: the page renews the lease while it is
open (:meth:`Loaded.renew`, every :func:`renew_every` seconds), and a model whose lease is not renewed for
:func:`lease_seconds` seconds is unloaded. The lease is a record file per model,
``$VLHUB_HOME/chat/workers/ID.json`` (backend, model, options, the launcher's and the worker's
processes); its modification time is the last renewal. Both sides enforce it: the built-in workers get
the file as ``--lease FILE --lease-ttl S`` and end by themselves (LMDeploy's api_server with them) when
it is removed or stale, whatever the launcher does; and the launcher closes the sessions of expired
records (a janitor thread, and :func:`sweep` on every page load), which also covers backends whose
workers know nothing of leases. Loading runs in a background thread (:meth:`Loaded.wait`, ``status``),
and :func:`load` returns the model already loaded (or loading) in this launcher when the backend, the
model and the options are the same, so a reloaded page or a second tab reuses it instead of starting
a second copy; every use renews it. Unloading removes the record: the worker ends within a second.
"""
from __future__ import annotations

import json
import logging
import os
import re
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from PIL import Image, UnidentifiedImageError

from . import plugins
from .boundary import user_error
from .errors import BadInput, MissingDependency, VlhubError
from .fsutil import atomic_write_json, read_json
from .home import vlhub_home
from .runs import GONE, OWNED, check_process, process_record
from .secrets import redact_data
from .types import ChatBackend, ChatSession, GenerationSettings, Turn, to_dict

log = logging.getLogger(__name__)


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


def runnable_backend(names: Sequence[str] | None = None) -> str:
    """The first backend that can run here (``missing()`` is ``None``), in registration order (``lmdeploy``,
    ``transformers``, then ``openai``, which always can); ``""`` when none can."""
    found = backends()
    return next((name for name in (names or list(found)) if name in found and found[name].missing() is None), "")


def base_model_of(folder: str | Path) -> str:
    """The base model a converted folder was trained from (its ``vlhub_provenance.json``), or ``""``
    (no provenance, a damaged one, or none recorded): a hub id or a local folder's path."""
    from . import provenance

    try:
        return provenance.read(Path(folder).expanduser()).base_model
    except (VlhubError, OSError):
        return ""


@dataclass
class Answer(Turn):
    """An ``assistant`` turn with the ``engine`` that served it (``""``: the backend does not say, e.g. an
    endpoint)."""

    engine: str = ""


def _turn_data(turn: Turn) -> dict[str, Any]:
    """A turn as JSON-ready data; an answer's ``engine`` only when known."""
    data = to_dict(turn)
    if not data.get("engine"):
        data.pop("engine", None)
    return data


class Conversation:
    """One model on one backend, with the history of the conversation.

    ``system`` (``""``: none) goes first in what every turn sends, as a ``system`` :class:`Turn`; it is
    not part of ``history``.
    """

    def __init__(self, model: str, backend: str | None = None, options: Mapping[str, Any] | None = None,
                 settings: GenerationSettings | None = None, *, session: ChatSession | None = None,
                 system: str = "") -> None:
        """Open a session on ``backend`` (default: :func:`auto_backend`), or use ``session`` when given
        (e.g. :meth:`Loaded.conversation`: a model already loaded)."""
        self.backend = backend or auto_backend(model, (options or {}).get("base_url"))
        self.model = model
        self.settings = settings or GenerationSettings()
        self.system = system
        self.history: list[Turn] = []
        if session is not None:
            self.session: ChatSession = session
            return
        impl = plugins.get("chat_backends", self.backend)
        reason = impl.missing()
        if reason:
            raise MissingDependency(f"the {self.backend} chat backend cannot run here: {reason}")
        self.session = impl.open(model, dict(options or {}))

    @property
    def engine(self) -> str:
        """The engine serving the answers, as the session reports it (its ``engine``: LMDeploy's ``turbomind``
        or ``pytorch``, ``transformers``); ``""`` when the backend does not say."""
        return str(getattr(self.session, "engine", "") or "")

    def _system(self) -> list[Turn]:
        return [Turn("system", self.system)] if self.system.strip() else []

    def prepare(self, images: Sequence[str | Path]) -> list[Path]:
        """Check images attached for the next turn and, when the session offers ``prepare``, let it start
        encoding or tiling them in the background (an interactive chat overlaps that with typing).

        Returns:
            The resolved paths, for :meth:`ask`.
        Raises:
            BadInput: an image is missing or unreadable (:func:`check_image`).
        """
        checked = [check_image(p) for p in images]
        start = getattr(self.session, "prepare", None)
        if checked and callable(start):
            start(checked)
        return checked

    def ask(self, text: str, images: Sequence[str | Path] = ()) -> Iterator[str]:
        """Send a user turn and stream the answer; both join the history once the answer is complete (the
        answer as an :class:`Answer` naming the engine)."""
        turn = Turn("user", text, [check_image(p) for p in images])
        chunks: list[str] = []
        for chunk in self.session.reply([*self._system(), *self.history, turn], self.settings):
            chunks.append(chunk)
            yield chunk
        self.history += [turn, Answer("assistant", "".join(chunks).strip(), engine=self.engine)]

    def reply_once(self, text: str, images: Sequence[str | Path] = ()) -> str:
        """The answer to one question asked alone (the system prompt and this turn, no history), recorded
        nowhere: what an evaluation asks. Safe from several threads at once when the session's
        ``concurrency`` is above 1.

        Raises:
            BadInput: an image is missing or unreadable. VlhubError: the backend failed.
        """
        turn = Turn("user", text, [check_image(p) for p in images])
        return "".join(self.session.reply([*self._system(), turn], self.settings)).strip()

    def last_question(self) -> int | None:
        """The index in ``history`` of the last user turn (``None``: nothing asked yet)."""
        return next((k for k in range(len(self.history) - 1, -1, -1) if self.history[k].role == "user"), None)

    def regenerate(self) -> Iterator[str]:
        """Ask the last user turn again (same text and images) and stream the new answer, which replaces
        the old one; if it fails the old answer stays.

        Raises:
            BadInput: nothing was asked yet. VlhubError: as :meth:`ask`.
        """
        k = self.last_question()
        if k is None:
            raise BadInput("nothing to regenerate: no question was asked yet", "ask a question first")
        question, kept = self.history[k], self.history[k:]
        self.history = self.history[:k]
        done = False
        try:
            yield from self.ask(question.text, question.images)
            done = True
        finally:
            if not done:
                self.history = self.history[:k] + kept

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
        """The conversation as JSON-ready data: ``backend``, ``model``, ``engine`` (when the backend says),
        ``settings``, ``system`` (when set) and ``turns`` (``role``, ``text``, ``images``; answers also
        ``engine`` when known)."""
        data: dict[str, Any] = {"backend": self.backend, "model": self.model}
        if self.engine:
            data["engine"] = self.engine
        data["settings"] = to_dict(self.settings)
        if self.system.strip():
            data["system"] = self.system
        return {**data, "turns": [_turn_data(t) for t in self.history]}

    def to_markdown(self, title: str = "") -> str:
        """The conversation as Markdown (images as links to their files; the title line names the backend and,
        when known, ``engine: NAME``)."""
        served = f"{self.backend}, engine: {self.engine}" if self.engine else self.backend
        lines = [f"# {title or self.model} ({served})", ""]
        if self.system.strip():
            lines += ["**system**:", "", self.system, ""]
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


# ------------------------------------------------------------------ models the launcher keeps loaded
#: Seconds a loaded model outlives its last renewal (``$VLHUB_CHAT_LEASE_S`` overrides it): long enough
#: for a browser tab in the background (browsers then wake its timers about once a minute), short enough
#: that a closed tab gives its memory (and GPU) back within minutes.
LEASE_S = 180.0
#: How often an open Chat page renews the leases of its models.
RENEW_S = 15.0
#: Record format of ``$VLHUB_HOME/chat/workers/ID.json``.
RECORD_FORMAT = "vlhub.chat-worker/1"
LOADING, READY, FAILED, UNLOADED = "loading", "ready", "failed", "unloaded"


def lease_seconds() -> float:
    """The lease of a loaded model in seconds: ``$VLHUB_CHAT_LEASE_S`` when it is a positive number, else
    :data:`LEASE_S`."""
    try:
        value = float(os.environ.get("VLHUB_CHAT_LEASE_S", ""))
    except ValueError:
        return LEASE_S
    return value if value > 0 else LEASE_S


def renew_every() -> float:
    """How often a page renews: :data:`RENEW_S`, or a quarter of a shorter lease."""
    return min(RENEW_S, lease_seconds() / 4)


def workers_dir() -> Path:
    """Where the records (and leases) of loaded models are: ``$VLHUB_HOME/chat/workers``."""
    return vlhub_home() / "chat" / "workers"


def _model_key(backend: str, model: str) -> str:
    folder = Path(model).expanduser()
    return str(folder.resolve()) if model and backend != "openai" and folder.is_dir() else model


def _key(backend: str, model: str, options: Mapping[str, Any]) -> str:
    return json.dumps([backend, _model_key(backend, model), dict(options)], sort_keys=True, default=str)


def _close_quietly(session: ChatSession) -> None:
    try:
        session.close()
    except Exception as exc:  # noqa: BLE001 - unloading goes on; the reason is logged
        log.debug("closing a chat session failed: %s", exc)


class Loaded:
    """A model this launcher loaded (or is loading) for chat, shared by every page session that asks for
    the same backend, model and options (:func:`load`).

    ``status`` is :data:`LOADING`, :data:`READY`, :data:`FAILED` (``error`` says why) or :data:`UNLOADED`
    (``reason`` says why: unloaded, lease expired, the worker stopped). The record file ``record`` is
    the lease: :meth:`renew` touches it; removing it ends the worker.
    """

    def __init__(self, backend: str, model: str, options: Mapping[str, Any], ttl: float) -> None:
        self.id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        self.backend, self.model, self.options, self.ttl = backend, model, dict(options), ttl
        self.key = _key(backend, model, options)
        self.record = workers_dir() / f"{self.id}.json"
        self.status = LOADING
        self.reason = ""
        self.error: VlhubError | None = None
        self.session: ChatSession | None = None
        self.started = time.time()
        self._pids: dict[str, Any] = {}
        self._ready = threading.Event()
        self._state = threading.Lock()
        self._replying = threading.Lock()

    def __repr__(self) -> str:
        return f"Loaded({self.id}, {self.backend}, {self.model!r}, {self.status})"

    def label(self) -> str:
        """``backend · model name`` for lists."""
        return f"{self.backend} · {Path(self.model).name or self.model}"

    def _write(self) -> None:
        self.record.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.record, {
            "format": RECORD_FORMAT, "id": self.id, "backend": self.backend, "model": self.model,
            "options": redact_data(self.options), "status": self.status, "lease_s": self.ttl,
            "started": self.started,
            "launcher": process_record(os.getpid(), "pid"), **self._pids})

    def _drop_record(self) -> None:
        self.record.unlink(missing_ok=True)

    def _open(self, impl: ChatBackend) -> None:
        """Load the model (in the background thread :func:`load` starts)."""
        try:
            session = impl.open(self.model, {**self.options, "lease": str(self.record), "lease_ttl": self.ttl})
        except BaseException as exc:  # noqa: BLE001 - reported through ``error``
            with self._state:
                self.error = user_error(exc) if isinstance(exc, Exception) else VlhubError(
                    f"loading {self.label()} was interrupted ({type(exc).__name__})", "press Start again")
                if self.status == LOADING:
                    self.status = FAILED
            self._drop_record()
            self._ready.set()
            return
        pids = getattr(session, "pids", None)
        found = pids() if callable(pids) else {}
        for field_name, prefix in (("pid", "worker_pid"), ("server_pid", "server_pid")):
            if isinstance(found.get(field_name), int):  # provable later by check_process
                self._pids |= process_record(found[field_name], prefix)
        with self._state:
            cancelled = self.status != LOADING
            if not cancelled:
                self.session, self.status = session, READY
                self._write()
        if cancelled:
            _close_quietly(session)
        self._ready.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until loading ends (ready or failed); ``False`` when still loading after ``timeout`` s."""
        return self._ready.wait(timeout)

    def alive(self) -> bool:
        """Whether the model is loaded and its worker (if any) still runs; a worker found gone marks it
        :data:`UNLOADED`."""
        if self.status != READY:
            return False
        check = getattr(self.session, "alive", None)
        if callable(check) and not check():
            self.unload("the worker stopped (its lease expired, or it failed: see its log)")
            return False
        return True

    def expired(self) -> bool:
        """Whether the lease is over: the record is gone or was not renewed for ``ttl`` seconds."""
        try:
            return time.time() - self.record.stat().st_mtime > self.ttl
        except FileNotFoundError:
            return True

    def renew(self) -> bool:
        """Renew the lease (touch the record); ``False`` when the model is no longer loaded or loading."""
        if self.status not in (LOADING, READY):
            return False
        try:
            os.utime(self.record)
        except FileNotFoundError:  # removed outside (or by the worker, once expired): the worker is ending
            self.unload("its lease record was removed")
            return False
        return True

    def unload(self, reason: str = "unloaded") -> None:
        """Stop the model: remove the record (the worker ends within a second) and close the session;
        a model still loading is stopped as well. Idempotent."""
        with self._state:
            if self.status in (UNLOADED, FAILED):
                self._drop_record()
                return
            self.status, self.reason = UNLOADED, reason
            session, self.session = self.session, None
        self._drop_record()
        if session is not None:
            _close_quietly(session)
        with _LOCK:
            if _LOADED.get(self.id) is self:
                del _LOADED[self.id]

    def conversation(self, settings: GenerationSettings | None = None, system: str = "") -> Conversation:
        """A new conversation (its own history) on this model.

        Raises:
            VlhubError: the model is not loaded (still loading, failed, or unloaded; the reason is named).
        """
        if not self.alive():
            raise self.error or VlhubError(f"{self.label()} is not loaded ({self.status}"
                                           f"{': ' + self.reason if self.reason else ''})", "press Start to load it")
        return Conversation(self.model, self.backend, settings=settings, session=SharedSession(self), system=system)


class SharedSession:
    """A :class:`Loaded` model's session as seen by one conversation: one reply at a time across all of
    them, each renewing the lease; closing it unloads the model."""

    def __init__(self, loaded: Loaded) -> None:
        self.loaded = loaded

    def reply(self, history: Sequence[Turn], settings: GenerationSettings) -> Iterator[str]:
        """Stream the answer (waiting for another conversation's answer on the same model to finish)."""
        loaded = self.loaded
        with loaded._replying:
            session = loaded.session
            if session is None or not loaded.alive():
                raise VlhubError(f"{loaded.label()} is no longer loaded ({loaded.reason or loaded.status})",
                                 "press Start to load it again")
            loaded.renew()
            renewed, every = time.monotonic(), min(5.0, loaded.ttl / 4)
            for chunk in session.reply(history, settings):
                if time.monotonic() - renewed > every:
                    loaded.renew()
                    renewed = time.monotonic()
                yield chunk
            loaded.renew()

    @property
    def engine(self) -> str:
        """The loaded session's ``engine`` (``""`` when it does not say or is gone)."""
        return str(getattr(self.loaded.session, "engine", "") or "")

    def prepare(self, images: Sequence[Path]) -> None:
        """The loaded session's ``prepare``, unless another conversation's answer is being generated (the
        images are then prepared with their question)."""
        start = getattr(self.loaded.session, "prepare", None)
        if callable(start) and self.loaded._replying.acquire(blocking=False):
            try:
                start(images)
            finally:
                self.loaded._replying.release()

    def close(self) -> None:
        """Unload the model (for every conversation on it)."""
        self.loaded.unload()


_LOADED: dict[str, Loaded] = {}
_LOCK = threading.RLock()
_JANITOR: list[threading.Thread] = []


def load(model: str, backend: str | None = None, options: Mapping[str, Any] | None = None,
         ttl: float | None = None) -> Loaded:
    """The model loaded with these settings in this launcher, or start loading it in the background.

    Args:
        model: a model folder, or an endpoint's model name.
        backend: the chat backend (default: :func:`auto_backend`).
        options: the backend's options (the same options share a model; ``lease`` and ``lease_ttl`` are set
            here).
        ttl: the lease in seconds (default :func:`lease_seconds`).
    Returns:
        A :class:`Loaded` model, :data:`LOADING` or :data:`READY` (an existing one is renewed).
    Raises:
        MissingDependency: the backend cannot run here. BadInput: an unknown backend, or no model folder.
    """
    options = dict(options or {})
    backend = backend or auto_backend(model, options.get("base_url"))
    impl = plugins.get("chat_backends", backend)
    reason = impl.missing()
    if reason:
        raise MissingDependency(f"the {backend} chat backend cannot run here: {reason}")
    key = _key(backend, model, options)
    with _LOCK:
        sweep()
        for entry in _LOADED.values():
            if entry.key == key and (entry.status == LOADING or entry.alive()) and entry.renew():
                return entry
        entry = Loaded(backend, model, options, ttl or lease_seconds())
        entry._write()
        _LOADED[entry.id] = entry
        _start_janitor()
    threading.Thread(target=entry._open, args=(impl,), name=f"vlhub-load-{entry.id}", daemon=True).start()
    return entry


def loaded() -> list[Loaded]:
    """The models this launcher has loaded or is loading (after :func:`sweep`), oldest first."""
    with _LOCK:
        sweep()
        return [e for e in _LOADED.values() if e.status == LOADING or e.alive()]


def renew(entries: Sequence[Loaded]) -> None:
    """Renew the leases of ``entries`` (what an open Chat page does every :func:`renew_every` seconds)."""
    for entry in entries:
        entry.renew()


def sweep() -> list[str]:
    """Unload this launcher's models whose lease expired, and clean up after records no launcher keeps:
    those of a launcher that is gone, or expired ones (their worker, and LMDeploy's api_server, are
    stopped when provably the processes the record names).

    Returns:
        The ids of the models unloaded or cleaned up.
    """
    done = []
    with _LOCK:
        for entry in list(_LOADED.values()):
            if entry.status in (FAILED, UNLOADED):
                _LOADED.pop(entry.id, None)
            elif entry.expired():
                entry.unload(f"its lease expired (not renewed for {entry.ttl:.0f} s)")
                done.append(entry.id)
            elif entry.status == READY and not entry.alive():
                done.append(entry.id)
        ours = set(_LOADED)
    folder = workers_dir()
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if path.stem in ours:
            continue
        try:
            record = read_json(path, {}, expect=dict) or {}
            age = time.time() - path.stat().st_mtime
        except (VlhubError, OSError):
            continue
        launcher = record.get("launcher") if isinstance(record.get("launcher"), dict) else {}
        ttl = record.get("lease_s") if isinstance(record.get("lease_s"), (int, float)) else LEASE_S
        if launcher.get("pid") == os.getpid() and age <= ttl:
            continue  # one this launcher is still writing
        if check_process(launcher).state != GONE and age <= ttl:
            continue  # another launcher's live model
        _stop_recorded(record)
        path.unlink(missing_ok=True)
        done.append(path.stem)
    return done


def _stop_recorded(record: Mapping[str, Any]) -> None:
    """SIGTERM the worker and the server group a stale record names, when provably theirs."""
    worker = check_process(record, "worker_pid")
    if worker.state == OWNED and worker.process is not None:
        try:
            worker.process.terminate()
        except Exception:  # noqa: BLE001 - gone meanwhile
            pass
    server = check_process(record, "server_pid")
    if server.state == OWNED and server.pid:
        try:
            os.killpg(server.pid, signal.SIGTERM)
        except OSError:
            pass


def _janitor() -> None:
    while True:
        with _LOCK:
            ttls = [e.ttl for e in _LOADED.values()]
        time.sleep(max(0.5, min([RENEW_S, lease_seconds()] + ttls) / 3))
        try:
            sweep()
        except Exception as exc:  # noqa: BLE001 - it must keep running
            log.debug("chat sweep failed: %s", exc)


def _start_janitor() -> None:
    if not any(t.is_alive() for t in _JANITOR):
        _JANITOR[:] = [threading.Thread(target=_janitor, name="vlhub-chat-janitor", daemon=True)]
        _JANITOR[0].start()


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
