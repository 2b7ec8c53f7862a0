#!/usr/bin/env bash
# UPOS tagging on UD English-LinES (word + character bi-LSTM), dev accuracy. Target: >= 95.0 %.
# Usage: benchmarks/tag_ud_lines.sh [OUT] [extra flags...]   (data: ../shared/data, never copied)
set -euo pipefail
DATA="${DATA:-$(dirname "$0")/../../shared/data/ud-english-lines}"
OUT="${1:-runs/bench-pos}"; shift || true
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"  # a shared 2-core CPU: more threads only spin
time rnnkit tag train --train "$DATA/en_lines-ud-train.conllu" \
    --valid "$DATA/en_lines-ud-dev.conllu" --out "$OUT" \
    --max-epochs 30 --max-minutes 13 --eval-every 0 --no-progress "$@"
rnnkit tag eval --checkpoint "$OUT" --data "$DATA/en_lines-ud-dev.conllu"
