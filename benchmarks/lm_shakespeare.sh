#!/usr/bin/env bash
# Quality benchmark of issue 3: tinyshakespeare, character level, last 10 % as validation,
# 15 minutes of training on the CPU. Usage: benchmarks/lm_shakespeare.sh [DATA] [OUT]
set -euo pipefail
DATA=${1:-../shared/data/tinyshakespeare/input.txt}
OUT=${2:-runs/bench-shakespeare}
rnnkit lm train --data "$DATA" --out "$OUT" --tokenizer char \
    --cell lstm --embedding-size 64 --hidden-size 512 --num-layers 2 --dropout 0.15 \
    --bptt 64 --batch-size 32 --lr 4e-3 --warmup-steps 30 --schedule cosine \
    --min-lr-ratio 0.05 --clip-norm 1.0 --max-epochs none --max-minutes 15 \
    --eval-every 0 --eval-every-minutes 2.5 --threads "${THREADS:-2}" --seed 1 --no-progress
