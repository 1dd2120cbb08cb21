"""The small interfaces plugins implement, and the result types they return.

A plugin registers objects through the hooks in :mod:`vlhub.core.hookspecs`. Each
object is duck-typed against one of the protocols below: it has a ``name``, a
one-line ``description``, the ``options`` it takes, and the stage's methods; it may also
declare the secrets it reads, ``secrets = (Secret(...),)`` (:class:`vlhub.core.secrets.Secret`,
optional, so not part of the protocols below). Every
long method takes an optional ``progress`` callback fed with :class:`Progress`
events; the CLI turns them into tqdm bars and the launcher into ``st.progress``.
Failures the user can fix are raised as :class:`vlhub.core.errors.VlhubError`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence, runtime_checkable

from .options import Option
from .secrets import Secret  # noqa: F401 (re-exported: ``secrets = (Secret(...),)``)
from .prepared.format import PreparedData, Problem  # noqa: F401 (Problem: re-exported)


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
@runtime_checkable
class Dataset(Protocol):
    """Turns a source folder into XTuner's InternVL (LLaVA-style) format.

    Optional (not part of the protocol, so datasets without it still conform): ``card_data``, a
    mapping of what a published model card says about the data a model was trained or evaluated
    on (:mod:`vlhub.plugins.publishers.card`): ``hub_id`` (str: the dataset's id on the Hugging Face
    Hub, e.g. ``"lyan62/FoodieQA"``; the card names and links the data by it, never by the plugin's
    name), ``license`` (str: the Hub's license id, e.g. ``"cc-by-nc-nd-4.0"``), ``license_url``
    (str: the license's text) and ``evaluation_only`` (bool: the data's terms allow evaluation
    only; the card then republishes none of its images). Without it, the card calls the data
    local and names no dataset. ``descriptions``, the ``description`` by language code (e.g.
    ``{"zh": "..."}``), shown on the Data page in that language.
    """

    name: str
    description: str
    options: Sequence[Option]

    def prepare(self, source: Path, out: Path, options: Mapping[str, Any],
                progress: ProgressCallback | None = None) -> PreparedData:
        """Read ``source`` and write the prepared dataset into ``out``.

        Called by ``vlhub data prepare`` and the Data page (:func:`vlhub.core.data.prepare`), which has
        checked that ``source`` exists and that ``out`` may be written (empty, or ``force``).

        Args:
            source: the dataset as downloaded: a folder or a file.
            out: the folder to write, in the layout of :mod:`vlhub.plugins.datasets.prepared` (one
                LLaVA-style JSON file per split, ``report.json``, ``stats.json``, ``prepared.json`` last).
            options: one value per :class:`Option` of ``options``, converted to its ``type`` (missing ones
                at their default), plus ``strict`` (bool: raise instead of dropping bad records) and
                ``force`` (bool: ``out`` may be replaced).
            progress: called with :class:`Progress` events (counts, e.g. ``unit`` ``"img"`` or ``"file"``).
        Returns:
            :class:`PreparedData`: the split files (split name -> path), the image root, usable records
            per split, the number dropped and why (:class:`Problem`), and statistics.
        Raises:
            vlhub.core.errors.BadInput: the source or an option is wrong (exit code 2).
            vlhub.plugins.datasets.validate.ValidationFailed: ``strict`` and some record is bad; nothing
                is written (exit code 1).
        """


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

    Optional (not part of the protocol, so trainers without it still conform):
    ``check_records(model: Path, data: Path, options: Mapping[str, Any]) -> dict[str, Any]``, the
    trainer's own check of every record of ``data`` (a prepared folder or a training JSON file), mirroring
    what its dataset code accepts and how it tokenises, with ``model``'s tokenizer and the trainer's
    ``options`` (e.g. ``max_length``). It returns ``records`` (checked), ``kept``, ``problems`` (the records
    it cannot train: ``{"index", "field", "reason", "kind"}``, ``index`` the record's position in the file),
    ``problem_count``, ``over_max_length`` (samples it would cut) and ``over_max_length_worst``
    (``{"index", "tokens", "over"}`` or None), and may add more; it raises ``BadInput`` /
    ``MissingDependency`` like :meth:`plan`. ``vlhub data validate --trainer NAME`` and ``vlhub data
    prepare --trainer NAME`` run it (:func:`vlhub.core.train.check_records`); a trainer's :meth:`plan` runs
    its own check (``vlhub train --dry-run``).
    """

    name: str
    description: str
    options: Sequence[Option]

    def plan(self, model: Path, data: Path, options: Mapping[str, Any], run_dir: Path) -> TrainPlan:
        """Check the inputs and write the training config into ``run_dir``; start nothing.

        Called by ``vlhub train`` (also with ``--dry-run``) and the Train page, after vlhub created
        ``run_dir`` (with its ``run.json``); vlhub removes the folder again when this raises.

        Args:
            model: the base model folder (``config.json`` and weights).
            data: a prepared dataset folder (what :meth:`Dataset.prepare` wrote).
            options: one value per :class:`Option` of ``options``, by name.
            run_dir: the new run's folder; everything the run writes goes there.
        Returns:
            :class:`TrainPlan`: the config file, the exact command (argv) and environment to run,
            dataset facts, the resolved settings and warnings (one line each).
        Raises:
            vlhub.core.errors.BadInput: a model, data or option problem the user can fix (exit code 2).
            vlhub.core.errors.MissingDependency: the stage environment lacks something (exit code 2).
        """

    def launch(self, plan: TrainPlan) -> int:
        """Start the planned (or resumed) run detached, so it outlives the command that started it.

        Args:
            plan: what :meth:`plan` or :meth:`resume` returned for ``plan.run_dir``.
        Returns:
            The process id of the started supervisor. Before returning, the trainer records in
            ``run.json`` (:class:`vlhub.core.runs.Run`) ``status: running`` and the process (pid, start
            time, command line) so that :meth:`status` and :meth:`stop` can prove it is the run's.
        Raises:
            vlhub.core.errors.BadInput: the machine cannot run the plan (e.g. too few GPUs); nothing started.
        """

    def status(self, run_dir: Path) -> dict[str, Any]:
        """The run's state, read from its folder only; nothing is signalled.

        Called by :func:`vlhub.core.lifecycle.refresh` when the run's recorded process is gone, to
        record how it ended; every key is stored into ``run.json``.

        Args:
            run_dir: the run's folder.
        Returns:
            ``status``: ``running``, ``stopping``, ``finished``, ``stopped``, ``failed`` or ``lost``, plus
            any details to record (e.g. ``progress``, ``error``, ``lost_reason``).
        Raises:
            vlhub.core.errors.BadInput: ``run_dir`` holds no readable ``run.json``.
        """

    def stop(self, run_dir: Path, timeout: float = 30.0) -> dict[str, Any]:
        """Stop the run's processes (SIGTERM, then SIGKILL after ``timeout``) and record the outcome.

        Only processes proven to be the run's (:func:`vlhub.core.runs.check_process`) may be signalled.

        Args:
            run_dir: the run's folder.
            timeout: seconds between SIGTERM and SIGKILL.
        Returns:
            The run's ``run.json`` data after the stop.
        Raises:
            vlhub.core.errors.BadInput: the run is not active, or its process cannot be proven to be
                the run's (then nothing is signalled).
        """

    def resume(self, run_dir: Path) -> TrainPlan:
        """A plan that continues a stopped or failed run from its last complete checkpoint.

        Called by ``vlhub train --resume RUN``, which then passes the plan to :meth:`launch`.

        Args:
            run_dir: the run's folder.
        Returns:
            :class:`TrainPlan` whose ``command`` ends with the checkpoint resumed from (vlhub records
            ``command[-1]`` as ``resumed_from``).
        Raises:
            vlhub.core.errors.BadInput: the run is still active, was never planned, or has no complete
                checkpoint.
        """

    def checkpoints(self, run_dir: Path) -> list[Checkpoint]:
        """The run's saved checkpoints, oldest (lowest step) first; ``[]`` when there is none.

        Called by the Train and Convert pages and ``vlhub run show``; a checkpoint still being
        written has ``complete`` False.

        Args:
            run_dir: the run's folder.
        Returns:
            One :class:`Checkpoint` per save: step, path, ``kind`` (``file`` or ``deepspeed``), whether
            complete, size in bytes.
        Raises:
            OSError: the run folder cannot be read.
        """


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

    def accepts(self, source: Path) -> bool:
        """Whether this converter handles ``source``; must be quick and must not raise.

        ``vlhub convert`` without ``--converter`` uses the first registered converter that accepts.

        Args:
            source: a training checkpoint (an ``iter_N.pth`` file or DeepSpeed folder), its run's
                config beside it.
        Returns:
            True when :meth:`convert` can convert it.
        Raises:
            Nothing: a source it cannot read is simply not accepted.
        """

    def convert(self, source: Path, out: Path, options: Mapping[str, Any],
                progress: ProgressCallback | None = None) -> Converted:
        """Write a model folder to ``out`` that loads as it is (weights, config, tokenizer, template).

        Called by ``vlhub convert`` and the Convert page (:func:`vlhub.plugins.converters.convert`).

        Args:
            source: the checkpoint (as for :meth:`accepts`).
            out: the folder to write; it must not exist unless ``options["force"]``.
            options: ``config`` (str: the training config), ``template`` (str or None: a chat template
                name), ``force`` (bool: replace ``out``), ``verify`` (bool: load the result and generate),
                ``image`` (str or None: an image to verify with), plus one value per :class:`Option`.
            progress: called with :class:`Progress` events (e.g. bytes hashed, ``unit`` ``"B"``).
        Returns:
            :class:`Converted`: the folder, the source, the provenance file and the verification.
        Raises:
            vlhub.core.errors.BadInput: wrong source, template or ``out`` (exit code 2).
            vlhub.core.errors.MissingDependency: the stage environment lacks something (exit code 2).
            vlhub.core.errors.VlhubError: the conversion or its verification failed (exit code 1).
        """


# ---------------------------------------------------------------- chat templates
@runtime_checkable
class ChatTemplate(Protocol):
    """A chat format shared by training (xtuner) and serving (tokenizer / LMDeploy).

    ``jinja`` is written into a converted model's ``tokenizer_config.json``, ``stop_words`` into its
    ``generation_config.json``; ``system`` is the default system prompt; ``xtuner_template`` names the
    xtuner ``PROMPT_TEMPLATE`` entry to train with; ``lmdeploy_name`` is LMDeploy's name for the
    format (None when LMDeploy has none).
    """

    name: str
    description: str
    jinja: str
    stop_words: Sequence[str]
    system: str
    xtuner_template: str
    lmdeploy_name: str | None

    def matches(self, config: Mapping[str, Any]) -> bool:
        """Whether a model with this ``config.json`` uses this chat format; must not raise.

        :func:`vlhub.plugins.templates.template_for_model` returns the first registered template that
        matches (config generation, conversion, chat).

        Args:
            config: the model's parsed ``config.json`` (an InternVL one has ``llm_config``).
        Returns:
            True when this template applies.
        Raises:
            Nothing: a config it does not understand does not match.
        """


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


@dataclass
class PublishPlan(Preflight):
    """A :class:`Preflight` that its publisher's ``publish`` executes as it is: planned once, sent once.

    The preflight scans the folder once and reads the remote once; everything the publish
    needs is kept here (no module state, no second scan, no re-planning). Only the
    :class:`Preflight` fields are public (the ``--json`` preflight table); the rest stays in
    memory and may hold clients, never shown. Built by :func:`vlhub.core.publishing.plan.start`
    and completed by :func:`vlhub.core.publishing.plan.plan_files`.

    Attributes:
        folder: the model folder (absolute).
        scanned: the folder's one scan (:class:`vlhub.core.publishing.folder.FolderScan`).
        sources: the folder's files to send (:class:`vlhub.core.publishing.folder.LocalFile`:
            path, size, mtime, inode, resolved path, final LFS decision); the publish refuses
            a folder whose files changed since (:func:`vlhub.core.publishing.folder.check_unchanged`).
        extras: generated files sent beside them (path -> content: model card, ``.gitattributes``).
        hashes: path -> SHA-256 known at the preflight (cached, or hashed for a dry run).
        blobs: path -> git blob id of every small and generated file's planned content.
        remote: what the remote held (the publisher's form, e.g. a
            :class:`vlhub.core.publishing.gitlfs.RemoteState` or ``path -> RemoteFile``);
            ``None`` when the repository does not exist yet.
        job: the publisher's own description of where and how to send (e.g. a
            :class:`vlhub.core.publishing.gitpush.GitJob`).
    """

    folder: Path | None = None
    scanned: Any = None
    sources: list[Any] = field(default_factory=list)
    extras: dict[str, bytes] = field(default_factory=dict, repr=False)
    hashes: dict[str, str] = field(default_factory=dict)
    blobs: dict[str, str] = field(default_factory=dict)
    remote: Any = field(default=None, repr=False)
    job: Any = field(default=None, repr=False)

    def preflight(self) -> Preflight:
        """The public part: the table, problems and checks (what ``--json`` prints)."""
        return Preflight(self.target, self.files, self.bytes_to_send, self.problems, self.checks)


@runtime_checkable
class Publisher(Protocol):
    """Sends a model folder to a hub or remote. ``target`` is the part after ``NAME:``.

    Optional: ``card(folder, target) -> str | None``, the model card this publisher would
    generate for ``folder`` (no network; ``target`` may be ``""``), shown by the Publish page
    through :func:`vlhub.core.publish.card_preview`.
    """

    name: str
    description: str
    options: Sequence[Option]

    def preflight(self, folder: Path, target: str, options: Mapping[str, Any],
                  progress: ProgressCallback | None = None) -> Preflight:
        """Check one target and list what a publish would send; send and change nothing.

        Called for every target before anything is sent (``vlhub publish``, also ``--dry-run``, and the
        Publish page, :func:`vlhub.core.publish.publish`).

        Args:
            folder: the model folder, absolute.
            target: the part of ``--to NAME:TARGET`` after ``NAME:`` (e.g. ``org/name`` or a URL).
            options: ``private``, ``overwrite_card``, ``follow_symlinks``, ``dry_run`` (bool); ``via``,
                ``message``, ``require_keyword`` (str or None); plus one value per :class:`Option`.
            progress: called with :class:`Progress` events while files are checked (e.g. bytes hashed,
                ``unit`` ``"B"``).
        Returns:
            :class:`PublishPlan` (a :class:`Preflight`): the target, one :class:`PlannedFile` per file
            (size in bytes, LFS or not, already on the remote or not), ``bytes_to_send``, and ``problems``
            (one line each; any problem stops this target, the others go on), plus what :meth:`publish`
            needs to send exactly that. A plain :class:`Preflight` is accepted from publishers written
            for vlhub 0.1: their ``publish(folder, target, options, progress)`` is then called instead.
        Raises:
            vlhub.core.errors.BadInput: the target is malformed (exit code 2).
            vlhub.core.errors.VlhubError: the remote cannot be reached or read (exit code 1).
        """

    def publish(self, plan: PublishPlan, options: Mapping[str, Any],
                progress: ProgressCallback | None = None) -> Published:
        """Execute the plan :meth:`preflight` returned; rerunning resumes and sends only what changed.

        Called only after :meth:`preflight` returned no problem, and not for ``--dry-run``. Nothing is
        scanned or planned again; a folder that changed since its preflight is refused (nothing sent).

        Args:
            plan: what :meth:`preflight` returned for this target.
            options: as for :meth:`preflight`.
            progress: called with :class:`Progress` events as bytes are sent (``unit`` ``"B"``).
        Returns:
            :class:`Published`: the target, the URL, the commit (``""`` where there is none), bytes and
            files sent, and whether anything changed on the remote.
        Raises:
            vlhub.core.errors.BadInput: the target or folder is wrong (exit code 2).
            vlhub.core.errors.VlhubError: the upload failed (exit code 1); a rerun resumes it.
        """


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

    def reply(self, history: Sequence[Turn], settings: GenerationSettings) -> Iterator[str]:
        """Stream the model's answer to the last turn of ``history``.

        Args:
            history: the conversation so far, oldest first, alternating ``user`` and ``assistant``
                :class:`Turn` s and ending with the new user turn (its images as resolved paths).
            settings: sampling settings (:class:`GenerationSettings`).
        Returns:
            An iterator of text chunks, in order, as they are generated; joined they are the answer.
        Raises:
            vlhub.core.errors.VlhubError: the model, worker or endpoint failed (one line, exit code 1).
        """

    def close(self) -> None:
        """Stop the session's worker or server (freeing its memory) or drop the endpoint's connection.

        Called once, when the conversation ends (also after an error).

        Returns:
            None.
        Raises:
            Nothing: a worker that is already gone is fine.
        """


@runtime_checkable
class ChatBackend(Protocol):
    """Opens chat sessions on a model folder or an endpoint's model name.

    ``missing()`` returns None when the backend can run here, otherwise one line
    saying why not and how to fix it (shown by the CLI and the Chat page).
    """

    name: str
    description: str
    options: Sequence[Option]

    def missing(self) -> str | None:
        """Why this backend cannot run on this machine; quick, starts nothing.

        Returns:
            None when it can run, else one line saying what is missing and how to fix it.
        Raises:
            Nothing.
        """

    def open(self, model: str, options: Mapping[str, Any]) -> ChatSession:
        """Load ``model`` (or connect to it) and return a session ready for :meth:`ChatSession.reply`.

        Called by ``vlhub chat``, ``vlhub eval`` and the Chat page (:class:`vlhub.core.chat.Conversation`)
        after :meth:`missing` returned None.

        Args:
            model: a model folder path, or a model name on an endpoint.
            options: values for some :class:`Option` s of ``options``, by name (options not given are
                absent: use the default).
        Returns:
            A :class:`ChatSession`; the caller closes it.
        Raises:
            vlhub.core.errors.BadInput: no such model, or a wrong option (exit code 2).
            vlhub.core.errors.MissingDependency: the environment it needs is not installed (exit code 2).
        """
