#!/usr/bin/env bash
# The carried wheel sets for the GPU machine, rebuilt from PyPI: run HERE (network to PyPI), from the repo root.
#
#   bash bench/fetch_gpu_wheels.sh            # .whl/*.whl, .whl/lmd, .whl/srv, .whl/vl   (~1 min, ~32 MiB)
#   bash bench/fetch_gpu_wheels.sh --vlhub    # also .whl/vlhub/: a wheel of this checkout (gpu_env.sh's fallback)
#   bash bench/fetch_gpu_wheels.sh --swift    # also .whl/swift/: ms-swift 4.6 for `bench/gpu_e2e.sh --trainer swift`
#
# The GPU machine (docs/gpu-proof.md, shared notes gpu-device.md) has Python 3.12, torch 2.11+cu130,
# transformers 5.17, tokenizers 0.23, huggingface_hub 1.33, peft, accelerate, numpy, pillow, click, pluggy,
# psutil, filelock, jinja2, requests, sacrebleu, httpx, anyio, h11, uvloop, aiohttp, prometheus-client, timm,
# opencv ... and no network. bench/gpu_env.sh builds three venvs there from these sets, each with the machine's
# site folders *behind* its own wheels:
#
#   set            venv                 what
#   .whl/*.whl     train  (/tmp/vl/train)     xtuner 0.2.0 + mmengine 0.10.6 + deepspeed 0.16.2 (pure-Python build,
#                                              no CUDA ops) + transformers 4.48 / tokenizers 0.21 / hub 0.27 (xtuner's
#                                              era: 4.48 refuses the machine's newer tokenizers/hub) + peft, datasets ...
#   .whl/lmd/      serve  (/tmp/vl/serve)     lmdeploy 0.18.0 with TurboMind stripped (the wheel is 107 MB because of
#                                              turbomind/_turbomind*.so; the PyTorch engine is Python + Triton) + the
#                                              engine's missing deps. The serve venv also takes, from .whl/*.whl:
#                                              addict mmengine pydantic pydantic_core annotated_types termcolor yapf
#                                              platformdirs dill (see BASE_SERVE in gpu_env.sh)
#   .whl/srv/      serve                      what `lmdeploy serve api_server` imports beyond that and the machine:
#                                              fastapi, starlette, uvicorn, openai (lmdeploy.serve.openai.responses
#                                              imports its types) and their missing deps
#   .whl/vl/       launcher (/tmp/vl/launcher) vlhub's install_requires that the chain's CLI steps import and the
#                                              machine lacks: openai (+ jiter, distro, sniffio); pydantic comes from
#                                              .whl/*.whl (BASE_LAUNCHER in gpu_env.sh). Not carried, because the chain
#                                              never imports them (vlhub imports SDKs lazily): streamlit (the pages),
#                                              modelscope, GitPython (publishing); the rest are on the machine.
#   .whl/vlhub/    launcher, optional         vlhub-0.1.0-py3-none-any.whl of this checkout (--vlhub)
#
# Idempotent: every run builds the whole folder afresh in a temporary folder and then replaces .whl/, so .whl/
# holds exactly these pins and nothing older. The two slow pieces (the 107 MB lmdeploy wheel to strip, the
# deepspeed sdist to build) are kept in $VLHUB_WHEEL_CACHE (default ~/.cache/vlhub-gpu-wheels), outside the
# repo. Checks: one version of each distribution per venv, no TurboMind left in lmdeploy, every wheel a valid
# zip for cp312 / manylinux x86_64 or pure Python, total <= 60 MiB (a device call carries 64 MiB with the repo).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"

WITH_VLHUB=0
WITH_SWIFT=0
for arg in "$@"; do
    case $arg in
        --vlhub) WITH_VLHUB=1 ;;
        --swift) WITH_SWIFT=1 ;;
        -h | --help) sed -n '2,7p' "$0"; exit 0 ;;
        *) echo "usage: bash bench/fetch_gpu_wheels.sh [--vlhub] [--swift]" >&2; exit 2 ;;
    esac
done
LIMIT_MIB=60

