"""``vlhub_provenance.json``: the one owner of the model folder's provenance file.

A converter writes it last into the folder it builds (:func:`write`), so its presence
proves the folder is complete and vlhub's; the publishers (the model card) and the
launcher read it through :func:`read`, never as raw JSON.

Schema (format version 2; one JSON object, UTF-8, indented):

============================ ============ =================================================================
field                        type         meaning
============================ ============ =================================================================
``format``                   str          ``"vlhub-provenance/2"`` (v0.1 wrote ``"vlhub-provenance/1"``)
``format_version``           int          ``2``; absent in v0.1 files (read as version 1)
``vlhub_version``            str          the vlhub version that wrote the file
``created``                  str          ISO 8601 UTC time, seconds (``$SOURCE_DATE_EPOCH`` when set)
``converter``                str          the converter's name (``internvl-official``, ``xtuner-llm``)
``base_model``               str          the base model the checkpoint was trained from: a hub id
                                          (``OpenGVLab/InternVL2-2B``) or a local folder's absolute path
``run``                      obj | null   the vlhub training run: ``{"id": str, "dir": str}`` (run folder);
                                          ``null`` for a checkpoint converted without a run
``checkpoint``               obj          ``{"path": str, "layout": "file" | "deepspeed", "step": int}``; for
                                          a run converted by id also ``chosen`` (``"best"`` | ``"last"`` |
                                          ``"iter"``) and, for the best, ``metric``, ``value``, ``iter``
                                          (:func:`vlhub.core.convert.run_checkpoint`)
``config``                   str          the xtuner config file the checkpoint was trained with
``model_type``               str          the config's model class (``InternVL_V1_5``, ...)
``template``                 obj          the chat template: ``{"name", "xtuner_template",
                                          "lmdeploy_name"}`` (str or null) and ``"stop_token_ids"``
                                          (list of int)
``remote_code_copied``       list | obj   the remote-code files copied into the folder (as the worker
                                          reported them)
``stage_versions``           obj          package -> version of the train stage environment
``verified``                 obj          the verification's report (``ok``: bool, samples, tensors)
``files``                    obj          relative path -> ``{"size": int, "sha256": str}`` of every
                                          file in the folder except this one
``datasets``                 list[str]    optional, hand-written: hub ids of the training datasets
                                          (model card metadata)
``license``                  str          optional, hand-written: a license id (``mit``, ``apache-2.0``)
``samples``                  list[obj]    optional: ``{"question": str, "answer": str}`` pairs shown on
                                          the model card, each with an optional ``"image"`` (str): a
                                          file of the model folder, by its path relative to it (an
                                          image you supply; the card shows it only when it is sent)
``serve_check``              obj          optional: the last ``vlhub check`` of the folder
                                          (:mod:`vlhub.core.serve_check`, written by :func:`update`):
                                          ``status`` (``"ok"`` | ``"failed"``), ``reason`` (one English
                                          line), ``reason_key`` and ``params`` (the same reason, for the
                                          pages' languages), ``backend``, ``date`` (ISO 8601 UTC, seconds),
                                          ``tokens`` (int or null: tokens generated), ``max_new_tokens``,
                                          ``stop`` (the stop token seen, ``""`` when the backend does not
                                          name it), ``template`` (the catalog template, ``""`` when none
                                          matched), ``question`` and ``answer``
============================ ============ =================================================================

Fields other than ``files`` may change after the converter wrote the file: :func:`update` rewrites
it atomically with some top-level fields replaced (the serve check), keeping every other field
as it was.

Reading is tolerant: a v0.1 file (no ``format_version``) reads as version 1 with the same
fields; a field that is missing or of the wrong type (a hand-edited file) reads as its
empty value (``""``, ``None``, ``[]``, ``{}``); a top-level ``run_dir`` string (what v0.1's
documentation named) stands in for ``run.dir``; unknown fields are kept in
:attr:`Provenance.raw`. A file that is not JSON, or not a JSON object, is refused with
:class:`~vlhub.core.errors.BadInput` naming the file and the fix (:func:`vlhub.core.fsutil.read_json`).
Every text in the file is data: never evaluated, never used as template source.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from . import __version__
from .errors import BadInput
from .fsutil import atomic_write_json, read_json, timestamp
from .types import Progress, ProgressCallback

#: The file's name inside the model folder.
PROVENANCE = "vlhub_provenance.json"
#: The version :func:`write` writes; :func:`read` accepts every version up to it (and later ones, tolerantly).
FORMAT_VERSION = 2
FORMAT = f"vlhub-provenance/{FORMAT_VERSION}"
_CHUNK = 4 * 1024 * 1024


@dataclass(frozen=True)
class RunRef:
    """The training run a model folder came from: its id and run folder (which may be gone)."""

    id: str
    dir: str


@dataclass(frozen=True)
class Sample:
    """One question and the model's answer, for the model card (``image``: a path relative to the model
    folder, as written; ``""`` when none)."""

    question: str
    answer: str
    image: str = ""


@dataclass(frozen=True)
class Provenance:
    """What :func:`read` found (``exists`` is False, and every field empty, when there is no file)."""

    exists: bool = False
    format_version: int = 0
    vlhub_version: str = ""
    created: str = ""
    converter: str = ""
    base_model: str = ""
    run: RunRef | None = None
    checkpoint: dict[str, Any] = field(default_factory=dict)
    config: str = ""
    model_type: str = ""
    template: dict[str, Any] = field(default_factory=dict)
    stage_versions: dict[str, Any] = field(default_factory=dict)
    verified: dict[str, Any] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    datasets: list[str] = field(default_factory=list)
    license: str = ""
    samples: list[Sample] = field(default_factory=list)
    serve_check: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def base_model_id(self) -> str:
        """``base_model`` when it is a hub id (``ORG/NAME``), ``""`` when it is a local folder or absent."""
        base = self.base_model
        return base if base and not Path(base).is_absolute() and not base.startswith(("~", ".")) else ""

    @property
    def base_model_folder(self) -> Path | None:
        """``base_model`` when it is a local folder's absolute path (``~`` expanded), else ``None``.

        The folder may be gone; nothing is read here.
        """
        base = self.base_model
        if not base or not (base.startswith("~") or Path(base).is_absolute()):
            return None
        return Path(base).expanduser()


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _version(data: Mapping[str, Any]) -> int:
    version = data.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > 0:
        return version
    fmt = _text(data.get("format"))
    if fmt.startswith("vlhub-provenance/") and fmt.rsplit("/", 1)[-1].isdigit():
        return int(fmt.rsplit("/", 1)[-1])
    return 1


def from_dict(data: Mapping[str, Any]) -> Provenance:
    """A :class:`Provenance` from the file's parsed JSON object (any version; damaged fields read as empty).

    Args:
        data: the JSON object (``{}`` gives an empty record).

    Returns:
        The record; ``exists`` is True.
    """
    data = dict(data) if isinstance(data, Mapping) else {}
    run = _obj(data.get("run"))
    run_dir = _text(run.get("dir")) or _text(data.get("run_dir"))
    ref = RunRef(_text(run.get("id")) or (str(run["id"]) if isinstance(run.get("id"), int) else ""), run_dir) \
        if run or run_dir else None
    samples = [Sample(_text(s.get("question")), _text(s.get("answer")), _text(s.get("image")))
               for s in (data.get("samples") if isinstance(data.get("samples"), list) else []) if isinstance(s, dict)]
    files = {k: v for k, v in _obj(data.get("files")).items() if isinstance(k, str) and isinstance(v, dict)}
    return Provenance(
        exists=True, format_version=_version(data), vlhub_version=_text(data.get("vlhub_version")),
        created=_text(data.get("created")), converter=_text(data.get("converter")),
        base_model=_text(data.get("base_model")), run=ref, checkpoint=_obj(data.get("checkpoint")),
        config=_text(data.get("config")), model_type=_text(data.get("model_type")),
        template=_obj(data.get("template")), stage_versions=_obj(data.get("stage_versions")),
        verified=_obj(data.get("verified")), files=files,
        datasets=[d for d in (data.get("datasets") if isinstance(data.get("datasets"), list) else [])
                  if isinstance(d, str) and d],
        license=_text(data.get("license")), samples=samples, serve_check=_obj(data.get("serve_check")), raw=data)


def read(folder: Path, path: Path | None = None) -> Provenance:
    """The provenance of a model folder.

    Args:
        folder: the model folder.
        path: the file to read instead of ``folder / PROVENANCE`` (e.g. the resolved target
            of a link the publish scan accepted).

    Returns:
        The record; ``Provenance()`` (``exists`` False) when the folder has no provenance file.

    Raises:
        BadInput: the file is not UTF-8 JSON or not a JSON object (the message names the
            file and the fix), or cannot be read.
    """
    data = read_json(path or Path(folder) / PROVENANCE, None, expect=dict)
    return Provenance() if data is None else from_dict(data)


def update(folder: Path, fields: Mapping[str, Any]) -> Path:
    """Replace top-level fields of the folder's provenance file, keeping the others; atomic.

    Args:
        folder: the model folder.
        fields: field -> its new JSON-ready value (e.g. ``{"serve_check": {...}}``); ``format``,
            ``format_version`` and ``files`` cannot be replaced here (the converter's).

    Returns:
        The file written.

    Raises:
        BadInput: the folder has no provenance file (it was not written by ``vlhub convert``), or
            the file is damaged (named, with the fix).
        ValueError: ``fields`` names a field only the converter writes.
    """
    path = Path(folder) / PROVENANCE
    data = read_json(path, None, expect=dict)
    if data is None:
        raise BadInput(f"{folder} has no {PROVENANCE}: it was not written by `vlhub convert`",
                       "convert the checkpoint with `vlhub convert` to get a folder vlhub can record results in")
    fixed = {"format", "format_version", "files"} & set(fields)
    if fixed:
        raise ValueError(f"{', '.join(sorted(fixed))} of {PROVENANCE} are written by the converter only")
    atomic_write_json(path, {**data, **fields})
    return path


def sha256(path: Path, progress: ProgressCallback | None = None, done: int = 0, total: int | None = None) -> str:
    """The hex sha256 of a file (progress in bytes over all files, when given)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
            done += len(block)
            if progress:
                progress(Progress("sha256", done, total, "B", path.name))
    return digest.hexdigest()


def file_hashes(folder: Path, progress: ProgressCallback | None = None) -> dict[str, dict[str, Any]]:
    """``relative path -> {size, sha256}`` for every file under ``folder`` except the provenance file."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != PROVENANCE)
    total = sum(p.stat().st_size for p in files)
    out, done = {}, 0
    for path in files:
        size = path.stat().st_size
        out[path.relative_to(folder).as_posix()] = {"size": size, "sha256": sha256(path, progress, done, total)}
        done += size
    return out


def write(folder: Path, facts: Mapping[str, Any], progress: ProgressCallback | None = None) -> Path:
    """Write the provenance file into ``folder`` (last, after every other file is in place).

    Args:
        folder: the model folder being built.
        facts: the fields of the schema above that the converter knows (``converter``,
            ``base_model``, ``run``, ``checkpoint``, ...); ``format``, ``format_version``,
            ``vlhub_version``, ``created`` and ``files`` are filled in here.
        progress: byte progress of hashing the folder's files (task ``sha256``).

    Returns:
        The file written.
    """
    record = {"format": FORMAT, "format_version": FORMAT_VERSION, "vlhub_version": __version__,
              "created": _dt.datetime.fromtimestamp(timestamp(), _dt.timezone.utc).isoformat(timespec="seconds"),
              **facts, "files": file_hashes(folder, progress)}
    path = Path(folder) / PROVENANCE
    atomic_write_json(path, record)
    return path
