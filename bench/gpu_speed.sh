#!/usr/bin/env bash
# Speed figures on the GPU, as one device command (< 10 min on an H100), on an InternVL2-2B-shaped
# model with random weights (`vlhub dev tiny-model --size 2b`, 4.4 GB, built here, never carried):
#   1. chat: LMDeploy (vlhub's api_server worker, streamed through the openai SDK as vlhub's backend does)
#      vs transformers (vlhub's chat_transformers worker): time to first token from the image files on
#      disk + the question to the first generated token, on one small image, on a three-image turn (23
#      tiles, ~5.9k tokens) and on a text prompt of that length; where the time goes; decode tokens/s and
#      decode against the memory-bandwidth bound (bench/gpu_speed_chat.py);
#   2. training: LoRA + DeepSpeed ZeRO-2 through `vlhub train` vs the same `xtuner train` command run
#      directly: tokens/s (median iteration time after warm-up) and peak memory, read from each log.
#
# On the device, from the repo root, with `.whl` carried:  bash bench/gpu_speed.sh
# PARTS="chat train" picks the parts; results in $OUT/speed.json and $OUT/speed.log.
# PARTS=scale (on a machine with 2+ GPUs): training tokens/s with `vlhub train --gpus 2` vs `--gpus 1`.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/gpu_env.sh
exec > >(tee "$OUT/speed.log") 2>&1
PARTS=${PARTS:-chat train}
ITERS=${ITERS:-40}

on_exit() {
    local rc=$?
    set +e
    [ $rc -eq 0 ] || { log "FAILED in step '$STEP' (exit $rc)"; tails; }
    cp "$W"/speed-*.json "$OUT/" 2>/dev/null
    log "timings: ${TIMES[*]:-none}"
}
trap on_exit EXIT

begin setup-envs
setup_envs
versions | tee "$W/versions.txt"
end

begin model-2b
"$VLHUB" dev tiny-model "$W/m2b" --size 2b --force --json | head -6
du -sh "$W/m2b"
end

if [[ " $PARTS " == *" chat "* ]]; then
    begin chat-speed
    # the test images (a 448 px PNG, a 1920x1080 and a 4032x3024 JPEG) are written to $W/chat-images
    timeout 420 "$SERVE/bin/python" bench/gpu_speed_chat.py "$W/m2b" "$W/chat-images" "$W/speed-chat.json" \
        --tokens 256 --repeat "${REPEAT:-7}" --warmup 2
    end
fi

if [[ " $PARTS " == *" train "* ]]; then
    begin train-data
    rm -rf "$W/src" "$W/prep"
    "$LAUNCHER/bin/python" -c "
import sys; from pathlib import Path; sys.path.insert(0, 'tests')
from fixtures.datasets import make_foodieqa; make_foodieqa(Path('$W/src'))"
    "$VLHUB" data prepare foodieqa --source "$W/src/FoodieQA" --out "$W/prep" --json >/dev/null
    end

    begin train-vlhub
    FLAGS=(--batch-size 1 --grad-accum 1 --max-iters "$ITERS" --save-steps 1000 --log-interval 1 --max-length 4096
           --lr 1e-4 --workers 2)
    "$VLHUB" train --model "$W/m2b" --data "$W/prep" "${FLAGS[@]}" --json >"$W/train2b.json"
    RUN=$("$LAUNCHER/bin/python" -c "import json,sys; print(json.load(open(sys.argv[1]))['run_id'])" "$W/train2b.json")
    RUN_DIR=$VLHUB_HOME/runs/$RUN
    S1=$(date +%s.%N)
    while :; do
        status=$("$LAUNCHER/bin/python" -c "import json,sys; print(json.load(open(sys.argv[1]))['status'])" "$RUN_DIR/run.json")
        case $status in running | planned | stopping) sleep 1 ;; *) break ;; esac
    done
    VLHUB_WALL=$(now "$S1")
    log "vlhub run $RUN: $status after ${VLHUB_WALL}s (launch -> end)"
    [ "$status" = finished ] || { tail -30 "$RUN_DIR/train.log"; exit 1; }
    end

    begin train-direct
    # the very command and variables vlhub launched, by hand, into another work folder
    S1=$(date +%s.%N)
    env -u PYTHONPATH -u VIRTUAL_ENV PATH="$TRAIN/bin:$PATH" PYTHONPATH="$RUN_DIR/code" TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 \
        "$TRAIN/bin/xtuner" train "$RUN_DIR/config.py" --work-dir "$W/direct-work" --deepspeed deepspeed_zero2 \
        >"$W/direct.log" 2>&1
    DIRECT_WALL=$(now "$S1")
    log "direct xtuner train: ${DIRECT_WALL}s"
    grep -q "Saving checkpoint at $ITERS iterations" "$W/direct.log" || { tail -30 "$W/direct.log"; exit 1; }
    end

    STEP=train-compare
    "$LAUNCHER/bin/python" - "$W/train2b.json" "$RUN_DIR/train.log" "$W/direct.log" "$VLHUB_WALL" "$DIRECT_WALL" \
        "$W/speed-train.json" <<'EOF'
