"""``python -m rnnkit.bench NAME [options]``: run one benchmark and print its table."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "layers": "rnnkit.bench.layers",  # RNN/LSTM/GRU forward and forward+backward vs torch.nn
    "gpu": "rnnkit.bench.gpu",  # fused Triton kernels vs cuDNN
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in BENCHMARKS:
        print("usage: python -m rnnkit.bench {" + ",".join(BENCHMARKS) + "} [options]")
        print("  layers   rnnkit vs torch.nn on the CPU (and CUDA when present)")
        print("  gpu      fused Triton kernels vs cuDNN (needs CUDA)")
        print("example: python -m rnnkit.bench layers --repeats 5")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(BENCHMARKS[argv[0]])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
