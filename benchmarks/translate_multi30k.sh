#!/usr/bin/env bash
# Multi30k German -> English: GRU encoder-decoder, BLEU/chrF on val (sacrebleu, detokenized,
# cased) with greedy and beam search. Target: BLEU >= 32 with attention + beam.
# Usage: benchmarks/translate_multi30k.sh [OUT] [extra train flags...]
#   e.g. benchmarks/translate_multi30k.sh runs/mt-noatt --attention none
# (data: ../shared/data/multi30k, never copied)
set -euo pipefail
DATA="${DATA:-$(dirname "$0")/../../shared/data/multi30k}"
OUT="${1:-runs/bench-mt}"; shift || true
MINUTES="${MINUTES:-18}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"  # a shared 2-core CPU: more threads only spin
time rnnkit translate train --train "$DATA/train.de.gz" --train-tgt "$DATA/train.en.gz" \
    --valid "$DATA/val.de.gz" --valid-tgt "$DATA/val.en.gz" --out "$OUT" \
    --tokenizer bpe --vocab-size 4000 --embedding-size 256 --hidden-size 256 --dropout 0.1 \
    --batch-size 64 --lr 3e-3 --threads 1 --max-epochs 30 --max-minutes "$MINUTES" \
    --eval-every 0 --eval-every-minutes 8 --eval-bleu 0 --no-progress --no-tensorboard "$@"
for beam in 1 5; do
    rnnkit translate eval --checkpoint "$OUT" --src "$DATA/val.de.gz" --ref "$DATA/val.en.gz" \
        --beam-size "$beam" --output "$OUT/val.beam$beam.en" --json | tee "$OUT/eval.beam$beam.json"
done
