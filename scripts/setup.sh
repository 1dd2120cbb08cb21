#!/usr/bin/env bash
# Set up vlhub in ./.venv on a fresh Debian/Ubuntu machine with Python 3.11.
#   scripts/setup.sh          the launcher and CLI
#   scripts/setup.sh --test   also the test tools, Chromium, and the cached train stage environment
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=${1:-}

need_pkgs=()
command -v git >/dev/null || need_pkgs+=(git)
git lfs version >/dev/null 2>&1 || need_pkgs+=(git-lfs)
if [ "$want_test" = "--test" ]; then
  command -v chromium >/dev/null || need_pkgs+=(chromium)
  [ -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || need_pkgs+=(fonts-wqy-microhei)  # Chinese in screenshots
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
    echo "vlhub needs these system packages: ${need_pkgs[*]}. Install them (apt-get install ${need_pkgs[*]}) and rerun." >&2
    exit 2
  fi
  echo "installing system packages: ${need_pkgs[*]}" >&2
  $sudo apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${need_pkgs[@]}" >/dev/null
fi

python=${PYTHON:-}
if [ -z "$python" ]; then
  for candidate in python3.11 python3.12 python3; do
    if command -v "$candidate" >/dev/null; then python=$candidate; break; fi
  done
fi
"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' || {
  echo "vlhub needs Python >= 3.10 (3.11 recommended); found $("$python" --version 2>&1). Set PYTHON=/path/to/python3.11." >&2
  exit 2
}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if [ "$want_test" = "--test" ]; then
  .venv/bin/python -m pip install -q -e ".[test]"
  # The train stage environment (xtuner + DeepSpeed on torch, several GB) is cached under
  # ~/.vlhub/envs and reused; `vlhub env create` resumes or repairs it.
  if ! .venv/bin/vlhub env check train --json | .venv/bin/python -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)[0]["ready"] else 1)'; then
    .venv/bin/vlhub env create train
  fi
  # A CPU torch + transformers 5.x interpreter, to check the tiny model's remote code on both majors.
  t5=${VLHUB_ENVS_DIR:-$HOME/.vlhub/envs}/t5check/venv
  if ! "$t5/bin/python" -c 'import torch, transformers, safetensors, PIL' 2>/dev/null; then
    "$python" -m venv "$t5"
    "$t5/bin/python" -m pip install -q torch==2.13.0 "transformers>=5" safetensors pillow numpy
  fi
  # The swift stage environment (ms-swift 4.6 for `vlhub train --trainer swift`), cached like the train env.
  # It cannot share the train env's torch: ms-swift 4.x imports torch.distributed.fsdp.FSDPModule (torch >= 2.6)
  # and xtuner 0.2.0 pins torch 2.5.1; no CPU torchvision exists on PyPI for the t5check env's CPU torch. Its
  # torch 2.14.1 / torchvision 0.29.1 wheels come from the machine's local package mirror where it has them.
  if ! .venv/bin/vlhub env check swift --json | .venv/bin/python -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)[0]["ready"] else 1)'; then
    .venv/bin/vlhub env create swift
  fi
else
  .venv/bin/python -m pip install -q -e .
fi
