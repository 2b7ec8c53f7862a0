#!/usr/bin/env bash
# SST-2 sentence classification, embeddings trained from scratch, dev accuracy. Target: >= 84 %.
# Best recipe so far: an ensemble (mean of the class probabilities) of bi-LSTM classifiers that
# differ only in their seed; each member keeps its best dev checkpoint.
# Usage: benchmarks/classify_sst2.sh [OUT] [extra training flags...]   (data: ../shared/data,
# never copied); SEEDS="1234 1 2" picks the members (default: 15 seeds, 30-35 min at one
# thread).
set -euo pipefail
DATA="${DATA:-$(dirname "$0")/../../shared/data/sst2}"
OUT="${1:-runs/bench-sst2}"; shift || true
SEEDS="${SEEDS:-1234 1 2 3 4 5 6 7 8 9 10 11 12 13 14}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"  # a shared 2-core CPU: more threads only spin
members=()
for seed in $SEEDS; do
    time rnnkit classify train --train "$DATA/stsa.binary.train" --valid "$DATA/stsa.binary.dev" \
        --out "$OUT/seed$seed" --seed "$seed" --pooling max --embedding-size 200 --hidden-size 150 \
        --max-epochs 8 --eval-every 100 --max-minutes 12 --threads 1 --no-progress "$@"
    members+=(--checkpoint "$OUT/seed$seed")
done
rnnkit classify eval "${members[@]}" --data "$DATA/stsa.binary.dev" \
    --confusion-png "$OUT/confusion.png"