import json, re, statistics, sys
plan, vlog, dlog, vwall, dwall, out = sys.argv[1:]
plan = json.load(open(plan))
line = re.compile(r"Iter\(train\) \[\s*(\d+)/\s*(\d+)\].*?time: ([\d.]+).*?memory: (\d+).*?loss: ([\d.]+)")
def read(path):
    rows = [tuple(map(float, m.groups())) for m in map(line.search, open(path, errors="replace")) if m]
    steady = [r[2] for r in rows if r[0] > 10]
    return {"iterations": len(rows), "median_iter_s": statistics.median(steady), "mean_iter_s": statistics.mean(steady),
            "peak_memory_mb": max(r[3] for r in rows), "loss_first": rows[0][4], "loss_last": rows[-1][4]}
tokens = plan["dataset"]["tokens"]["mean"] * plan["settings"]["batch_size"]
res = {"tokens_per_iteration": tokens, "command": plan["command"], "env": plan["env"],
       "vlhub": read(vlog), "direct": read(dlog)}
res["vlhub"]["wall_s"], res["direct"]["wall_s"] = float(vwall), float(dwall)
for side in ("vlhub", "direct"):
    res[side]["tokens_per_s"] = tokens / res[side]["median_iter_s"]
res["ratios"] = {"tokens_per_s_vlhub_over_direct": res["vlhub"]["tokens_per_s"] / res["direct"]["tokens_per_s"],
                 "peak_memory_vlhub_over_direct": res["vlhub"]["peak_memory_mb"] / res["direct"]["peak_memory_mb"],
                 "wall_vlhub_over_direct": res["vlhub"]["wall_s"] / res["direct"]["wall_s"]}
json.dump(res, open(out, "w"), indent=2)
print(json.dumps(res, indent=1))
EOF
fi

if [[ " $PARTS " == *" scale "* ]]; then
    # Multi-GPU scaling (issue 11): the same `vlhub train` (LoRA + DeepSpeed ZeRO-2, batch 1 per GPU) with
    # --gpus 1 and --gpus N; tokens/s = mean sample tokens x batch x GPUs / median iteration time (rank 0's
    # log, iterations > 10). Goal: N=2 gives >= 1.7x. Needs a machine with N GPUs (nvidia-h200-x2).
    SCALE_GPUS=${SCALE_GPUS:-$(nvidia-smi -L | wc -l)}
    SCALE_ITERS=${SCALE_ITERS:-40}
    [ "$SCALE_GPUS" -ge 2 ] || { log "scale: needs 2 or more GPUs, this machine has $SCALE_GPUS"; exit 1; }
    if [ ! -f "$W/prep/prepared.json" ]; then
        begin scale-data
        rm -rf "$W/src" "$W/prep"
        "$LAUNCHER/bin/python" -c "
