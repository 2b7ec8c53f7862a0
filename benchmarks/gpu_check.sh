#!/usr/bin/env bash
# The GPU checks of issue 23, in order, for one short session on a CUDA machine (the device time
# is 15 minutes in all: everything goes into one or two runs of this script, under 8 minutes):
#
#   1. the device and the software (nvidia-smi, torch, triton)
#   2. the kernel tests on CUDA (tests/test_kernels_triton.py: parity with the reference loop,
#      bf16, the long-sequence case, all on the device)
#   3. python -m rnnkit.bench gpu over a reduced grid (LSTM and GRU, H 256/1024 x B 1/64, fp32
#      and bf16): for every point a parity check against cuDNN with the caching allocator filled
#      with NaN first (an output the kernels never write shows up), then median forward and
#      forward+backward times of both, and the PREFERRED table for kernels/_auto.py
#   4. the language-model training smoke test with AMP on the device (rnnkit lm train --amp)
#
# Every log goes to $OUT (default /tmp/gpu_check); a short table is printed last.
#
#   OUT=$OUT bash benchmarks/gpu_check.sh            # on the GPU machine
#   DRY=1 OUT=/tmp/gpu_dry bash benchmarks/gpu_check.sh   # on a CPU: tiny shapes, interpreter
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check}
DRY=${DRY:-0}
mkdir -p "$OUT"
: > "$OUT/summary.txt"
PY=${PYTHON:-python}

step() {  # step NAME LIMIT_S COMMAND...: run with a time limit, log to $OUT/NAME.log
    local name=$1 limit=$2
    shift 2
    local start
    start=$(date +%s)
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    printf '%-14s rc=%-3s %4ss  %s\n' "$name" "$rc" "$(( $(date +%s) - start ))" \
        "$(tail -n 1 "$OUT/$name.log" | cut -c1-90)" | tee -a "$OUT/summary.txt"
}

if [ "$DRY" = 1 ]; then
    export TRITON_INTERPRET=1 CUDA_VISIBLE_DEVICES=""
    GRID=(--cells lstm --dtypes float32 --hidden 16 --batch 2 --steps 8 --rep-ms 5)
    DEVICE=cpu
else
    GRID=(--cells lstm,gru --dtypes float32,bfloat16 --hidden 256,1024 --batch 1,64 --steps 256
          --rep-ms 200)
    DEVICE=cuda
fi

step device 60 bash -c "nvidia-smi || true; $PY -c 'import torch, sys; print(sys.version);
print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, torch.cuda.is_available());
print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else \"no CUDA device\")';
$PY -c 'import triton; print(\"triton\", triton.__version__)'"

step kernel-tests 240 "$PY" -m pytest -q -p no:cacheprovider tests/test_kernels_triton.py

step bench-gpu 240 "$PY" -m rnnkit.bench gpu "${GRID[@]}" --auto-table --json "$OUT/bench_gpu.json"

printf 'ROMEO: what light through yonder window breaks?\n%.0s' $(seq 400) > "$OUT/lm.txt"
step lm-amp 120 "$PY" -m rnnkit lm train --train "$OUT/lm.txt" --out "$OUT/lm-run" --overwrite \
    --device "$DEVICE" --amp --max-steps 40 --eval-every 20 --batch-size 16 --bptt 32 \
    --hidden-size 64 --embedding-size 16 --num-layers 1 --no-progress --no-tensorboard

echo
echo "== summary ($OUT) =="
cat "$OUT/summary.txt"
if [ -f "$OUT/bench-gpu.log" ]; then
    echo
    grep -E "^(cell|lstm|gru|rnn|PREFERRED|\s)" "$OUT/bench-gpu.log" | tail -n 30
fi
