#!/usr/bin/env bash
# The GPU measurements of docs/PERFORMANCE.md in one go, on a machine with one CUDA GPU (H100 / H200) and the
# project's environment installed (scripts/setup). Writes everything under $OUT (default runs/gpu_session/).
#
#   bash benchmarks/gpu_session.sh            # both parts, ~8-12 min on an H100/H200
#   PART=pipeline bash benchmarks/gpu_session.sh   # only the input-pipeline benchmark (~2 min)
#   PART=tta bash benchmarks/gpu_session.sh        # only the time-to-accuracy runs
#
# $PNEUMOSCOPE_DATA must hold chest_xray/train (the raw Kermany folder). TTA_VARIANTS picks the time-to-accuracy
# variants (default: all: cold,warm,fp32,bf16,nondet,compile).
set -euo pipefail
cd "$(dirname "$0")/.."

out=${OUT:-runs/gpu_session}
part=${PART:-all}
py=${PYTHON:-.venv/bin/python}
mkdir -p "$out"
{
  date '+%F %T'
  uptime
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  lscpu | grep -E '^(Model name|CPU\(s\))' || true
  free -g | head -2
  "$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))'
} | tee "$out/machine.txt"

if [ "$part" = all ] || [ "$part" = pipeline ]; then
  # the whole train folder, 224 px, the recommended preset's augmentation on the GPU, bf16 + channels_last (auto)
  "$py" benchmarks/input_pipeline.py --device cuda --limit 0 --size 224 --batch-size 64 --steps 20 --repeat 3 \
    --warmup 5 --out "$out" 2>&1 | tee "$out/input_pipeline.txt"
fi
if [ "$part" = all ] || [ "$part" = tta ]; then
  "$py" benchmarks/gpu_time_to_accuracy.py --device cuda --out "$out/time_to_accuracy" \
    --variants "${TTA_VARIANTS:-cold,warm,fp32,bf16,nondet,compile}" 2>&1 | tee "$out/time_to_accuracy.txt"
fi