import sys; from pathlib import Path; sys.path.insert(0, 'tests')
from fixtures.datasets import make_foodieqa; make_foodieqa(Path('$W/src'))"
        "$VLHUB" data prepare foodieqa --source "$W/src/FoodieQA" --out "$W/prep" --json >/dev/null
        end
    fi
    SCALE_RUNS=()
    for G in 1 "$SCALE_GPUS"; do
        begin "scale-gpus-$G"
        "$VLHUB" train --model "$W/m2b" --data "$W/prep" --gpus "$G" --deepspeed zero2 --batch-size 1 --grad-accum 1 \
            --max-iters "$SCALE_ITERS" --save-steps 1000 --log-interval 1 --max-length 4096 --lr 1e-4 --workers 2 \
            --json >"$W/scale-$G.json"
        RUN=$("$LAUNCHER/bin/python" -c "import json,sys; print(json.load(open(sys.argv[1]))['run_id'])" "$W/scale-$G.json")
        SCALE_RUNS+=("$VLHUB_HOME/runs/$RUN")
        while :; do
            status=$("$LAUNCHER/bin/python" -c "import json,sys; print(json.load(open(sys.argv[1]))['status'])" "$VLHUB_HOME/runs/$RUN/run.json")
            case $status in running | planned | stopping) sleep 1 ;; *) break ;; esac
        done
        log "scale run $RUN (--gpus $G): $status"
        [ "$status" = finished ] || { tail -30 "$VLHUB_HOME/runs/$RUN/train.log"; exit 1; }
        end
    done
    STEP=scale-compare
    "$LAUNCHER/bin/python" - "$W/scale-1.json" "${SCALE_RUNS[0]}" "$W/scale-$SCALE_GPUS.json" "${SCALE_RUNS[1]}" \
        "$W/speed-scale.json" <<'EOF'
import json, re, statistics, sys
line = re.compile(r"Iter\(train\) \[\s*(\d+)/\s*(\d+)\].*?time: ([\d.]+).*?memory: (\d+).*?loss: ([\d.]+)")
def side(plan_path, run_dir):
    plan = json.load(open(plan_path))
    rows = [tuple(map(float, m.groups())) for m in map(line.search, open(run_dir + "/train.log", errors="replace")) if m]
    gpus = plan["settings"]["gpus"] * plan["settings"]["nnodes"]
    tokens = plan["dataset"]["tokens"]["mean"] * plan["settings"]["batch_size"] * gpus
    median = statistics.median(r[2] for r in rows if r[0] > 10)
    return {"gpus": gpus, "command": plan["command"], "env": {k: v for k, v in plan["env"].items() if k != "PYTHONPATH"},
            "iterations": len(rows), "tokens_per_iteration": tokens, "median_iter_s": median,
            "tokens_per_s": tokens / median, "peak_memory_mb": max(r[3] for r in rows),
            "loss_first": rows[0][4], "loss_last": rows[-1][4]}
one, many = side(sys.argv[1], sys.argv[2]), side(sys.argv[3], sys.argv[4])
res = {"one": one, "many": many, "ratios": {"tokens_per_s_many_over_one": many["tokens_per_s"] / one["tokens_per_s"],
                                            "goal": 1.7 if many["gpus"] == 2 else None}}
json.dump(res, open(sys.argv[5], "w"), indent=2)
print(json.dumps(res, indent=1))
print(f"SCALE: {many['gpus']} GPUs {many['tokens_per_s']:.0f} tokens/s vs 1 GPU {one['tokens_per_s']:.0f} tokens/s = "
      f"{res['ratios']['tokens_per_s_many_over_one']:.2f}x")
EOF
fi

STEP=summary
echo "============================== SPEED =============================="
cat "$W/versions.txt"
if [ -f "$W/speed-chat.json" ]; then
    "$LAUNCHER/bin/python" - "$W/speed-chat.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
lmd, hf = d.get("lmdeploy", {}), d.get("transformers", {})
for name, w in d["workloads"].items():
    a, b = lmd.get("ttft", {}).get(name, {}), hf.get("ttft", {}).get(name, {})
    if a and b:
        print(f"TTFT {name:5} ({w['tiles']:2} tiles): lmdeploy {a['ttft_s'] * 1e3:7.1f} ms ({a['prompt_tokens']} tok), "
              f"transformers {b['ttft_s'] * 1e3:7.1f} ms ({b['prompt_tokens']} tok), ratio {b['ttft_s'] / a['ttft_s']:.2f}x")
print("cpu:", d.get("cpu"))
for name, b in hf.get("breakdown", {}).items():
    print(f"transformers {name}:", json.dumps(b))
if "multi_cpu_image_handling" in lmd:
    print("lmdeploy multi, image handling alone on the CPU:", json.dumps(lmd["multi_cpu_image_handling"]))
EOF
fi
for f in "$W"/speed-chat.json "$W"/speed-train.json; do
    [ -f "$f" ] && "$LAUNCHER/bin/python" -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[1].split('/')[-1], json.dumps(d.get('ratios')))" "$f"
done
true
