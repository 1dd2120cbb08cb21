"""The ``swift-merge`` converter: a ``swift`` run's checkpoint to a model folder others load as it is.

Sources: a run id of the ``swift`` trainer (its last complete checkpoint), a run folder, or one
``work/checkpoint-N/`` folder of such a run (a checkpoint is complete once ``trainer_state.json`` is in it,
:mod:`vlhub.plugins.trainers.swift_run`). The base model, ms-swift's model type and template come from the
run's ``swift_args.json``. The worker (:mod:`vlhub.plugins.workers.convert_swift`, swift stage env) merges
LoRA with ``swift export --merge_lora`` (or copies a full fine-tuning checkpoint), adds remote code, vlhub's
chat template and stop tokens, and verifies; vlhub writes the provenance last and renames the folder into place.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Mapping

from vlhub.core import provenance, runs, stage
from vlhub.core.boundary import require_free_space
from vlhub.core.convert import template as named_template, template_for_folder
from vlhub.core.errors import BadInput, VlhubError
from vlhub.core.fsutil import atomic_dir, check_replaceable, read_json
from vlhub.core.types import Converted, Option, ProgressCallback
from vlhub.core.worker import run_worker

from ..trainers import swift_models, swift_run
from ..workers import SWIFT_ENV, script
from .xtuner import _weights_bytes

OPTIONS = (
    Option("template", "Chat template name (default: the one matching the base model; `vlhub templates`)."),
    Option("force", "Replace an existing output folder (only once the new one is complete).", bool, False),
    Option("verify", "Load the result on the CPU, chat once and check merged weights.", bool, True),
    Option("image", "Image for the verification chat turn (default: a generated one)."),
)


def _run_folder(path: Path) -> Path | None:
    """The swift run folder ``path`` is, or is inside (``swift_args.json`` beside ``run.json``)."""
    for folder in (path, *path.parents):
        if (folder / swift_run.ARGS).is_file() and (folder / runs.RUN_FILE).is_file():
            return folder
    return None


def locate(source: str | Path) -> tuple[Path, Path]:
    """``(checkpoint, run folder)`` of a swift run id, run folder or ``checkpoint-N/`` folder.

    Raises:
        BadInput: not a swift run or checkpoint (what was expected is named), or the run has no complete
            checkpoint, or the given checkpoint is incomplete.
    """
    path = Path(source).expanduser()
    if path.exists():
        folder = _run_folder(path.resolve())
        if folder is None:
            raise BadInput(f"{source} is not a swift run or checkpoint (no {swift_run.ARGS} in a run folder)",
                           "pass a run id of `vlhub train --trainer swift` or its work/checkpoint-N folder")
        if swift_run.NAME.match(path.name):
            if not (path / swift_run.STATE).is_file():
                raise BadInput(f"{path} is an incomplete checkpoint (no {swift_run.STATE}: its save was cut short)",
                               "convert an earlier checkpoint, or the run id (its last complete checkpoint)")
            return path.resolve(), folder
    else:
        try:
            run = runs.load_run(str(source))
        except BadInput:
            raise BadInput(f"{source!r} is neither a swift checkpoint path nor a run id",
                           "`vlhub runs` lists run ids") from None
        if run.data.get("trainer") != "swift":
            raise BadInput(f"run {run.id} was not trained by the swift trainer", "drop --converter swift-merge")
        folder = run.dir
    last = swift_run.last_complete(folder / swift_run.WORK)
    if last is None:
        raise BadInput(f"run {folder.name} has no complete checkpoint yet",
                       "wait for the first save (`vlhub run show`), or resume the run")
    return last.path, folder


class SwiftConverter:
    """Merges a swift run's LoRA checkpoint (or copies its full checkpoint) into a model folder."""

    name = "swift-merge"
    description = ("swift run checkpoint -> model folder (swift export --merge_lora, template, stop tokens, remote "
                   "code, provenance)")
    options = OPTIONS
    stage_env = SWIFT_ENV

    def accepts(self, source: Path) -> bool:
        """Whether ``source`` is a swift run id, run folder or checkpoint (never raises)."""
        try:
            locate(source)
        except (BadInput, OSError):
            return False
        return True

    def convert(self, source: Path, out: Path, options: Mapping[str, Any],
                progress: ProgressCallback | None = None) -> Converted:
        """Convert ``source`` into ``out`` (see the module's docstring).

        Raises:
            BadInput: a bad source, template or output folder. VlhubError: the worker or the verification failed
                (nothing is left at ``out``). MissingDependency: no swift environment.
        """
        checkpoint, folder = locate(source)
        out = Path(out).expanduser().resolve()
        if out == checkpoint or checkpoint in out.parents or out in checkpoint.parents:
            raise BadInput(f"--out {out} is inside (or contains) the checkpoint {checkpoint}",
                           "choose an output folder outside the run")
        check_replaceable(out, provenance.PROVENANCE, force=bool(options.get("force")))
        args = read_json(folder / swift_run.ARGS, {}, expect=dict)
        base = Path(args.get("model", ""))
        if not (base / "config.json").is_file():
            raise BadInput(f"{folder / swift_run.ARGS}: the base model folder {base} is gone",
                           "put the base model back at that path (the merge reads its weights)")
        template = named_template(options["template"]) if options.get("template") else template_for_folder(base)
        info = swift_models.identify(base)
        verify = {"enabled": bool(options.get("verify", True)), "image": options.get("image"), "samples": 4}
        require_free_space(out.parent, _weights_bytes(base) + 64 * 1024 * 1024, f"the converted model {out}")
        env = {"INPUT_SIZE": str(info.image_size), "MAX_NUM": str(info.max_tiles), "HF_HUB_OFFLINE": "1",
               "MODELSCOPE_OFFLINE": "1"}
        with atomic_dir(out, force=bool(options.get("force")), marker=provenance.PROVENANCE) as tmp, \
                tempfile.TemporaryDirectory(prefix="vlhub-convert-") as jobs:
            job = Path(jobs) / "job.json"
            job.write_text(json.dumps({"checkpoint": str(checkpoint), "base": str(base), "out": str(tmp),
                                       "native": info.native, "verify": verify,
                                       "template": {"jinja": template.jinja, "stop_words": list(template.stop_words)}}))
            result = run_worker(SWIFT_ENV.name, script("convert_swift"), [str(job)], progress=progress, extra_env=env)
            verified = result.get("verified") or {}
            if verify["enabled"] and not verified.get("ok"):
                raise VlhubError(f"the converted model failed verification: {json.dumps(verified)[:400]}",
                                 "nothing was written; rerun with --debug, or report the checkpoint")
            env_info = read_json(stage.env_folder(SWIFT_ENV.name) / "env.json", {}, expect=dict)
            run = runs.load_run(folder)
            step = swift_run.NAME.match(checkpoint.name)
            provenance.write(tmp, {
                "converter": self.name, "base_model": result["base_model"], "run": {"id": run.id, "dir": str(folder)},
                "checkpoint": {"path": str(checkpoint), "layout": "folder", "step": int(step.group(1)) if step else 0},
                "config": str(folder / swift_run.ARGS), "model_type": info.model_type,
                "template": {"name": template.name, "xtuner_template": template.xtuner_template,
                             "lmdeploy_name": template.lmdeploy_name, "stop_token_ids": result["stop_token_ids"],
                             "swift_template": info.template},
                "remote_code_copied": result["remote_code"], "stage_versions": env_info.get("versions", {}),
                "verified": verified}, progress)
        return Converted(out, checkpoint, out / provenance.PROVENANCE, verified)


SWIFT_MERGE = SwiftConverter()
