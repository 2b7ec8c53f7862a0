#!/usr/bin/env bash
# SST-2 sentence classification, embeddings trained from scratch, dev accuracy. Target: >= 84 %.
# Usage: benchmarks/classify_sst2.sh [OUT] [extra flags...]   (data: ../shared/data, never copied)
set -euo pipefail
DATA="${DATA:-$(dirname "$0")/../../shared/data/sst2}"
OUT="${1:-runs/bench-sst2}"; shift || true
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"  # a shared 2-core CPU: more threads only spin
time rnnkit classify train --train "$DATA/stsa.binary.train" --dev "$DATA/stsa.binary.dev" \
    --out "$OUT" --pooling max --embed-dim 200 --hidden-size 150 \
    --max-epochs 8 --eval-every 100 --max-minutes 12 --no-progress "$@"
rnnkit classify eval --checkpoint "$OUT" --data "$DATA/stsa.binary.dev" \
    --confusion-png "$OUT/confusion.png"
