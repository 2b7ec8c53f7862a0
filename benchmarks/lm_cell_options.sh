#!/usr/bin/env bash
# The cell options on the character LM (issue 20, item 2), run one after another with the same
# budget of optimiser steps each:
#   A. plain LSTM vs layer-norm LSTM on tinyshakespeare (last 10 % as validation, the
#      lm_shakespeare.sh split): validation loss at equal steps;
#   B. plain vs --zoneout vs --recurrent-dropout on a small training subset (the first
#      SMALL_CHARS characters), which overfits within the budget: the train–valid gap at the end,
#      both losses from `rnnkit lm eval` (evaluation mode, the last checkpoint).
# Usage: benchmarks/lm_cell_options.sh [DATA] [OUT]
# Environment: STEPS (400), THREADS (1), HIDDEN (256), SMALL_CHARS (150000), ZONEOUT (0.1),
#              SPEED_HIDDEN ("512"),
#              RECURRENT_DROPOUT (0.2), VARIANTS_A ("plain layernorm"),
#              VARIANTS_B ("plain zoneout recdrop")
set -euo pipefail
DATA=${1:-../shared/data/tinyshakespeare/input.txt}
OUT=${2:-runs/bench-cell-options}
STEPS=${STEPS:-400}
THREADS=${THREADS:-1}  # 1: on a shared machine, two-thread kernels wait for each other
HIDDEN=${HIDDEN:-256}
SMALL_CHARS=${SMALL_CHARS:-150000}
ZONEOUT=${ZONEOUT:-0.1}
RECURRENT_DROPOUT=${RECURRENT_DROPOUT:-0.2}
VARIANTS_A=${VARIANTS_A-plain layernorm}  # set empty to skip A
VARIANTS_B=${VARIANTS_B-plain zoneout recdrop}  # or B
SPEED_HIDDEN=${SPEED_HIDDEN-512}  # the speed table's hidden sizes (empty: none)
mkdir -p "$OUT/data"

# B's data: the first SMALL_CHARS characters for training, the last 10 % for validation
python - "$DATA" "$OUT/data" "$SMALL_CHARS" <<'EOF'
import sys
from pathlib import Path
text = Path(sys.argv[1]).read_text(encoding="utf-8")
cut = len(text) - len(text) // 10
Path(sys.argv[2], "train_small.txt").write_text(text[: int(sys.argv[3])], encoding="utf-8")
Path(sys.argv[2], "valid.txt").write_text(text[cut:], encoding="utf-8")
EOF

COMMON=(--tokenizer char --cell lstm --embedding-size 64 --hidden-size "$HIDDEN" --num-layers 2
        --dropout 0.15 --bptt 64 --batch-size 32 --lr 4e-3 --warmup-steps 30 --schedule cosine
        --min-lr-ratio 0.05 --clip-norm 1.0 --max-epochs none --max-steps "$STEPS"
        --eval-every $((STEPS / 4)) --max-valid-tokens 40000 --threads "$THREADS" --seed 1
        --no-progress --overwrite)

flags() {
    case $1 in
        plain) ;;
        layernorm) echo "--layer-norm" ;;
        zoneout) echo "--zoneout $ZONEOUT" ;;
        recdrop) echo "--recurrent-dropout $RECURRENT_DROPOUT" ;;
        *) echo "unknown variant $1" >&2; exit 2 ;;
    esac
}

for variant in $VARIANTS_A; do
    start=$(date +%s)
    # shellcheck disable=SC2046
    rnnkit lm train --train "$DATA" --out "$OUT/A-$variant" "${COMMON[@]}" $(flags "$variant") \
        > "$OUT/A-$variant.log" 2>&1
    echo "A $variant: $(( $(date +%s) - start )) s wall, load $(cut -d' ' -f1-3 /proc/loadavg)" \
        | tee -a "$OUT/times.txt"
