#!/usr/bin/env bash
# GPU proof of vlhub's whole chain, as one device command (< 10 min on an H100):
#   three venvs from the carried wheels -> `vlhub env use` -> tiny InternVL2-format model
#   -> FoodieQA-format fixture -> `vlhub data prepare` -> `vlhub train` (LoRA + DeepSpeed ZeRO-2,
#   sample outputs on) -> `vlhub run stop` once a checkpoint is saved -> `vlhub train --resume`
#   to the end -> `vlhub convert` (official format, verified) -> `vlhub chat --backend lmdeploy`,
#   two turns with two images -> summary.
#
# On the device, from the repo root, with `.whl` carried:
#   bash bench/gpu_e2e.sh            (logs and summary.json under $OUT, default /tmp/vl/out)
#   bash bench/gpu_e2e.sh --trainer swift --llm qwen2|qwen3   the same chain with ms-swift (`vlhub train --trainer
#                                           swift`, ZeRO-2) in a swift venv from .whl/swift (+ BASE_SWIFT of .whl/*.whl)
#   bash bench/gpu_e2e.sh --llm internlm2   the tiny model's LLM family (`vlhub dev tiny-model --llm`):
#                                           phi3 (default, InternVL2-4B's), internlm2 (InternVL2-2B's)
# Exit 0 only when every step succeeded; a failure prints the step and the logs' tails.
#
# Several GPUs of one host (issue 11):  bash bench/gpu_e2e.sh --gpus 2   (or GPUS=2)
#   the same venvs, model and data -> `vlhub train --gpus 2` with LoRA and DeepSpeed ZeRO-2, then again
#   with ZeRO-3 (GPU_ITERS iterations each, default 40) -> `vlhub convert` of each final checkpoint ->
#   summary: the command vlhub ran, per-rank start lines (RUN/ranks), loss first/last, conversion.
#   The envs stay as gpu_env.sh builds them (no torchrun of their own; the machine's torchrun on PATH is
#   another Python's, which `vlhub env check` warns about): vlhub launches `TRAIN_PYTHON -m
#   torch.distributed.run ... xtuner/tools/train.py` itself, on `--devices 0,...,GPUS-1`, at a free
#   rendezvous port recorded in run.json (`master_port`); a failed rank's first error is the run's error.
set -euo pipefail
cd "$(dirname "$0")/.."
GPUS=${GPUS:-1}
LLM=${LLM:-phi3}
TRAINER=${TRAINER:-xtuner}
while [ $# -gt 0 ]; do
    case $1 in
        --gpus) GPUS=$2; shift 2 ;;
        --gpus=*) GPUS=${1#--gpus=}; shift ;;
        --llm) LLM=$2; shift 2 ;;
        --llm=*) LLM=${1#--llm=}; shift ;;
        --trainer) TRAINER=$2; shift 2 ;;
        --trainer=*) TRAINER=${1#--trainer=}; shift ;;
        *) echo "usage: bash bench/gpu_e2e.sh [--gpus N] [--llm FAMILY] [--trainer xtuner|swift]" >&2; exit 2 ;;
    esac
done
source bench/gpu_env.sh
exec > >(tee "$OUT/e2e.log") 2>&1
ITERS=${ITERS:-100} SAVE=${SAVE:-20}
FAILED=()

