"""The small interfaces plugins implement, and the result types they return.

A plugin registers objects through the hooks in :mod:`vlhub.core.hookspecs`. Each
object is duck-typed against one of the protocols below: it has a ``name``, a
one-line ``description``, the ``options`` it takes, and the stage's methods. Every
long method takes an optional ``progress`` callback fed with :class:`Progress`
events; the CLI turns them into tqdm bars and the launcher into ``st.progress``.
Failures the user can fix are raised as :class:`vlhub.core.errors.VlhubError`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence, runtime_checkable


@dataclass(frozen=True)
class Option:
    """One setting a plugin accepts (rendered as a CLI flag and a form field)."""

    name: str
    help: str
    type: type = str
    default: Any = None
    choices: tuple[str, ...] = ()
    required: bool = False

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "help": self.help, "type": self.type.__name__,
                "default": self.default, "choices": list(self.choices), "required": self.required}


@dataclass(frozen=True)
class Progress:
    """A progress event: ``done`` of ``total`` ``unit`` for ``task`` (total may be unknown)."""

    task: str
    done: float = 0
    total: float | None = None
    unit: str = ""
    message: str = ""


ProgressCallback = Callable[[Progress], None]


def to_dict(obj: Any) -> Any:
    """A dataclass result as JSON-ready data (paths as strings)."""
    def convert(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        return value
    return convert(asdict(obj))


# ---------------------------------------------------------------- datasets
@dataclass
class Problem:
    """One rejected record: where it is and why."""

    index: int
    reason: str
    field: str = ""


@dataclass
class PreparedData:
    """A prepared dataset folder: LLaVA-style JSON files, the image root, a report."""

    out: Path
    files: dict[str, Path]          # split name -> JSON file
    image_root: Path
    records: dict[str, int]         # split name -> usable records
    dropped: int
    problems: list[Problem] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Dataset(Protocol):
    """Turns a source folder into XTuner's InternVL (LLaVA-style) format."""

    name: str
    description: str
    options: Sequence[Option]

    def prepare(self, source: Path, out: Path, options: Mapping[str, Any],
                progress: ProgressCallback | None = None) -> PreparedData: ...


# ---------------------------------------------------------------- training
@dataclass
class TrainPlan:
    """What a trainer will run: the generated config, the exact argv and environment."""

    run_id: str
    run_dir: Path
    config: Path
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class Checkpoint:
    """One saved training state: ``iter_N.pth`` as a file or a DeepSpeed folder."""

    step: int
    path: Path
    kind: str                       # "file" or "deepspeed"
    complete: bool
    size: int = 0


@runtime_checkable
class Trainer(Protocol):
    """Plans, launches (detached), follows, stops and resumes a training run in a run folder.

    ``status`` reads the run folder only (log, metrics, checkpoints), so it tells the
    truth after the process that launched the run is gone.
    """

    name: str
    description: str
    options: Sequence[Option]

    def plan(self, model: Path, data: Path, options: Mapping[str, Any], run_dir: Path) -> TrainPlan: ...

    def launch(self, plan: TrainPlan) -> int: ...

    def status(self, run_dir: Path) -> dict[str, Any]: ...

    def stop(self, run_dir: Path, timeout: float = 30.0) -> dict[str, Any]: ...

    def resume(self, run_dir: Path) -> TrainPlan: ...

    def checkpoints(self, run_dir: Path) -> list[Checkpoint]: ...


# ---------------------------------------------------------------- conversion
@dataclass
class Converted:
    """A converted model folder and its verification."""

    out: Path
    source: Path
    provenance: Path
    verified: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Converter(Protocol):
    """Turns a training checkpoint into a model folder that others can load as it is."""

    name: str
    description: str
    options: Sequence[Option]

    def accepts(self, source: Path) -> bool: ...

    def convert(self, source: Path, out: Path, options: Mapping[str, Any],
                progress: ProgressCallback | None = None) -> Converted: ...


# ---------------------------------------------------------------- chat templates
@runtime_checkable
class ChatTemplate(Protocol):
    """A chat format shared by training (xtuner) and serving (tokenizer / LMDeploy)."""

    name: str
    description: str
    jinja: str
    stop_words: Sequence[str]
    system: str
    xtuner_template: str
    lmdeploy_name: str | None

    def matches(self, config: Mapping[str, Any]) -> bool: ...


# ---------------------------------------------------------------- publishing
@dataclass
class PlannedFile:
    """One file of a publish plan."""

    path: str
    size: int
    lfs: bool
    on_remote: bool = False


@dataclass
class Preflight:
    """What a publish would do, and what stops it."""

    target: str
    files: list[PlannedFile]
    bytes_to_send: int
    problems: list[str] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class Published:
    """The outcome of one publish target."""

    target: str
    url: str
    commit: str
    bytes_sent: int
    files_sent: int
    changed: bool = True


@runtime_checkable
class Publisher(Protocol):
    """Sends a model folder to a hub or remote. ``target`` is the part after ``NAME:``."""

    name: str
    description: str
    options: Sequence[Option]

    def preflight(self, folder: Path, target: str, options: Mapping[str, Any]) -> Preflight: ...

    def publish(self, folder: Path, target: str, options: Mapping[str, Any],
                progress: ProgressCallback | None = None) -> Published: ...


# ---------------------------------------------------------------- chat
@dataclass
class GenerationSettings:
    """Sampling settings shared by every chat backend (``temperature`` 0 means greedy decoding)."""

    temperature: float = 0.7
    top_p: float = 0.8
    max_new_tokens: int = 512


@dataclass
class Turn:
    """One ``user`` or ``assistant`` turn; user turns may carry images (paths, in order)."""

    role: str
    text: str
    images: list[Path] = field(default_factory=list)


class ChatSession(Protocol):
    """A live conversation with one model (a loaded worker, a started server or an endpoint).

    ``reply`` gets the whole history, ending with the new user turn, and yields the
    answer in chunks as they are generated; the caller keeps the history.
    """

    def reply(self, history: Sequence[Turn], settings: GenerationSettings) -> Iterator[str]: ...

    def close(self) -> None: ...


@runtime_checkable
class ChatBackend(Protocol):
    """Opens chat sessions on a model folder or an endpoint's model name.

    ``missing()`` returns None when the backend can run here, otherwise one line
    saying why not and how to fix it (shown by the CLI and the Chat page).
    """

    name: str
    description: str
    options: Sequence[Option]

    def missing(self) -> str | None: ...

    def open(self, model: str, options: Mapping[str, Any]) -> ChatSession: ...
