# Sourced by bench/gpu_e2e.sh and bench/gpu_speed.sh on the GPU machine (repo root, bash).
#
# Builds vlhub's three interpreters from the carried wheels (git-ignored `.whl/`, made here by
# `bash bench/fetch_gpu_wheels.sh`, which says what each set holds and why; no network there):
#   $LAUNCHER  vlhub itself (installed from this checkout; else .whl/vlhub/, made by `fetch_gpu_wheels.sh --vlhub`)
#              + .whl/vl (openai, jiter, distro, sniffio) + BASE_LAUNCHER from .whl/*.whl (pydantic)
#   $TRAIN     .whl/*.whl: xtuner 0.2.0, mmengine, deepspeed 0.16.2, transformers 4.48, peft ...
#   $SERVE     .whl/lmd (lmdeploy 0.18.0 without TurboMind + engine deps) + BASE_SERVE from .whl/*.whl
#              + .whl/srv (fastapi, starlette, uvicorn, openai ... for api_server), on the machine's
#              own transformers 5.17
# Each is a real venv (vlhub strips PYTHONPATH for stage processes). The machine's python3 is
# itself a venv (/opt/torch/.venv) that holds torch 2.11, so `venv --system-site-packages`
# would not see torch: each venv instead gets a `zz_base_sites.pth` that adds python3's
# site folders *after* its own, so its own wheels (e.g. transformers 4.48) shadow the
# machine's and torch, triton, numpy ... are reused. Nothing outside /tmp is written.
W=${VLHUB_GPU_WORK:-/tmp/vl}
OUT=${OUT:-$W/out}
mkdir -p "$W" "$OUT"
export VLHUB_HOME=$W/home VLHUB_ENVS_DIR=$W/home/envs
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
LAUNCHER=$W/launcher TRAIN=$W/train SERVE=$W/serve
VLHUB=$LAUNCHER/bin/vlhub
# wheels of the train set (.whl/*.whl) that the other venvs take too (bench/fetch_gpu_wheels.sh checks these names)
BASE_SERVE=(addict mmengine pydantic pydantic_core annotated_types termcolor yapf platformdirs dill)
BASE_LAUNCHER=(pydantic pydantic_core annotated_types)
T0=$(date +%s.%N)
STEP=start
S0=$T0
TIMES=()

now() { awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $1}"; }
log() { echo "### [$(now "$T0")s] $*"; }
begin() { STEP=$1; S0=$(date +%s.%N); log "BEGIN $1"; }
end() { local dt; dt=$(now "$S0"); TIMES+=("$STEP ${dt}s"); log "END $STEP (${dt}s)"; }

mkvenv() {  # mkvenv DIR WHEEL...: a venv with these wheels and the machine's site folders behind them
    local v=$1 site p
    shift
    rm -rf "$v"
    python3 -m venv --without-pip "$v"
    PYTHONPATH=$W/pipsrc "$v/bin/python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir "$@"
    site=$("$v/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    for p in $BASE_SITES; do echo "import site; site.addsitedir('$p')"; done >"$site/zz_base_sites.pth"
}

base_wheels() {  # base_wheels NAME...: the train set's wheels of these distributions
    local n
    for n in "$@"; do ls .whl/"$n"-[0-9]*.whl; done
}

setup_envs() {
    local set
    for set in .whl/*.whl .whl/lmd/*.whl .whl/srv/*.whl .whl/vl/*.whl; do
        [ -e "$set" ] || { log "no wheels at $set: run \`bash bench/fetch_gpu_wheels.sh\` here and carry .whl"; return 1; }
    done
    BASE_SITES=$(python3 -c 'import sys; print(" ".join(p for p in sys.path if p.endswith(("site-packages", "dist-packages"))))')
    rm -rf "$W/pipsrc" && mkdir -p "$W/pipsrc"
    cp -r "$(python3 -c 'import os, pip; print(os.path.dirname(pip.__file__))')" "$W/pipsrc/"
    mkvenv "$TRAIN" .whl/*.whl
    mkvenv "$SERVE" .whl/lmd/*.whl $(base_wheels "${BASE_SERVE[@]}") .whl/srv/*.whl
    mkvenv "$LAUNCHER" .whl/vl/*.whl $(base_wheels "${BASE_LAUNCHER[@]}")
    # vlhub from this checkout (setuptools comes from the machine's site folders); else a carried wheel
    if ! PYTHONPATH=$W/pipsrc "$LAUNCHER/bin/python" -m pip install -q --no-index --no-deps --no-build-isolation \
            --no-cache-dir . >"$W/vlhub-install.log" 2>&1; then
        tail -5 "$W/vlhub-install.log"
        ls .whl/vlhub/vlhub-*.whl >/dev/null 2>&1 || { log "source install of vlhub failed and no .whl/vlhub/ (fetch_gpu_wheels.sh --vlhub)"; return 1; }
        log "source install of vlhub failed; using the carried wheel .whl/vlhub/ (made from an earlier checkout)"
        PYTHONPATH=$W/pipsrc "$LAUNCHER/bin/python" -m pip install -q --no-index --no-deps --no-cache-dir .whl/vlhub/vlhub-*.whl
    fi
    "$VLHUB" env use train --python "$TRAIN/bin/python"
    "$VLHUB" env use serve --python "$SERVE/bin/python"
}

versions() {  # one line of the versions that matter, from each interpreter
    echo "launcher: $("$LAUNCHER/bin/python" -c 'import sys, importlib.metadata as m; print(sys.version.split()[0], "vlhub", m.version("vlhub"), "openai", m.version("openai"))')"
    echo "train:    $("$TRAIN/bin/python" -c 'import importlib.metadata as m; print(*(f"{n} {m.version(n)}" for n in ("torch", "xtuner", "mmengine", "deepspeed", "transformers", "peft", "tokenizers")), sep=", ")')"
    echo "serve:    $("$SERVE/bin/python" -c 'import importlib.metadata as m; print(*(f"{n} {m.version(n)}" for n in ("lmdeploy", "torch", "transformers", "triton")), sep=", ")')"
    echo "gpu:      $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader)"
}

tails() {  # the logs that say why a step failed
    local f
    for f in $(ls -t "$VLHUB_HOME"/runs/*/train.log "$VLHUB_HOME"/runs/*/supervisor.log 2>/dev/null | head -3) \
             $(ls -t /tmp/vlhub-*.log 2>/dev/null | head -4); do
        echo "----- tail of $f"
        grep -v '^\s*$' "$f" | tail -40 | cut -c1-400
    done
}
