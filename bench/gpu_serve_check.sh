#!/usr/bin/env bash
# GPU proof of `vlhub check --backend lmdeploy` (issue 20's serve-ready gate), as one device command
# (a few minutes on an H100): the venvs from the carried wheels (bench/gpu_env.sh) -> two tiny
# InternVL2-format (phi3) folders whose greedy answer stops after 2 tokens or never stops
# (tests/fixtures/steered.py) -> `vlhub check` of each on LMDeploy's api_server (PyTorch engine) and on
# transformers (GPU) -> the recorded results and a publish dry run refused for the failed one.
#
# On the device, from the repo root, with `.whl` carried:
#   bash bench/gpu_serve_check.sh        (logs and summary under $OUT, default /tmp/vl/out)
# Exit 0 only when the folder that stops passed on both backends and the other failed with "no stop token".
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/gpu_env.sh
exec > >(tee "$OUT/serve_check.log") 2>&1
trap 'rc=$?; [ $rc -eq 0 ] || { log "FAILED in step $STEP (exit $rc)"; tails; }' EXIT

begin envs
setup_envs
versions
end

begin models
for name in stops never; do
    "$VLHUB" dev tiny-model "$W/check-$name" --llm phi3 --force >/dev/null
done
"$LAUNCHER/bin/python" - "$W" <<'PY'
import sys
from pathlib import Path
sys.path.insert(0, "tests")
from fixtures.steered import steer
from vlhub.core import provenance
for name, stops in (("stops", True), ("never", False)):
    folder = steer(Path(sys.argv[1]) / f"check-{name}", stops)
    provenance.write(folder, {"converter": "internvl-official", "base_model": "OpenGVLab/InternVL2-4B"})
PY
end

check() {  # check NAME BACKEND EXPECTED_EXIT [FLAGS...]
    local name=$1 backend=$2 want=$3 rc=0
    shift 3
    timeout 480 "$VLHUB" check "$W/check-$name" --backend "$backend" --max-new-tokens 32 --json "$@" \
        >"$OUT/check-$name-$backend.json" || rc=$?
    log "check $name on $backend: exit $rc (expected $want): $(cut -c1-300 "$OUT/check-$name-$backend.json" | tr -d '\n')"
    [ "$rc" -eq "$want" ]
}

begin lmdeploy
check stops lmdeploy 0 --engine pytorch
check never lmdeploy 1 --engine pytorch
end

begin transformers
check stops transformers 0 --device cuda
check never transformers 1 --device cuda
end

begin gate
rc=0
"$VLHUB" publish "$W/check-never" --to git:https://example.invalid/o/n.git --dry-run 2>"$OUT/gate.txt" || rc=$?
cat "$OUT/gate.txt"
[ "$rc" -eq 2 ] && grep -q -- "--skip-serve-check" "$OUT/gate.txt"
end

STEP=summary
"$LAUNCHER/bin/python" - "$OUT" <<'PY' | tee "$OUT/serve_check_summary.txt"
import json, sys
from pathlib import Path
for path in sorted(Path(sys.argv[1]).glob("check-*.json")):
    r = json.loads(path.read_text())
    print(f"{path.stem}: {r['status']} tokens={r['tokens']} stop={r['stop']!r} answer={r['answer'][:40]!r} "
          f"reason={r['reason']}")
PY
