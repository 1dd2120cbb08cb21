"""vlhub's tiny InternVL2-format model: built without torch, loaded by transformers 4.48 + xtuner and 5.x.

This is the default family (``--llm phi3``); the other InternVL generations are tests/test_tiny_families.py's.
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import t5_python, train_python

from vlhub.plugins.devtools.tiny_model import PRESETS, REMOTE_CODE_DIR, REMOTE_CODE_FILES, _param_specs

ENVCHECKS = Path(__file__).resolve().parent / "envchecks"
BUILD_SCRIPT = """
import json, sys, time
t0 = time.perf_counter()
from vlhub.plugins.devtools.tiny_model import make_tiny_model
path = make_tiny_model(sys.argv[1])
print(json.dumps({"path": str(path), "seconds": time.perf_counter() - t0,
                  "heavy_imports": sorted(m for m in ("torch", "transformers") if m in sys.modules)}))
"""


def build(out: Path) -> dict:
    """Build a tiny model in a fresh launcher-side interpreter and report time and imports."""
    proc = subprocess.run([sys.executable, "-c", BUILD_SCRIPT, str(out)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny model folder shared by this module's tests."""
    out = tmp_path_factory.mktemp("tiny") / "InternVL2-tiny"
    facts = build(out)
    assert facts["heavy_imports"] == [], facts
    return Path(facts["path"])


def stage_python(kind: str) -> str:
    """The Python of the train stage env or of the transformers-5 check env (fails when absent)."""
    return str(train_python() if kind == "train" else t5_python())


_ENV_RESULTS: dict[tuple[str, ...], dict] = {}


