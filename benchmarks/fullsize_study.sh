#!/usr/bin/env bash
# The full-size generalisation study's training runs (docs/GENERALISATION.md): EfficientNet-Lite0, ImageNet
# weights, 224 px, 12 epochs, one patient-grouped split (data.split_seed=0), fp32.
#
#   bash benchmarks/fullsize_study.sh LANE_FILE ROOT      # e.g. two lanes side by side, one core each
#
# LANE_FILE: one run per line, "NAME ARGS..." (extra `pneumoscope train` arguments); runs are trained in order into
# ROOT/NAME. Lines starting with "#" are skipped ("#done": a run whose results are already kept). Safe to run again:
# a finished run (summary.json) is skipped, an unfinished one resumes from its last epoch. On a 2-core CPU two lanes
# with one thread each train ~1.5x more images/s in total than one run with two threads (docs/PERFORMANCE.md).
set -uo pipefail
lane=${1:?lane file}
root=${2:?run root}
data=${PNEUMOSCOPE_DATA:-../shared/data}
pneumoscope=${PNEUMOSCOPE:-pneumoscope}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$root"
while read -r name args; do
  [[ -z "$name" || "$name" == \#* ]] && continue
  run="$root/$name"
  if [[ -f "$run/summary.json" ]]; then
    echo "$(date -Is) $name: finished, skipped"
    continue
  fi
  if [[ -f "$run/checkpoints/last.ckpt" ]]; then
    echo "$(date -Is) $name: resuming"
    $pneumoscope train --resume "$run" --no-progress >>"$run.log" 2>&1
  else
    echo "$(date -Is) $name: starting"
    # shellcheck disable=SC2086  # ARGS are words on purpose
    $pneumoscope train --data "$data/chest_xray" --model efficientnet_lite0 --pretrained --image-size 224 \
      --epochs 12 --batch-size 32 --set data.split_seed=0 --set trainer.precision=32 --no-progress \
      $args --out "$run" >>"$run.log" 2>&1
  fi
  echo "$(date -Is) $name: exit $?"
done <"$lane"