on_exit() {
    local rc=$?
    set +e
    if [ $rc -ne 0 ]; then
        log "FAILED in step '$STEP' (exit $rc)"
        tails
    fi
    local run
    for run in "$VLHUB_HOME"/runs/*-train-*; do
        [ -d "$run" ] || continue
        cp "$run/train.log" "$OUT/train.log" 2>/dev/null || true
        cp "$run/metrics.jsonl" "$OUT/metrics.jsonl" 2>/dev/null || true
        cp "$run/samples.jsonl" "$OUT/samples.jsonl" 2>/dev/null || true
    done
    log "timings: ${TIMES[*]:-none}"
}
trap on_exit EXIT

run_field() {  # run_field ID KEY: a field of `vlhub run show ID --json`
    "$VLHUB" run show "$1" --json | "$LAUNCHER/bin/python" -c "import json, sys; print(json.load(sys.stdin).get('$2'))"
}

wait_run() {  # wait_run ID [SECONDS]: until the run is no longer active (or the deadline); prints its status
    local status deadline=$((SECONDS + ${2:-300}))
    while :; do
        status=$(run_field "$1" status)
        case $status in
            planned | running | stopping) [ $SECONDS -lt $deadline ] || { echo "timeout-$status"; return; }; sleep 2 ;;
            *) echo "$status"; return ;;
        esac
    done
}

# ---------------------------------------------------------------------------------------------
begin setup-envs
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
setup_envs
if [ "$TRAINER" = swift ]; then  # the swift venv: .whl/swift (fetch_gpu_wheels.sh --swift) + the train set's BASE_SWIFT
    BASE_SWIFT=(addict dill multiprocess fsspec deepspeed hjson pydantic pydantic_core annotated_types platformdirs)
    SWIFT=$W/swift
    mkvenv "$SWIFT" .whl/swift/*.whl $(base_wheels "${BASE_SWIFT[@]}")
    "$VLHUB" env use swift --python "$SWIFT/bin/python"
    "$SWIFT/bin/python" -c "import swift.pipelines, swift.cli.sft, swift.arguments" || { log "the swift venv misses a module (above): add its wheel to SWIFT_PINS in bench/fetch_gpu_wheels.sh"; exit 1; }
    echo "swift:    $("$SWIFT/bin/python" -c 'import importlib.metadata as m; print(*(f"{n} {m.version(n)}" for n in ("ms-swift", "torch", "transformers", "peft", "trl", "deepspeed")), sep=", ")')" | tee -a "$W/versions.txt"
fi
versions | tee "$W/versions.txt"
"$VLHUB" env check --json >"$W/env-check.json"
end

if [ "$GPUS" -gt 1 ]; then
    log "multi-GPU chain on $GPUS GPUs (NCCL_NVLS_ENABLE=$NCCL_NVLS_ENABLE TORCH_SYMM_MEM_DISABLE_MULTICAST=$TORCH_SYMM_MEM_DISABLE_MULTICAST NVSHMEM_DISABLE_NVLS=$NVSHMEM_DISABLE_NVLS)"
    nvidia-smi topo -m || true
fi

begin tiny-model
log "tiny model: --llm $LLM"
"$VLHUB" dev tiny-model "$W/tiny" --llm "$LLM" --force --json >"$W/tiny.json"
cat "$W/tiny.json" | head -4
end

begin data-prepare
rm -rf "$W/src" "$W/prep" && mkdir -p "$W/src" "$W/img"
"$LAUNCHER/bin/python" - "$W" <<'EOF'
import sys
from pathlib import Path
sys.path.insert(0, "tests")
from fixtures.datasets import make_foodieqa
from PIL import Image, ImageDraw
w = Path(sys.argv[1])
print("fixture:", make_foodieqa(w / "src"))
for name, size, colour in (("a.png", (448, 336), (200, 40, 30)), ("b.png", (300, 500), (40, 160, 60))):
    im = Image.new("RGB", size, colour)
    ImageDraw.Draw(im).ellipse((40, 40, size[0] - 40, size[1] - 40), fill=(240, 220, 120))
    im.save(w / "img" / name)
EOF
"$VLHUB" data prepare foodieqa --source "$W/src/FoodieQA" --out "$W/prep" --json >"$W/prepare.json"
"$LAUNCHER/bin/python" -c "import json,sys; d=json.load(open(sys.argv[1])); print('prepared:', d['records'])" "$W/prepare.json"
end

if [ "$GPUS" -gt 1 ]; then
    GPU_ITERS=${GPU_ITERS:-40}
    DEVICES=$(seq -s, 0 $((GPUS - 1)))
    log "env check warnings: $("$LAUNCHER/bin/python" -c "import json,sys; print([w for e in json.load(open(sys.argv[1])) for w in e.get('warnings', [])] or 'none')" "$W/env-check.json")"
    RUNS=()
    for ZERO in zero2 zero3; do
        begin "train-$ZERO"
        "$VLHUB" train --model "$W/tiny" --data "$W/prep" --devices "$DEVICES" --deepspeed "$ZERO" --max-iters "$GPU_ITERS" \
            --save-steps "$GPU_ITERS" --save-limit 1 --batch-size 1 --grad-accum 1 --lr 1e-3 --lora-r 16 --lora-alpha 32 \
            --log-interval 2 --max-length 2048 --eval-image "$W/img/a.png" --eval-prompt "What dish is this?" \
            --eval-every "$GPU_ITERS" --json >"$W/train-$ZERO.json"
        RUN=$("$LAUNCHER/bin/python" -c "import json,sys; print(json.load(open(sys.argv[1]))['run_id'])" "$W/train-$ZERO.json")
        RUNS+=("$RUN")
        log "run $RUN ($ZERO): $("$LAUNCHER/bin/python" -c "import json,sys; print(' '.join(json.load(open(sys.argv[1]))['command']))" "$W/train-$ZERO.json")"
        STATUS=$(wait_run "$RUN" 240)
        "$VLHUB" run show "$RUN" --json >"$W/run-$ZERO.json"
        log "$ZERO: $STATUS; port $(run_field "$RUN" master_port); error $(run_field "$RUN" error); ranks: $(ls -d "$VLHUB_HOME/runs/$RUN"/ranks/*/attempt_*/* 2>/dev/null | tr '\n' ' ')"
        end
        if [ "$STATUS" != finished ]; then
            FAILED+=("$ZERO: the run was $STATUS")
            "$VLHUB" run show "$RUN" --json | tail -40
            continue
        fi
        begin "convert-$ZERO"
        if ! "$VLHUB" convert "$RUN" --out "$W/model-$ZERO" --image "$W/img/b.png" --json >"$W/convert-$ZERO.json"; then
            FAILED+=("$ZERO: vlhub convert failed")
        fi
        end
    done
    STEP=summary
    "$LAUNCHER/bin/python" bench/gpu_summary.py --multi "$W" "$GPUS" "${RUNS[@]}" -- "${FAILED[@]}" | tee "$OUT/summary.txt"
    exit "${PIPESTATUS[0]}"
fi

begin train
if [ "$TRAINER" = swift ]; then  # ms-swift: the same schedule; no sample outputs while training
    "$VLHUB" train --trainer swift --model "$W/tiny" --data "$W/prep" --max-iters "$ITERS" --save-steps "$SAVE" \
        --save-limit 3 --batch-size 1 --grad-accum 1 --lr 1e-3 --lora-r 16 --lora-alpha 32 --log-interval 5 \
        --max-length 2048 --deepspeed zero2 --json >"$W/train.json"
else
"$VLHUB" train --model "$W/tiny" --data "$W/prep" --max-iters "$ITERS" --save-steps "$SAVE" --save-limit 3 \
    --batch-size 1 --grad-accum 1 --lr 1e-3 --lora-r 16 --lora-alpha 32 --log-interval 5 --max-length 2048 \
    --eval-image "$W/img/a.png" --eval-prompt "What dish is this?" --eval-every 50 --json >"$W/train.json"
fi
RUN=$("$LAUNCHER/bin/python" -c "import json,sys; print(json.load(open(sys.argv[1]))['run_id'])" "$W/train.json")
RUN_DIR=$VLHUB_HOME/runs/$RUN
log "run $RUN: $("$LAUNCHER/bin/python" -c "import json,sys; print(' '.join(json.load(open(sys.argv[1]))['command']))" "$W/train.json")"
# stop the run as soon as its first checkpoint is complete (mmengine records it in last_checkpoint; ms-swift's
# checkpoint-N/ is complete once transformers wrote its trainer_state.json)
checkpoint_done() {
    if [ "$TRAINER" = swift ]; then
        ls "$RUN_DIR"/work/checkpoint-*/trainer_state.json >/dev/null 2>&1
    else
        [ -s "$RUN_DIR/work/last_checkpoint" ] && ls "$(cat "$RUN_DIR/work/last_checkpoint")"/*model_states.pt >/dev/null 2>&1
    fi
}
deadline=$((SECONDS + 300))
while [ $SECONDS -lt $deadline ]; do
    if checkpoint_done; then
        break
    fi
    status=$("$LAUNCHER/bin/python" -c "import json,sys; print(json.load(open(sys.argv[1]))['status'])" "$RUN_DIR/run.json")
    case $status in running | planned) sleep 0.2 ;; *) log "run ended ($status) before a checkpoint"; exit 1 ;; esac
done
[ $SECONDS -lt $deadline ] || { log "no checkpoint after 300 s"; exit 1; }
log "checkpoint $(cat "$RUN_DIR/work/last_checkpoint" 2>/dev/null || ls -d "$RUN_DIR"/work/checkpoint-*) complete: stopping the run"
"$VLHUB" run stop "$RUN" --json | tee "$W/stop.json" || true
STATUS=$(wait_run "$RUN")
log "after stop: $STATUS, progress $(run_field "$RUN" progress)"
end
if [ "$STATUS" != stopped ]; then
    FAILED+=("stop: the run was $STATUS, not stopped (it ran to the end before the stop; raise ITERS)")
fi

begin resume
if [ "$STATUS" = stopped ]; then
    "$VLHUB" train --resume "$RUN" --json | tee "$W/resume.json"
    STATUS=$(wait_run "$RUN")
    log "after resume: $STATUS"
    [ "$STATUS" = finished ] || { "$VLHUB" run show "$RUN" --json | tail -60; exit 1; }
fi
"$VLHUB" run show "$RUN" --json >"$W/run.json"
end

begin convert
"$VLHUB" convert "$RUN" --out "$W/model" --image "$W/img/b.png" --json >"$W/convert.json"
ls "$W/model"
end

begin chat
printf 'Describe this dish.\n/image %s\nCompare it with the first one.\n' "$W/img/b.png" |
    timeout 420 "$VLHUB" chat "$W/model" --backend lmdeploy --image "$W/img/a.png" --temperature 0 \
        --max-new-tokens 24 --export "$W/chat.json" | tee "$W/chat.txt"
end

# ---------------------------------------------------------------------------------------------
STEP=summary
"$LAUNCHER/bin/python" bench/gpu_summary.py "$W" "$RUN" "${TIMES[@]}" -- "${FAILED[@]}" | tee "$OUT/summary.txt"
cp "$W/chat.json" "$OUT/" 2>/dev/null || true
[ ${#FAILED[@]} -eq 0 ]