def run_check(kind: str, script: str, *args: str) -> dict:
    """Run ``tests/envchecks/<script>`` with a stage env's Python; return its last JSON line."""
    key = (kind, script, *args)
    if key not in _ENV_RESULTS:
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": ""}
        proc = subprocess.run([stage_python(kind), str(ENVCHECKS / script), *args], capture_output=True,
                              text=True, timeout=600, env=env)
        if proc.returncode != 0:
            pytest.fail(f"{script} failed in the {kind} env (rc {proc.returncode}):\n"
                        f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
        _ENV_RESULTS[key] = json.loads(proc.stdout.strip().splitlines()[-1])
    return _ENV_RESULTS[key]


# -- launcher side: no torch -------------------------------------------------------------------
def test_build_is_small_fast_and_torch_free(tmp_path: Path) -> None:
    facts = build(tmp_path / "m")
    folder = Path(facts["path"])
    assert facts["heavy_imports"] == []
    assert facts["seconds"] < 10, facts
    size = sum(f.stat().st_size for f in folder.iterdir())
    assert size < 10 * 1024 ** 2, size
    names = {f.name for f in folder.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "special_tokens_map.json", *REMOTE_CODE_FILES} <= names, names
    for name in REMOTE_CODE_FILES:
        assert (folder / name).read_bytes() == (REMOTE_CODE_DIR / name).read_bytes()
        assert not re.search(r"^\s*(import|from)\s+torchvision", (folder / name).read_text(encoding="utf-8"), re.M)


def test_config_fields(tiny: Path) -> None:
    cfg = json.loads((tiny / "config.json").read_text(encoding="utf-8"))
    assert cfg["architectures"] == ["InternVLChatModel"] and cfg["model_type"] == "internvl_chat"
    assert set(cfg["auto_map"]) == {"AutoConfig", "AutoModel", "AutoModelForCausalLM"}
    for ref in cfg["auto_map"].values():
        assert (tiny / (ref.split(".")[0] + ".py")).is_file()
    assert cfg["llm_config"]["architectures"] == ["Phi3ForCausalLM"]  # xtuner: Phi3 or InternLM2 only
    assert cfg["template"] == "phi3-chat" and cfg["ps_version"] == "v2" and cfg["downsample_ratio"] == 0.5
    assert cfg["force_image_size"] == cfg["vision_config"]["image_size"]  # LMDeploy tiles by image_size
    for key in ("min_dynamic_patch", "max_dynamic_patch", "use_thumbnail", "select_layer", "dynamic_image_size"):
        assert key in cfg, key
    assert cfg["vision_config"]["patch_size"] == 14
    tok = json.loads((tiny / "tokenizer_config.json").read_text(encoding="utf-8"))
    added = {v["content"]: int(k) for k, v in tok["added_tokens_decoder"].items()}
    for t in ("<img>", "</img>", "<IMG_CONTEXT>", "<|user|>", "<|assistant|>", "<|end|>", "<s>"):
        assert t in added, t
    assert tok["bos_token"] == "<s>" and tok["eos_token"] == "<|end|>" and "chat_template" in tok
    gen = json.loads((tiny / "generation_config.json").read_text(encoding="utf-8"))
    assert added["<|end|>"] in gen["eos_token_id"]
    assert cfg["llm_config"]["vocab_size"] >= max(added.values()) + 1


def test_weights_match_the_specs(tiny: Path) -> None:
    from safetensors import safe_open

    cfg = json.loads((tiny / "config.json").read_text(encoding="utf-8"))
    specs = {name: shape for name, shape, _ in _param_specs(PRESETS["tiny"], cfg["llm_config"]["vocab_size"])}
    with safe_open(str(tiny / "model.safetensors"), framework="numpy") as f:
        assert f.metadata() == {"format": "pt"}
        assert set(f.keys()) == set(specs)
        for name in f.keys():
            t = f.get_tensor(name)
            assert t.shape == specs[name] and str(t.dtype) == cfg["torch_dtype"], name


def test_existing_folder_needs_force_and_seed_is_deterministic(tmp_path: Path) -> None:
    from vlhub.plugins.devtools.tiny_model import make_tiny_model

    a = make_tiny_model(tmp_path / "a", seed=1)
    with pytest.raises(FileExistsError):
        make_tiny_model(a)
    before = (a / "model.safetensors").read_bytes()
    assert make_tiny_model(a, force=True, seed=1) == a
    assert (a / "model.safetensors").read_bytes() == before
    make_tiny_model(a, force=True, seed=2)
    assert (a / "model.safetensors").read_bytes() != before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left
    with pytest.raises(ValueError):
        make_tiny_model(tmp_path / "b", llm="gpt2")
    with pytest.raises(ValueError):
        make_tiny_model(tmp_path / "b", size="huge")


def test_2b_preset_has_internvl2_2b_dimensions() -> None:
    """Checked on paper only: the 2b preset is 4.4 GB and is built on the GPU machine, never here."""
    p = PRESETS["2b"]
    n = sum(math.prod(shape) for _, shape, _ in _param_specs(p, p.vocab_size))
    assert (p.vit_hidden, p.vit_layers, p.image_size, p.patch_size) == (1024, 24, 448, 14)  # InternViT-300M
    assert (p.llm_hidden, p.llm_layers, p.llm_heads, p.llm_kv_heads, p.llm_intermediate) == (2048, 24, 16, 8, 8192)
    assert 2.0e9 < n < 2.4e9, n
    # with --llm internlm2 it is InternVL2-2B's own architecture: the same parameter count under InternLM2's names
    internlm2 = {name: shape for name, shape, _ in _param_specs(p, p.vocab_size, "internlm2")}
    assert sum(math.prod(shape) for shape in internlm2.values()) == n
    assert {"language_model.model.layers.23.attention.wqkv.weight", "language_model.output.weight"} <= set(internlm2)


# -- stage envs ----------------------------------------------------------------------------------
def test_transformers_4_48_loads_and_chats(tiny: Path) -> None:
    facts = run_check("train", "check_load_chat.py", str(tiny))
    assert facts["transformers"].startswith("4.48"), facts
    assert facts["model_class"] == "InternVLChatModel" and facts["llm_attn"] == "sdpa"
    assert facts["tiles"] == 7  # 320x200 → 3x2 grid + thumbnail
    assert len(facts["responses"]) == 5 and facts["loss"] > 0


def test_xtuner_dataset_and_model_train_step(tiny: Path, tmp_path: Path) -> None:
    facts = run_check("train", "check_xtuner.py", str(tiny), str(tmp_path))
    assert facts["dataset_len"] == 3 and facts["tiles"] == [7, 3, 1]
    assert facts["bos_eos"][0] == [1]  # get_bos_eos_token_ids needs a BOS on a non-Qwen tokenizer
    assert facts["llm_attn"] == "sdpa"  # InternVL_V1_5 asks for flash_attention_2; the remote code falls back
    assert facts["trainable_with_grad"] > 0 and facts["loss"] > 0


def test_transformers_5_loads_and_chats(tiny: Path) -> None:
    facts = run_check("t5", "check_load_chat.py", str(tiny))
    assert int(facts["transformers"].split(".")[0]) >= 5, facts
    assert facts["model_class"] == "InternVLChatModel" and facts["tiles"] == 7


def test_same_answers_on_4_48_and_5(tiny: Path) -> None:
    old = run_check("train", "check_load_chat.py", str(tiny))
    new = run_check("t5", "check_load_chat.py", str(tiny))
    assert old["responses"] == new["responses"]
    assert abs(old["loss"] - new["loss"]) < 1e-3
