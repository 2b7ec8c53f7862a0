r"""GRU recurrence (torch's formulation) as one persistent Triton kernel per direction of a layer.

A program owns units j of the three gates (rows ``g·H + j`` of W_hh, g = r, z, n); only h_{t-1}
is exchanged between programs. ``b_hn`` is added inside the reset gate's product.

Backward, per step t = T−1 … 0, with ``dh`` the error reaching h_t from step t+1:

.. math::
    dh_t = dout_t + dh, \quad dn_{pre} = dh_t (1 - z)(1 - n^2), \\
    dhh = (dn_{pre}\, hn\, r(1-r),\; dh_t (h_{t-1} - n) z(1-z),\; dn_{pre}\, r), \qquad
    dh \leftarrow dh_t \odot z + dhh\, W_{hh}
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from rnnkit.functional.schedule import Schedule
from rnnkit.kernels import _lang as L
from rnnkit.kernels import _plan


@triton.jit
def _gru_forward(
    xp,
    w,
    b_hn,
    lengths,
    state,
    gates,
    hn_lin,
    hidden,
    counter,
    B,
    H,
    t_start,
    t_stop,
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
    bias_n = tl.load(b_hn + units, mask=unit_ok, other=0.0).to(tl.float32)[None, :]
    if RESIDENT:  # (BK, BH) slices of W_hhᵀ, one per gate
        w_r = L.weight_tile_t(w, 0 * H, units, ks, unit_ok, k_ok, H)
        w_z = L.weight_tile_t(w, 1 * H, units, ks, unit_ok, k_ok, H)
        w_n = L.weight_tile_t(w, 2 * H, units, ks, unit_ok, k_ok, H)
    for tile in range(tl.program_id(1), tl.cdiv(B, BB), tl.num_programs(1)):
        rows = tile * BB + tl.arange(0, BB)
        row_ok = rows < B
        lens = tl.load(lengths + rows, mask=row_ok, other=0)
        t_end = tl.minimum(t_stop, tl.load(lengths + tile * BB).to(tl.int32))
        own = row_ok[:, None] & unit_ok[None, :]
        for t in range(t_start, t_end):
            prev = state + ((t + 1) % 2) * B * H
            h = L.load_rows(prev, rows, ks, H, row_ok[:, None] & k_ok[None, :])
            h_own = L.load_rows(prev, rows, units, H, own)
            if not RESIDENT:
                w_r = L.weight_tile_t(w, 0 * H, units, ks, unit_ok, k_ok, H)
                w_z = L.weight_tile_t(w, 1 * H, units, ks, unit_ok, k_ok, H)
                w_n = L.weight_tile_t(w, 2 * H, units, ks, unit_ok, k_ok, H)
            x = xp + t * B * 3 * H
            r = L.sigmoid(L.matmul(h, w_r, PREC) + L.load_rows(x, rows, units, 3 * H, own))
            z = L.sigmoid(L.matmul(h, w_z, PREC) + L.load_rows(x + H, rows, units, 3 * H, own))
            hn = L.matmul(h, w_n, PREC) + bias_n
            n = L.tanh(L.load_rows(x + 2 * H, rows, units, 3 * H, own) + r * hn)
            h_new = n + z * (h_own - n)
            active = own & (lens > t)[:, None]
            out = gates + t * B * 3 * H
            L.store_rows(out, rows, units, 3 * H, r, active)
            L.store_rows(out + H, rows, units, 3 * H, z, active)
            L.store_rows(out + 2 * H, rows, units, 3 * H, n, active)
            L.store_rows(hn_lin + t * B * H, rows, units, H, hn, active)
            L.store_rows(hidden + t * B * H, rows, units, H, h_new, active)
            L.store_rows(state + (t % 2) * B * H, rows, units, H, h_new, own)
            L.step_barrier(counter + tile, (t - t_start + 1) * P, SYNC)


@triton.jit
def _recurrent_error(
    carry, dhh, slot, rows, units, ks, own, full, w_r, w_z, w_n, B, H, PREC: tl.constexpr
):
    """Error reaching h_t: carried part (z ⊙ dh_{t+1}) plus dhh_{t+1} W_hh (zero for idle rows)."""
    d = dhh + slot * B * 3 * H
    dh = L.load_rows(carry + slot * B * H, rows, units, H, own)
    dh += L.matmul(L.load_rows(d, rows, ks, 3 * H, full), w_r, PREC)
    dh += L.matmul(L.load_rows(d + H, rows, ks, 3 * H, full), w_z, PREC)
    dh += L.matmul(L.load_rows(d + 2 * H, rows, ks, 3 * H, full), w_n, PREC)
    return dh


@triton.jit
def _gru_backward(
    dout,
    gates,
    hn_lin,
    hidden,
    h0,
    w,
    lengths,
    carry,
    xch,
    dxp,
    dhh,
    dh0,
    counter,
    B,
    H,
    t_hi,
    t_lo,
    finalize,
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
    if RESIDENT:  # (BK, BH) slices W_hh[g·H + k, j]
        w_r = L.weight_tile(w, 0 * H, ks, units, k_ok, unit_ok, H)
        w_z = L.weight_tile(w, 1 * H, ks, units, k_ok, unit_ok, H)
        w_n = L.weight_tile(w, 2 * H, ks, units, k_ok, unit_ok, H)
    for tile in range(tl.program_id(1), tl.cdiv(B, BB), tl.num_programs(1)):
        rows = tile * BB + tl.arange(0, BB)
        row_ok = rows < B
        lens = tl.load(lengths + rows, mask=row_ok, other=0)
        own = row_ok[:, None] & unit_ok[None, :]
        full = row_ok[:, None] & k_ok[None, :]
        t_first = tl.minimum(t_hi, tl.load(lengths + tile * BB).to(tl.int32) - 1)
        for i in range(0, t_first - t_lo + 1):
            t = t_first - i
            if not RESIDENT:
                w_r = L.weight_tile(w, 0 * H, ks, units, k_ok, unit_ok, H)
                w_z = L.weight_tile(w, 1 * H, ks, units, k_ok, unit_ok, H)
                w_n = L.weight_tile(w, 2 * H, ks, units, k_ok, unit_ok, H)
            dh = _recurrent_error(
                carry, xch, (t + 1) % 2, rows, units, ks, own, full, w_r, w_z, w_n, B, H, PREC
            )
            active = own & (lens > t)[:, None]
            gt = gates + t * B * 3 * H
            r = L.load_rows(gt, rows, units, 3 * H, active)
            z = L.load_rows(gt + H, rows, units, 3 * H, active)
            n = L.load_rows(gt + 2 * H, rows, units, 3 * H, active)
            hn = L.load_rows(hn_lin + t * B * H, rows, units, H, active)
            later = (lens * 0 + t > 0)[:, None]  # (BB, 1): step t−1 exists
            h_prev = L.load_rows(hidden + (t - 1) * B * H, rows, units, H, active & later)
            h_prev += L.load_rows(h0, rows, units, H, active & ~later)
            dh_t = L.load_rows(dout + t * B * H, rows, units, H, active) + dh
            d_n = tl.where(active, dh_t * (1.0 - z) * (1.0 - n * n), 0.0)
            d_r = tl.where(active, d_n * hn * r * (1.0 - r), 0.0)
            d_z = tl.where(active, dh_t * (h_prev - n) * z * (1.0 - z), 0.0)
            d_hn = d_n * r
            x = xch + (t % 2) * B * 3 * H
            L.store_rows(x, rows, units, 3 * H, d_r, own)
            L.store_rows(x + H, rows, units, 3 * H, d_z, own)
            L.store_rows(x + 2 * H, rows, units, 3 * H, d_hn, own)
            out_hh = dhh + t * B * 3 * H
            out_xp = dxp + t * B * 3 * H
            L.store_rows(out_hh, rows, units, 3 * H, d_r, active)
            L.store_rows(out_hh + H, rows, units, 3 * H, d_z, active)
            L.store_rows(out_hh + 2 * H, rows, units, 3 * H, d_hn, active)
            L.store_rows(out_xp, rows, units, 3 * H, d_r, active)
            L.store_rows(out_xp + H, rows, units, 3 * H, d_z, active)
            L.store_rows(out_xp + 2 * H, rows, units, 3 * H, d_n, active)
            L.store_rows(
                carry + (t % 2) * B * H, rows, units, H, tl.where(active, dh_t * z, dh), own
            )
            L.step_barrier(counter + tile, (i + 1) * P, SYNC)
        if finalize:
            if not RESIDENT:
                w_r = L.weight_tile(w, 0 * H, ks, units, k_ok, unit_ok, H)
                w_z = L.weight_tile(w, 1 * H, ks, units, k_ok, unit_ok, H)
                w_n = L.weight_tile(w, 2 * H, ks, units, k_ok, unit_ok, H)
            dh = _recurrent_error(
                carry, xch, 0, rows, units, ks, own, full, w_r, w_z, w_n, B, H, PREC
            )
            L.store_rows(dh0, rows, units, H, dh, own)


def forward_recurrence(xp, h0, w_hh, b_hn, schedule: Schedule):
    """Same contract as :func:`rnnkit.functional.gru.forward_recurrence`, except that ``xp``
    holds the plain projection (no ``doubles_tanh_rows``)."""
    steps, batch, three_h = xp.shape
    size = three_h // 3
    plan = _plan.make_plan(batch, size, 3, w_hh)
    gates = _plan.output(xp, xp.shape, schedule.ragged)
    hn_lin = _plan.output(xp, (steps, batch, size), schedule.ragged)
    hidden = _plan.output(xp, (steps, batch, size), schedule.ragged)
    state = _plan.exchange(batch, size, xp, init=h0)
    bias = xp.new_zeros(size) if b_hn is None else b_hn.contiguous()
    args = (
        xp.contiguous(),
        w_hh.contiguous(),
        bias,
        schedule.lengths,
        state,
        gates,
        hn_lin,
        hidden,
    )
    _plan.launch_forward(_gru_forward, plan, args, steps, batch, B=batch, H=size)
    return gates, hn_lin, hidden


def backward_recurrence(dout, dh_n, gates, hn_lin, hidden, h0, w_hh, schedule: Schedule):
    """Same contract as :func:`rnnkit.functional.gru.backward_recurrence`, except that it
    returns the whole ``dxp`` ``(T, B, 3H)`` (``GRUFunction`` takes either)."""
    steps, batch, three_h = gates.shape
    size = three_h // 3
    plan = _plan.make_plan(batch, size, 3, w_hh)
    carry = _plan.exchange(batch, size, gates, init=dh_n)
    xch = _plan.exchange(batch, three_h, gates)
    dxp = _plan.output(gates, gates.shape, schedule.ragged)
    dhh = _plan.output(gates, gates.shape, schedule.ragged)
    dh0 = torch.empty(dh_n.shape, dtype=dh_n.dtype, device=dh_n.device)
    args = (
        dout.contiguous(),
        gates.contiguous(),
        hn_lin.contiguous(),
        hidden.contiguous(),
        h0.contiguous(),
        w_hh.contiguous(),
        schedule.lengths,
        carry,
        xch,
        dxp,
        dhh,
        dh0,
    )
    _plan.launch_backward(_gru_backward, plan, args, steps, batch, B=batch, H=size)
    return dxp, dhh, dh0
