"""``vlhub dev ...``: tools for plugin authors and tests."""
from __future__ import annotations

from pathlib import Path

import click

from vlhub.core.errors import BadInput
from vlhub.core.output import emit_json, say

LLM_HELP = (
    "Language-model family (each its real architecture, special tokens, chat template and stop tokens): "
    "phi3 = InternVL2-4B (Phi-3); internlm2 = InternVL2-2B (InternLM2, remote code copied from xtuner in the "
    "train stage env; loads with the train env's transformers 4.48); qwen2 = InternVL2.5-1B / InternVL3-1B "
    "(Qwen2.5); qwen3 = InternVL3.5-1B (Qwen3: needs transformers>=4.51 to load, i.e. the t5check env, "
    "not the train env's 4.48)."
)


@click.group()
def dev() -> None:
    """Developer tools (tiny test models)."""


@dev.command(name="tiny-model")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--llm", default="phi3", show_default=True, help=LLM_HELP)
@click.option("--hf", is_flag=True,
              help="Write the transformers-native layout (InternVLForConditionalGeneration, model_type internvl, "
                   "as InternVL3-1B-hf / InternVL3_5-1B-HF) instead of InternVL's remote code: qwen2 and qwen3 "
                   "only; loads with transformers>=4.52 (the t5check env).")
@click.option("--size", default="tiny", show_default=True, type=click.Choice(["tiny", "2b"]),
              help="tiny: a few hundred kB (tests); 2b: InternVL2-2B's dimensions, about 4.4 GB (GPU speed tests).")
@click.option("--seed", default=0, show_default=True, help="Seed of the random weights.")
@click.option("--llm-code", type=click.Path(path_type=Path, file_okay=False),
              help="internlm2: a folder holding configuration_internlm2.py and modeling_internlm2.py "
                   "(default: xtuner's copy, found in the train stage env).")
@click.option("--force", is_flag=True, help="Replace OUT if it exists and is not empty.")
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
def tiny_model(out: Path, llm: str, hf: bool, size: str, seed: int, llm_code: Path | None, force: bool,
               as_json: bool) -> None:
    """Write a random-weight InternVL-format model folder at OUT (for tests and GPU checks).

    The weights are made here (numpy, no torch); the model loads with transformers in a stage env.
    """
    from .tiny_model import envs_for, make_tiny_model

    try:
        path = make_tiny_model(out, llm=llm, size=size, seed=seed, force=force, hf=hf, llm_code=llm_code)
    except FileExistsError as exc:
        raise BadInput(f"{out} exists and is not empty", "pass --force to replace it, or choose another OUT") from exc
    except ValueError as exc:
        raise BadInput(str(exc), "see `vlhub dev tiny-model --help`") from exc
    files = sorted(p.name for p in path.iterdir())
    size_bytes = sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    if as_json:
        emit_json({"path": str(path), "size": size, "llm": llm, "hf": hf, "seed": seed, "bytes": size_bytes,
                   "files": files, "loads_in": list(envs_for(llm, hf))})
        return
    say(f"tiny model ({size}, {llm}{', -hf' if hf else ''}, {size_bytes / 1e6:.1f} MB) written")
    click.echo(str(path))