# --------------------------------------------------------------------------------------------- pins
# train: the set seen working on the machine (2026-11-23 probe, 2026-11-24 e2e runs)
TRAIN_PINS=(
    xtuner==0.2.0 mmengine==0.10.6 transformers==4.48.0 tokenizers==0.21.0 huggingface-hub==0.27.1
    accelerate==1.2.1 peft==0.14.0 datasets==3.2.0 dill==0.3.8 multiprocess==0.70.16 fsspec==2024.9.0
    loguru==0.7.3 openpyxl==3.1.5 et-xmlfile==2.0.0 addict==2.4.0 termcolor==3.3.0 yapf==0.43.0
    platformdirs==4.14.7 hjson==3.1.0 pydantic==2.10.4 pydantic-core==2.27.2 annotated-types==0.8.0
    tensorboard==2.21.0 absl-py==2.5.1  # TensorBoard event files (vis_backends); protobuf is on the machine
)
DEEPSPEED=0.16.2      # sdist only on PyPI: built here as a pure-Python wheel (DS_BUILD_OPS=0)
LMDEPLOY=0.18.0       # allows torch<=2.12.1, transformers>=4.56 (runs on the machine's 2.11 / 5.17)
# lmd: lmdeploy's runtime deps that the machine lacks (mmengine-lite -> mmengine 0.10.6 of the train set)
LMD_PINS=(
    pybase64==1.5.1 pyzmq==27.3.0 shortuuid==1.0.13 partial-json-parser==0.2.1.1.post7 fire==0.7.1
    xgrammar==0.2.8 apache-tvm-ffi==0.1.11
)
# srv: api_server's eager imports (uvicorn, fastapi, starlette; openai for lmdeploy.serve.openai.responses) and
# their missing deps. fastapi 0.140.13 is the newest without opentelemetry-api; starlette 0.52.1 the newest 0.x
# (every fastapi from 0.130 to 0.140 accepts it); openai 2.54.0 the newest on httpx (3.x needs httpx2, which the
# machine lacks) and >= 2.45 as lmdeploy 0.18 asks. The machine has anyio, httpx, h11, click, annotated-doc,
# typing-extensions, tqdm, aiohttp, prometheus-client, protobuf, timm (requirements/serve.txt).
OPENAI_PINS=(openai==2.54.0 jiter==0.19.0 distro==1.9.0 sniffio==1.3.1)
SRV_PINS=(fastapi==0.140.13 starlette==0.52.1 uvicorn==0.55.0 typing-inspection==0.4.2 "${OPENAI_PINS[@]}")
# vl: the launcher's chain imports click, pluggy, packaging, filelock, psutil, tqdm, PIL, numpy, safetensors,
# tokenizers, jinja2 (all on the machine) and openai (the lmdeploy chat backend talks to api_server with it)
VL_PINS=("${OPENAI_PINS[@]}")
# what gpu_env.sh adds to the serve and launcher venvs from .whl/*.whl (kept in sync with BASE_SERVE/BASE_LAUNCHER)
BASE_SERVE=(addict mmengine pydantic pydantic_core annotated_types termcolor yapf platformdirs dill)
BASE_LAUNCHER=(pydantic pydantic_core annotated_types)
# swift: ms-swift 4.6.0 and what `swift sft` / `swift export` import beyond the machine (torch 2.11, torchvision,
# timm, accelerate, transformers 5.17, tokenizers, hub, numpy, pillow, safetensors, pyarrow, xxhash, aiohttp ...
# there). The machine's peft 0.21 is above ms-swift's peft<0.21, so peft 0.20.0 (the [swift] pin) travels; its
# transformers 5.17 is inside ms-swift's transformers<5.20 and stays (carrying 4.57.6 with its tokenizers and hub,
# as the CPU tests run, would take 15 MiB more than the budget has). transformers-stream-generator (sdist only)
# and zstandard are imported only by models and rollout code the chain never loads.
# Only with --swift: the set adds ~12 MiB (the total stays under the 60 MiB budget).
SWIFT_PINS=(
    ms-swift==4.6.0 peft==0.20.0 trl==0.29.1 datasets==4.8.4 modelscope==1.40.2 modelscope-hub==0.5.1
    attrdict==2.0.1 binpacking==2.0.1 dacite==1.9.2 json-repair==0.64.6 simplejson==4.3.0 sortedcontainers==2.4.0
    cpm-kernels==1.0.11 einops==0.8.2 rouge==1.0.1 lazy-importer==0.1.0 importlib-metadata==10.2.0 zipp==4.1.2
)
# what gpu_e2e.sh adds to the swift venv from .whl/*.whl (kept in sync with BASE_SWIFT there)
BASE_SWIFT=(addict dill multiprocess fsspec deepspeed hjson pydantic pydantic_core annotated_types platformdirs)

PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64
           manylinux2014_x86_64 manylinux_2_5_x86_64 manylinux1_x86_64)
PIP=(python3 -m pip)
DL=("${PIP[@]}" download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp)
for p in "${PLATFORMS[@]}"; do DL+=(--platform "$p"); done

