"""``python -m rnnkit.kernels._compile_check [cuda-arch]``: compile every kernel for a GPU
target without a GPU (Triton's bundled ptxas), and report shared memory per variant.

Catches compiler failures (one was an LLVM crash on the LSTM forward with "ieee" float32 dots
in Triton 3.9) on a machine without CUDA; it says nothing about speed or correctness.
"""

from __future__ import annotations

import sys

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from rnnkit.kernels import elman, gru, lstm

STATE = ("state", "state_h", "state_c", "carry", "carry_h", "carry_c", "delta", "xch")
KERNELS = (
    elman._elman_forward,
    elman._elman_backward,
    lstm._lstm_forward,
    lstm._lstm_backward,
    gru._gru_forward,
    gru._gru_backward,
)


def _signature(fn, dtype: str, consts: dict) -> dict:
    kinds = {"lengths": "*i64", "counter": "*i32"}
    kinds.update({name: "*fp32" for name in STATE})
    sig = {}
    for name in fn.arg_names:
        if name in consts:
            sig[name] = "constexpr"
        elif name in kinds:
            sig[name] = kinds[name]
        elif name in ("B", "H", "t_start", "t_stop", "t_hi", "t_lo", "finalize"):
            sig[name] = "i32"
        else:
            sig[name] = f"*{dtype}"
    return sig


def main(argv: list[str]) -> int:
    arch = int(argv[0]) if argv else 90
    variants = [  # (dtype, precision, BB, BH, BK, resident, sync, warps)
        ("fp32", "tf32x3", 16, 16, 128, True, True, 4),
        ("fp32", "tf32", 16, 16, 1024, False, True, 8),
        ("bf16", "ieee", 64, 32, 256, True, True, 4),
        ("bf16", "ieee", 16, 128, 128, True, False, 4),
    ]
    for dtype, prec, bb, bh, bk, resident, sync, warps in variants:
        for fn in KERNELS:
            consts = dict(BB=bb, BH=bh, BK=bk, RESIDENT=resident, SYNC=sync, PREC=prec)
            if "RELU" in fn.arg_names:
                consts["RELU"] = False
            key = {(fn.arg_names.index(k),): v for k, v in consts.items()}
            src = ASTSource(fn, _signature(fn, dtype, consts), constexprs=key)
            compiled = triton.compile(
                src, target=GPUTarget("cuda", arch, 32), options={"num_warps": warps}
            )
            print(
                f"{fn.__name__:16} {dtype} {prec:6} BB={bb:3} BH={bh:3} BK={bk:4} "
                f"resident={resident!s:5} sync={sync!s:5}: shared {compiled.metadata.shared} B"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
