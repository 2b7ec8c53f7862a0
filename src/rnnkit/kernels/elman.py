r"""Elman recurrence as one persistent Triton kernel per direction of a layer.

Forward, per step t and for the program's units j (rows past their length are left untouched):

.. math:: s_t[:, j] = f(xp_t[:, j] + s_{t-1} W^\top[:, j])

Backward, per step t = T−1 … 0, with ``dh`` the error reaching s_t from step t+1:

.. math:: \delta_t = (dout_t + dh) \odot f'(s_t), \qquad dh \leftarrow \delta_t W

``δ_t`` of all units is exchanged through a float32 buffer; the product for step t runs at the
start of iteration t−1 (after the barrier), so one barrier per step suffices.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from rnnkit.functional.schedule import Schedule
from rnnkit.kernels import _lang as L
from rnnkit.kernels import _plan


@triton.jit
def _elman_forward(
    xp,
    w,
    lengths,
    state,
    hidden,
    counter,
    B,
    H,
    t_start,
    t_stop,
    RELU: tl.constexpr,
    BB: tl.constexpr,
    BH: tl.constexpr,
    BK: tl.constexpr,
    RESIDENT: tl.constexpr,
    SYNC: tl.constexpr,
    PREC: tl.constexpr,
):
    p = tl.program_id(0)
    P = tl.num_programs(0)
    units = p * BH + tl.arange(0, BH)
    ks = tl.arange(0, BK)
    unit_ok = units < H
    k_ok = ks < H
    if RESIDENT:
        w_t = L.weight_tile_t(w, 0, units, ks, unit_ok, k_ok, H)  # (BK, BH) of Wᵀ
    for tile in range(tl.program_id(1), tl.cdiv(B, BB), tl.num_programs(1)):
        rows = tile * BB + tl.arange(0, BB)
        row_ok = rows < B
        lens = tl.load(lengths + rows, mask=row_ok, other=0)
        t_end = tl.minimum(t_stop, tl.load(lengths + tile * BB).to(tl.int32))
        own = row_ok[:, None] & unit_ok[None, :]
        for t in range(t_start, t_end):
            prev = L.load_rows(
                state + ((t + 1) % 2) * B * H, rows, ks, H, row_ok[:, None] & k_ok[None, :]
            )
            if not RESIDENT:
                w_t = L.weight_tile_t(w, 0, units, ks, unit_ok, k_ok, H)
            pre = L.matmul(prev, w_t, PREC) + L.load_rows(xp + t * B * H, rows, units, H, own)
            if RELU:
                new = tl.maximum(pre, 0.0)
            else:
                new = L.tanh(pre)
            active = own & (lens > t)[:, None]
            L.store_rows(hidden + t * B * H, rows, units, H, new, active)
            L.store_rows(state + (t % 2) * B * H, rows, units, H, new, own)
            L.step_barrier(counter + tile, (t - t_start + 1) * P, SYNC)


@triton.jit
def _elman_backward(
    dout,
    hidden,
    w,
    lengths,
    carry,
    delta,
    dpre,
    dh0,
    counter,
    B,
    H,
    t_hi,
    t_lo,
    finalize,
    RELU: tl.constexpr,
    BB: tl.constexpr,
    BH: tl.constexpr,
    BK: tl.constexpr,
    RESIDENT: tl.constexpr,
    SYNC: tl.constexpr,
    PREC: tl.constexpr,
):
    p = tl.program_id(0)
    P = tl.num_programs(0)
    units = p * BH + tl.arange(0, BH)
    ks = tl.arange(0, BK)
    unit_ok = units < H
    k_ok = ks < H
    if RESIDENT:
        w_tile = L.weight_tile(w, 0, ks, units, k_ok, unit_ok, H)  # (BK, BH) of W
    for tile in range(tl.program_id(1), tl.cdiv(B, BB), tl.num_programs(1)):
        rows = tile * BB + tl.arange(0, BB)
        row_ok = rows < B
        lens = tl.load(lengths + rows, mask=row_ok, other=0)
        own = row_ok[:, None] & unit_ok[None, :]
        full = row_ok[:, None] & k_ok[None, :]
        t_first = tl.minimum(t_hi, tl.load(lengths + tile * BB).to(tl.int32) - 1)
        for i in range(0, t_first - t_lo + 1):
            t = t_first - i
            slot = (t + 1) % 2
            if not RESIDENT:
                w_tile = L.weight_tile(w, 0, ks, units, k_ok, unit_ok, H)
            # error reaching s_t: carried part + δ_{t+1} W (δ is zero for rows not yet started)
            dh = L.load_rows(carry + slot * B * H, rows, units, H, own)
            dh += L.matmul(L.load_rows(delta + slot * B * H, rows, ks, H, full), w_tile, PREC)
            active = own & (lens > t)[:, None]
            s = L.load_rows(hidden + t * B * H, rows, units, H, active)
            if RELU:
                slope = (s > 0).to(tl.float32)
            else:
                slope = 1.0 - s * s
            dh += L.load_rows(dout + t * B * H, rows, units, H, active)  # + error from output t
            d = tl.where(active, dh * slope, 0.0)
            L.store_rows(delta + (t % 2) * B * H, rows, units, H, d, own)
            L.store_rows(dpre + t * B * H, rows, units, H, d, active)
            L.store_rows(carry + (t % 2) * B * H, rows, units, H, tl.where(active, 0.0, dh), own)
            L.step_barrier(counter + tile, (i + 1) * P, SYNC)
        if finalize:
            if not RESIDENT:
                w_tile = L.weight_tile(w, 0, ks, units, k_ok, unit_ok, H)
            dh = L.load_rows(carry, rows, units, H, own)
            dh += L.matmul(L.load_rows(delta, rows, ks, H, full), w_tile, PREC)
            L.store_rows(dh0, rows, units, H, dh, own)


def forward_recurrence(xp, h0, w_hh, schedule: Schedule, nonlinearity: str):
    """Same contract as :func:`rnnkit.functional.elman.forward_recurrence`, except that ``xp``
    holds the plain projection (no ``doubles_tanh_rows``)."""
    steps, batch, size = xp.shape
    plan = _plan.make_plan(batch, size, 1, w_hh)
    hidden = _plan.output(xp, xp.shape, schedule.ragged)
    state = _plan.exchange(batch, size, xp, init=h0)
    args = (xp.contiguous(), w_hh.contiguous(), schedule.lengths, state, hidden)
    _plan.launch_forward(
        _elman_forward, plan, args, steps, batch, B=batch, H=size, RELU=nonlinearity == "relu"
    )
    return hidden


def backward_recurrence(
    dout, dh_n, hidden, w_hh, schedule: Schedule, nonlinearity: str, need_dh0: bool = True
):
    """Same contract as :func:`rnnkit.functional.elman.backward_recurrence`; dh0 comes back
    whatever ``need_dh0`` says (the kernel computes it on the way)."""
    steps, batch, size = hidden.shape
    plan = _plan.make_plan(batch, size, 1, w_hh)
    carry = _plan.exchange(batch, size, hidden, init=dh_n)
    delta = _plan.exchange(batch, size, hidden)
    dpre = _plan.output(hidden, hidden.shape, schedule.ragged)
    dh0 = torch.empty(dh_n.shape, dtype=dh_n.dtype, device=dh_n.device)
    args = (
        dout.contiguous(),
        hidden.contiguous(),
        w_hh.contiguous(),
        schedule.lengths,
        carry,
        delta,
        dpre,
        dh0,
    )
    _plan.launch_backward(
        _elman_backward, plan, args, steps, batch, B=batch, H=size, RELU=nonlinearity == "relu"
    )
    return dpre, dh0
