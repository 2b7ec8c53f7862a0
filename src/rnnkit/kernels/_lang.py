"""Triton building blocks shared by the three cells' kernels.

Every kernel follows one layout. Program ``(p, q)`` owns hidden units ``[p·BH, (p+1)·BH)`` of
every gate and walks the batch tiles ``q, q + PB, q + 2·PB, …`` (BB rows each). Per time step it
reads the *full* state exchanged through a float32 ping-pong buffer (slot ``t % 2``), multiplies
it with its slice of W_hh (held on chip for the whole run when ``RESIDENT``), updates its own
units and writes them back, then waits at a barrier over the ``P`` programs of that batch tile.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def tanh(x):
    # exp of a non-positive number only: no overflow for large |x|
    e = tl.exp(-2.0 * tl.abs(x))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x >= 0, t, -t)


@triton.jit
def step_barrier(counter, target, SYNC: tl.constexpr):
    """End of a step: every program of this batch tile has written before any reads.

    With ``SYNC`` (several programs share the tile) a release ``atomic_add`` announces this
    program's writes and an acquire spin waits until ``target`` arrivals; without it only the
    threads of this program are ordered.
    """
    tl.debug_barrier()  # all threads' stores precede the release below
    if SYNC:
        tl.atomic_add(counter, 1, sem="release")
        seen = tl.atomic_add(counter, 0, sem="acquire")
        while seen < target:
            seen = tl.atomic_add(counter, 0, sem="acquire")
        tl.debug_barrier()


@triton.jit
def weight_tile(w, row0, rows, cols, row_mask, col_mask, K):
    """``(BR, BC)`` tile ``w[row0 + rows[:, None], cols[None, :]]`` of a row-major ``(·, K)``."""
    ptrs = w + (row0 + rows[:, None]) * K + cols[None, :]
    return tl.load(ptrs, mask=row_mask[:, None] & col_mask[None, :], other=0.0)


@triton.jit
def weight_tile_t(w, row0, units, ks, unit_mask, k_mask, K):
    """Transposed slice ``(BK, BH)``: ``w[row0 + units, ks]ᵀ`` of a row-major ``(·, K)``."""
    ptrs = w + (row0 + units[None, :]) * K + ks[:, None]
    return tl.load(ptrs, mask=k_mask[:, None] & unit_mask[None, :], other=0.0)


@triton.jit
def load_rows(base, rows, cols, row_stride, mask):
    """``(BB, BC)`` float32 block ``base[rows, cols]`` (zero where masked)."""
    ptrs = base + rows[:, None] * row_stride + cols[None, :]
    return tl.load(ptrs, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def store_rows(base, rows, cols, row_stride, value, mask):
    ptrs = base + rows[:, None] * row_stride + cols[None, :]
    tl.store(ptrs, value.to(base.dtype.element_ty), mask=mask)


@triton.jit
def matmul(a, w, PREC: tl.constexpr):
    """``a @ w`` with a float32 accumulator; ``a`` is cast to the weights' dtype."""
    if PREC == "emulate":
        # Interpreter only: its bfloat16/float16 dot returns garbage (Triton 3.9), so multiply
        # the same rounded operands in float32.
        a_low = a.to(w.dtype).to(tl.float32)
        return tl.dot(a_low, w.to(tl.float32), input_precision="ieee", out_dtype=tl.float32)
    return tl.dot(a.to(w.dtype), w, input_precision=PREC, out_dtype=tl.float32)