done
for variant in $VARIANTS_B; do
    start=$(date +%s)
    # shellcheck disable=SC2046
    rnnkit lm train --train "$OUT/data/train_small.txt" --valid "$OUT/data/valid.txt" \
        --out "$OUT/B-$variant" "${COMMON[@]}" $(flags "$variant") > "$OUT/B-$variant.log" 2>&1
    for split in train_small valid; do
        OMP_NUM_THREADS=$THREADS rnnkit lm eval --checkpoint "$OUT/B-$variant/last" \
            --data "$OUT/data/$split.txt" --json > "$OUT/B-$variant.$split.json"
    done
    echo "B $variant: $(( $(date +%s) - start )) s wall, load $(cut -d' ' -f1-3 /proc/loadavg)" \
        | tee -a "$OUT/times.txt"
done

python - "$OUT" "$VARIANTS_A" "$VARIANTS_B" <<'EOF'
import json
import sys
from pathlib import Path
out, variants_a, variants_b = Path(sys.argv[1]), sys.argv[2].split(), sys.argv[3].split()


def valid_curve(run):
    rows = [json.loads(line) for line in (out / run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["valid_loss"] for r in rows if "valid_loss" in r}


def train_time(run):
    """The run's clock at its last logged step (seconds, from metrics.jsonl)."""
    rows = [json.loads(line) for line in (out / run / "metrics.jsonl").read_text().splitlines()]
    return max(r["time"] for r in rows)


if variants_a:
    curves = {v: valid_curve(f"A-{v}") for v in variants_a}
    steps = sorted(set.intersection(*(set(c) for c in curves.values())))
    print("A. validation loss (nats/char) at equal steps, tinyshakespeare")
    print("| variant | " + " | ".join(f"step {s}" for s in steps) + " | run time to the last step (s) |")
    print("| --- |" + " --- |" * (len(steps) + 1))
    for v, c in curves.items():
        print(f"| {v} | " + " | ".join(f"{c[s]:.4f}" for s in steps)
              + f" | {train_time(f'A-{v}'):.0f} |")
if variants_b:
    print("\nB. small training subset: losses of the last checkpoint in evaluation mode")
    print("| variant | train loss | valid loss | gap (valid − train) | best valid (step) |")
    print("| --- | --- | --- | --- | --- |")
    for v in variants_b:
        train = json.loads((out / f"B-{v}.train_small.json").read_text())["loss"]
        valid = json.loads((out / f"B-{v}.valid.json").read_text())["loss"]
        curve = valid_curve(f"B-{v}")
        best = min(curve, key=curve.get)
        print(f"| {v} | {train:.4f} | {valid:.4f} | {valid - train:.4f} | "
              f"{curve[best]:.4f} ({best}) |")
EOF

# Speed: the recurrent stack alone, forward + backward, the variants alternated round by round
for size in $SPEED_HIDDEN; do
    python - "$size" "$THREADS" <<'EOF'
import statistics
import sys
import time

import torch

import rnnkit

size, threads = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
torch.manual_seed(0)
x = torch.randn(64, 32, 64)  # (T, B, I) as the LM's batches
variants = {"plain rnnkit.LSTM": rnnkit.LSTM(64, size, 2),
            "options off, this loop": rnnkit.RegularisedLSTM(64, size, 2),
            "layer norm": rnnkit.RegularisedLSTM(64, size, 2, layer_norm=True),
            "zoneout 0.1": rnnkit.RegularisedLSTM(64, size, 2, zoneout=0.1),
            "recurrent dropout 0.2": rnnkit.RegularisedLSTM(64, size, 2, recurrent_dropout=0.2)}
times = {name: [] for name in variants}
for _ in range(6):  # the first round warms up and is dropped
    for name, layer in variants.items():
        start = time.perf_counter()
        out, _ = layer(x)
        out.sum().backward()
        times[name].append(time.perf_counter() - start)
base = statistics.median(times["plain rnnkit.LSTM"][1:])
print(f"\nspeed, H = {size}, {threads} thread(s): forward + backward, T 64 x B 32, 2 layers")
for name, values in times.items():
    median = statistics.median(values[1:])
    print(f"| {name} | {median * 1000:.0f} ms | {median / base:.2f}x |")
EOF
done
