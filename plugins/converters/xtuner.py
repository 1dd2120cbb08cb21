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
from vlhub.core.boundary import require_free_space
from vlhub.core.errors import BadInput, VlhubError
from vlhub.core.fsutil import atomic_dir, read_json
from vlhub.core.types import ChatTemplate, Converted, Option, ProgressCallback
from vlhub.core.worker import run_worker

from ..workers import TRAIN_ENV, script
from .source import Source, check_checkpoint, check_output, locate, resolve

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
        check_checkpoint(found)              # missing DeepSpeed files: named before anything runs
        info = inspect(found.config)
        if info["model_type"] not in self.model_types:
            raise BadInput(f"{found.config} trains a {info['model_type']}; the {self.name} converter handles "
                           f"{', '.join(self.model_types)}", "`vlhub convert` picks the converter itself; "
                           "drop --converter")
        base = check_base_model(found.config, info.get("base_model"), explicit=bool(options.get("config")))
        check_checkpoint(found, strict=True)  # placeholder or damaged state files
        template = choose_template(base, options.get("template"), info.get("prompt_template"))
        verify = {"enabled": bool(options.get("verify", True)), "image": options.get("image"), "samples": 4}
        # the converted folder holds the merged weights: about the base model's weights, plus a margin
        require_free_space(out.parent, _weights_bytes(Path(base)) + 64 * 1024 * 1024, f"the converted model {out}")
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


def _line_of(config: Path, value: str) -> str:
    """`` (line N: `path = '...'`)`` for the config line that holds ``value`` as a string literal, else ``""``."""
    try:
        lines = Path(config).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    for number, line in enumerate(lines, 1):
        if f"'{value}'" in line or f'"{value}"' in line:
            return f" (line {number}: `{' '.join(line.split())[:120]}`)"
    return ""


def check_base_model(config: Path, value: Any, explicit: bool = False) -> Path:
    """The base model folder the config names, or a one-line error naming the config, its line and the fix.

    The conversion reads the base weights from disk (LoRA is merged into them): a hub id, a path from
    the training machine or a moved folder is refused before anything is written.
    """
    where = f"--config {config}" if explicit else f"the training config {config}"
    edit = (f"edit that path in {config} to the base model's folder on this machine (or pass --config with a "
            f"copy that points at it)")
    value = str(value) if value else None
    if not value:
        raise BadInput(f"{where} names no base model (model_path or llm.pretrained_model_name_or_path)",
                       "pass the config the run trained with (--config CONFIG.py)")
    base = Path(value).expanduser()
    line = _line_of(config, value)
    if (base / "config.json").is_file():
        return base
    if base.is_dir():
        raise BadInput(f"{where}: the base model folder {value}{line} has no config.json",
                       f"{edit}: the folder with config.json, the tokenizer and the weights")
    hub_id = not base.is_absolute() and not value.startswith(("./", "../", "~")) and value.count("/") == 1
    if hub_id:
        raise BadInput(f"{where}: the base model {value}{line} is a hub id, not a folder here; the conversion "
                       f"merges into the base weights on disk",
                       f"download it (e.g. `huggingface-cli download {value} --local-dir models/"
                       f"{value.split('/')[-1]}`), then {edit}")
    raise BadInput(f"{where}: the base model folder {value}{line} does not exist here (moved, or a path from the "
                   f"training machine)", f"{edit}")


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


def _weights_bytes(folder: Path) -> int:
    """Bytes of a model folder's weight files (what a merged copy of it needs on disk)."""
    total = 0
    for pattern in ("*.safetensors", "*.bin", "*.pth", "*.pt"):
        for path in folder.glob(pattern):
            try:
                total += path.stat().st_size
            except OSError:
                continue
    return total
