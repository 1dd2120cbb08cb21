"""The two built-in converters: xtuner checkpoints to model folders others load as they are.

Both run the same steps; only the worker and the model classes they accept differ:
read the config (model class, base model, training template) in the train env, choose the
chat template, then build the output in a temporary folder beside the target (the worker
converts, fixes and verifies; vlhub writes the provenance last) and rename it when complete.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from vlhub.core import provenance, stage
from vlhub.core.convert import template as named_template, template_for_folder
from vlhub.core.errors import BadInput, VlhubError
from vlhub.core.fsutil import atomic_dir, read_json
from vlhub.core.types import ChatTemplate, Converted, Option, ProgressCallback
from vlhub.core.worker import run_worker

from ..workers import TRAIN_ENV, script
from .source import Source, check_output, locate, resolve

OPTIONS = (
    Option("config", "The xtuner config the checkpoint was trained with (default: the run's, or the one beside it)."),
    Option("template", "Chat template name (default: the one matching the base model; `vlhub templates`)."),
    Option("force", "Replace an existing output folder (only once the new one is complete).", bool, False),
    Option("verify", "Load the result on the CPU, chat once and check merged weights.", bool, True),
    Option("image", "Image for the verification chat turn (default: a generated one)."),
)


def inspect(config: Path) -> dict[str, Any]:
    """Model class, base model and ``PROMPT_TEMPLATE`` key of an xtuner config (train env, fast)."""
    return run_worker(TRAIN_ENV.name, script("convert_inspect"), [str(config)], timeout=300)


@dataclass(frozen=True)
class XtunerConverter:
    """Converts checkpoints of configs whose model class is one of ``model_types``."""

    name: str
    description: str
    worker: str
    model_types: tuple[str, ...]
    options: tuple[Option, ...] = OPTIONS
    stage_env = TRAIN_ENV

    def accepts(self, source: Path) -> bool:
        """Whether ``source`` (run id, or checkpoint with its run or its config beside) is this converter's kind.

        Raises:
            BadInput: ``source`` is no checkpoint and no run id at all (what one looks like is named):
                that is the user's error whichever converter is asked.
        """
        locate(source)
        try:
            found = resolve(source)
        except BadInput:
            return False  # its config cannot be told here: `--converter NAME --config FILE` chooses
        return self.handles_config(found.config)

    def handles_config(self, config: Path) -> bool:
        """Whether the xtuner config names one of :attr:`model_types` (a text search: no import)."""
        text = Path(config).read_text(encoding="utf-8", errors="replace")
        return any(t in text for t in self.model_types)

    def convert(self, source: Path, out: Path, options: Mapping[str, Any],
                progress: ProgressCallback | None = None) -> Converted:
        """Convert ``source`` (run id or checkpoint) into ``out``: see the module's docstring for the steps.

        Raises:
            BadInput: a bad source, config, base model, template or output folder. VlhubError: the worker
                failed, the verification failed, or the disk is full (nothing is left at ``out``).
        """
        found = resolve(source, options.get("config"))
        out = check_output(out, found, bool(options.get("force")))
        info = inspect(found.config)
        if info["model_type"] not in self.model_types:
            raise BadInput(f"{found.config} trains a {info['model_type']}; the {self.name} converter handles "
                           f"{', '.join(self.model_types)}", "`vlhub convert` picks the converter itself; "
                           "drop --converter")
        base = Path(info["base_model"] or "")
        if not (base / "config.json").is_file():
            raise BadInput(f"the config's base model {info['base_model']!r} is not a local model folder",
                           "download it and point the config's model path at the folder")
        template = choose_template(base, options.get("template"), info.get("prompt_template"))
        verify = {"enabled": bool(options.get("verify", True)), "image": options.get("image"), "samples": 4}
        try:
            with atomic_dir(out, force=bool(options.get("force")), marker=provenance.PROVENANCE) as tmp, \
                    tempfile.TemporaryDirectory(prefix="vlhub-convert-") as jobs:
                job = Path(jobs) / "job.json"
                job.write_text(json.dumps({"config": str(found.config), "checkpoint": str(found.checkpoint),
                                           "out": str(tmp), "verify": verify,
                                           "template": {"jinja": template.jinja,
                                                        "stop_words": list(template.stop_words)}}))
                result = run_worker(TRAIN_ENV.name, script(self.worker), [str(job)], progress=progress)
                verified = result.get("verified") or {}
                if verify["enabled"] and not verified.get("ok"):
                    raise VlhubError(f"the converted model failed verification: {json.dumps(verified)[:400]}",
                                     "nothing was written; rerun with --debug, or report the checkpoint")
                provenance.write(tmp, self._facts(found, info, template, result), progress)
        except (OSError, VlhubError) as exc:
            if "No space left on device" not in str(exc):
                raise
            raise VlhubError(f"the disk of --out {out} is full (No space left on device)",
                             "free space there or choose an --out on another disk, then rerun; "
                             "nothing was left at --out") from None
        return Converted(out, found.checkpoint, out / provenance.PROVENANCE, verified)

    def _facts(self, found: Source, info: Mapping[str, Any], template: ChatTemplate,
               result: Mapping[str, Any]) -> dict[str, Any]:
        env = read_json(stage.env_folder(TRAIN_ENV.name) / "env.json", {}, expect=dict)
        run = {"id": found.run.id, "dir": str(found.run.dir)} if found.run else None
        return {"converter": self.name, "base_model": result["base_model"], "run": run,
                "checkpoint": {"path": str(found.checkpoint), "layout": found.layout, "step": found.step},
                "config": str(found.config), "model_type": info["model_type"],
                "template": {"name": template.name, "xtuner_template": template.xtuner_template,
                             "lmdeploy_name": template.lmdeploy_name, "stop_token_ids": result["stop_token_ids"]},
                "remote_code_copied": result["remote_code"], "stage_versions": env.get("versions", {}),
                "verified": result.get("verified") or {}}


def choose_template(base: Path, name: str | None, trained_with: str | None) -> ChatTemplate:
    """The named template, or the one matching ``base``; refused when it differs from the training template."""
    template = named_template(name) if name else template_for_folder(base)
    if trained_with and trained_with != "custom" and template.xtuner_template != trained_with:
        raise BadInput(f"chat template {template.name} renders xtuner's {template.xtuner_template}, but the run "
                       f"trained with PROMPT_TEMPLATE.{trained_with}: chat prompts would not match training",
                       "pass --template with a template for that PROMPT_TEMPLATE (`vlhub templates`)")
    return template


INTERNVL_OFFICIAL = XtunerConverter(
    name="internvl-official",
    description="xtuner InternVL checkpoint -> official InternVL folder (convert_to_official + template, "
                "stop tokens, remote code, provenance)",
    worker="convert_internvl", model_types=("InternVL_V1_5", "VlhubInternVL"))
XTUNER_LLM = XtunerConverter(
    name="xtuner-llm",
    description="xtuner LLM LoRA checkpoint -> merged Hugging Face folder (pth_to_hf + merge)",
    worker="convert_llm", model_types=("SupervisedFinetune",))