CACHE=${VLHUB_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vlhub-gpu-wheels}
mkdir -p "$CACHE"
STAGE=$(mktemp -d "${TMPDIR:-/tmp}/vlhub-wheels.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
say() { echo "[fetch_gpu_wheels] $*"; }
die() { echo "[fetch_gpu_wheels] ERROR: $*" >&2; exit 1; }
download() {  # download DIR PIN...   (pip's own lines about the local file:// indexes are noise)
    local dir=$1
    shift
    mkdir -p "$dir"
    "${DL[@]}" -d "$dir" "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

# --------------------------------------------------------------------------------------------- train
say "train set: ${#TRAIN_PINS[@]} wheels + deepspeed $DEEPSPEED"
download "$STAGE" "${TRAIN_PINS[@]}"
DS_WHL=deepspeed-$DEEPSPEED-py3-none-any.whl
if [ ! -f "$CACHE/$DS_WHL" ]; then
    say "building $DS_WHL (sdist only on PyPI; DS_BUILD_OPS=0: no CUDA ops, pure Python)"
    DS_BUILD_OPS=0 "${PIP[@]}" wheel -q --no-deps -w "$CACHE" "deepspeed==$DEEPSPEED" \
        2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
fi
cp "$CACHE/$DS_WHL" "$STAGE/"

# --------------------------------------------------------------------------------------------- lmd
LMD_WHL=lmdeploy-$LMDEPLOY-cp312-cp312-manylinux_2_28_x86_64.whl
if [ ! -f "$CACHE/stripped-$LMD_WHL" ]; then
    say "lmdeploy $LMDEPLOY: downloading the 107 MB wheel to strip TurboMind"
    T=$(mktemp -d "$STAGE/lmd.XXXX")
    download "$T" "lmdeploy==$LMDEPLOY"
    (
        cd "$T" && mkdir x && cd x && unzip -q "../$LMD_WHL"
        rm -f lmdeploy/turbomind/_turbomind*.so lmdeploy/turbomind/lib64/*.a
        grep -vE '_turbomind.*\.so|turbomind/lib64/.*\.a' "lmdeploy-$LMDEPLOY.dist-info/RECORD" >R
        mv R "lmdeploy-$LMDEPLOY.dist-info/RECORD"
        python3 -m zipfile -c ../stripped.whl lmdeploy "lmdeploy-$LMDEPLOY.dist-info"
    )
    mv "$T/stripped.whl" "$CACHE/stripped-$LMD_WHL"
    rm -rf "$T"
fi
mkdir -p "$STAGE/lmd"
cp "$CACHE/stripped-$LMD_WHL" "$STAGE/lmd/$LMD_WHL"
say "lmd set: lmdeploy $LMDEPLOY (no TurboMind) + ${#LMD_PINS[@]} wheels"
download "$STAGE/lmd" "${LMD_PINS[@]}"

# --------------------------------------------------------------------------------------------- srv, vl
say "srv set: ${SRV_PINS[*]}"
download "$STAGE/srv" "${SRV_PINS[@]}"
say "vl set: ${VL_PINS[*]}"
download "$STAGE/vl" "${VL_PINS[@]}"
if [ "$WITH_SWIFT" = 1 ]; then
    say "swift set: ${#SWIFT_PINS[@]} wheels (ms-swift 4.6.0 for \`bench/gpu_e2e.sh --trainer swift\`)"
    download "$STAGE/swift" "${SWIFT_PINS[@]}"
fi

# --------------------------------------------------------------------------------------------- vlhub (optional)
if [ "$WITH_VLHUB" = 1 ]; then
    say "vlhub: a wheel of this checkout ($(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ', with uncommitted changes'))"
    mkdir -p "$STAGE/vlhub"
    B=$(mktemp -d "$STAGE/build.XXXX")
    "${PIP[@]}" wheel -q --no-deps -w "$B" . 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
    mv "$B"/vlhub-*.whl "$STAGE/vlhub/"
    rm -rf "$B"
fi

# --------------------------------------------------------------------------------------------- checks
python3 - "$STAGE" "${BASE_SERVE[*]}" "${BASE_LAUNCHER[*]}" "${BASE_SWIFT[*]}" <<'EOF' || die "the wheel sets failed their checks (above)"
import re, sys, zipfile
from collections import defaultdict
from pathlib import Path

stage, base_serve, base_launcher, base_swift = Path(sys.argv[1]), sys.argv[2].split(), sys.argv[3].split(), sys.argv[4].split()
ok = True
def norm(name): return re.sub(r"[-_.]+", "_", name).lower()
def dist(path): return norm(path.name.split("-")[0])
train = sorted(stage.glob("*.whl"))
def base(names):
    picked = [w for w in train if dist(w) in {norm(n) for n in names}]
    missing = {norm(n) for n in names} - {dist(w) for w in picked}
    return picked, missing
venvs = {"train": train}
for name, sets, extra in (("serve", ("lmd", "srv"), base_serve), ("launcher", ("vl", "vlhub"), base_launcher),
                          ("swift", ("swift",), base_swift)):
    picked, missing = base(extra)
    if missing:
        print(f"  {name}: gpu_env.sh takes {sorted(missing)} from .whl/*.whl, which lacks them"); ok = False
    venvs[name] = [w for s in sets for w in sorted((stage / s).glob("*.whl"))] + picked
for name, wheels in venvs.items():
    seen = defaultdict(list)
    for w in wheels:
        seen[dist(w)].append(w.name)
    for d, files in seen.items():
        if len(files) > 1:
            print(f"  {name}: two versions of {d}: {files} (one pip install would stop)"); ok = False
for w in stage.rglob("*.whl"):
    py, abi, plat = w.name[:-4].split("-")[-3:]
    if not (plat == "any" or "x86_64" in plat) or not any(t in ("py3", "py312", "cp312") or (abi == "abi3" and t.startswith("cp3"))
                                                         for t in py.split(".")):
        print(f"  {w.relative_to(stage)}: not for cp312 x86_64"); ok = False
    try:
        with zipfile.ZipFile(w) as z:
            bad = z.testzip()
            if bad: print(f"  {w.name}: corrupt member {bad}"); ok = False
            if w.name.startswith("lmdeploy-") and any("_turbomind" in n and n.endswith(".so") for n in z.namelist()):
                print(f"  {w.name}: TurboMind still inside"); ok = False
    except zipfile.BadZipFile as exc:
        print(f"  {w.name}: {exc}"); ok = False
for name, wheels in venvs.items():
    print(f"  {name:8s} venv: {len(wheels):2d} wheels")
sys.exit(0 if ok else 1)
EOF

# --------------------------------------------------------------------------------------------- swap in, report
{
    echo "# written by bench/fetch_gpu_wheels.sh on $(date -u +%Y-%m-%dT%H:%MZ); do not edit"
    (cd "$STAGE" && find . -name '*.whl' | sort | while read -r f; do
        printf '%s  %s\n' "$(du -k "$f" | cut -f1)K" "${f#./}"
    done)
} >"$STAGE/MANIFEST.txt"
rm -rf .whl
mkdir .whl
cp -r "$STAGE"/. .whl/
git check-ignore -q .whl/x.whl || die ".whl/ is not git-ignored: add '.whl/' to .gitignore (it would travel as tracked files)"

mib() { du -sk "$@" | awk '{s += $1} END {printf "%.1f", s / 1024}'; }
echo
echo "set                     MiB   wheels"
printf '%-22s %5s   %s\n' ".whl/*.whl (train)" "$(mib .whl/*.whl)" "$(ls .whl/*.whl | wc -l)"
for s in lmd srv vl vlhub swift; do
    [ -d ".whl/$s" ] && printf '%-22s %5s   %s\n' ".whl/$s/" "$(mib ".whl/$s")" "$(ls ".whl/$s"/*.whl | wc -l)"
done
TOTAL_K=$(du -sk .whl | cut -f1)
printf '%-22s %5s\n' "total .whl/" "$(mib .whl)"
du -sh .whl .whl/lmd .whl/srv .whl/vl $( [ -d .whl/vlhub ] && echo .whl/vlhub ) $( [ -d .whl/swift ] && echo .whl/swift )
# what one device call carries: the working tree (tracked + untracked, not ignored) + .whl
TREE_K=$(git ls-files -z -c -o --exclude-standard | xargs -0 -r du -ck 2>/dev/null | tail -1 | cut -f1)
echo "a device call carries the working tree ($(awk "BEGIN{printf \"%.1f\", $TREE_K/1024}") MiB) + .whl ($(mib .whl) MiB) of 64 MiB"
if [ "$TOTAL_K" -gt $((LIMIT_MIB * 1024)) ]; then
    die "the wheel sets take $(mib .whl) MiB, over the $LIMIT_MIB MiB budget: the device tool carries 64 MiB per call, repo included"
fi
say "done: .whl/ holds exactly the sets above (list: .whl/MANIFEST.txt)"
