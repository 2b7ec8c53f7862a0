r"""LSTM recurrence (no projection) as one persistent Triton kernel per direction of a layer.

A program owns units j of all four gates (rows ``g·H + j`` of W_hh, g = i, f, g, o), so the cell
update needs nothing from other programs; only h_{t-1} is exchanged between them.

Backward, per step t = T−1 … 0, with ``dh``, ``dc`` the errors reaching h_t, c_t from step t+1:

.. math::
    dh_t = dout_t + dh, \quad dc \mathrel{+}= dh_t \odot o \odot (1 - \tanh^2 c_t), \\
    d(i, f, g)_{pre} = dc \odot (g\,i(1-i),\; c_{t-1} f(1-f),\; i(1-g^2)), \quad
    do_{pre} = dh_t \odot \tanh c_t\, o(1-o), \\
    dc \leftarrow dc \odot f, \qquad dh \leftarrow dpre_t\, W_{hh}
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from rnnkit.functional.schedule import Schedule
from rnnkit.kernels import _lang as L
from rnnkit.kernels import _plan


@triton.jit
def _lstm_forward(
    xp,
    w,
    lengths,
    state_h,
    state_c,
    gates,
    cells,
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
    if RESIDENT:  # (BK, BH) slices of W_hhᵀ, one per gate
        w_i = L.weight_tile_t(w, 0 * H, units, ks, unit_ok, k_ok, H)
        w_f = L.weight_tile_t(w, 1 * H, units, ks, unit_ok, k_ok, H)
        w_g = L.weight_tile_t(w, 2 * H, units, ks, unit_ok, k_ok, H)
        w_o = L.weight_tile_t(w, 3 * H, units, ks, unit_ok, k_ok, H)
    for tile in range(tl.program_id(1), tl.cdiv(B, BB), tl.num_programs(1)):
        rows = tile * BB + tl.arange(0, BB)
        row_ok = rows < B
        lens = tl.load(lengths + rows, mask=row_ok, other=0)
        t_end = tl.minimum(t_stop, tl.load(lengths + tile * BB).to(tl.int32))
        own = row_ok[:, None] & unit_ok[None, :]
        for t in range(t_start, t_end):
            slot = (t + 1) % 2
            h = L.load_rows(state_h + slot * B * H, rows, ks, H, row_ok[:, None] & k_ok[None, :])
            c_prev = L.load_rows(state_c + slot * B * H, rows, units, H, own)
            if not RESIDENT:
                w_i = L.weight_tile_t(w, 0 * H, units, ks, unit_ok, k_ok, H)
                w_f = L.weight_tile_t(w, 1 * H, units, ks, unit_ok, k_ok, H)
                w_g = L.weight_tile_t(w, 2 * H, units, ks, unit_ok, k_ok, H)
                w_o = L.weight_tile_t(w, 3 * H, units, ks, unit_ok, k_ok, H)
            x = xp + t * B * 4 * H
            i = L.sigmoid(L.matmul(h, w_i, PREC) + L.load_rows(x, rows, units, 4 * H, own))
            f = L.sigmoid(L.matmul(h, w_f, PREC) + L.load_rows(x + H, rows, units, 4 * H, own))
            g = L.tanh(L.matmul(h, w_g, PREC) + L.load_rows(x + 2 * H, rows, units, 4 * H, own))
            o = L.sigmoid(L.matmul(h, w_o, PREC) + L.load_rows(x + 3 * H, rows, units, 4 * H, own))
            c = f * c_prev + i * g
            h_new = o * L.tanh(c)
            active = own & (lens > t)[:, None]
            out = gates + t * B * 4 * H
            L.store_rows(out, rows, units, 4 * H, i, active)
            L.store_rows(out + H, rows, units, 4 * H, f, active)
            L.store_rows(out + 2 * H, rows, units, 4 * H, g, active)
            L.store_rows(out + 3 * H, rows, units, 4 * H, o, active)
            L.store_rows(cells + t * B * H, rows, units, H, c, active)
            L.store_rows(hidden + t * B * H, rows, units, H, h_new, active)
            L.store_rows(state_c + (t % 2) * B * H, rows, units, H, c, own)
            L.store_rows(state_h + (t % 2) * B * H, rows, units, H, h_new, own)
            L.step_barrier(counter + tile, (t - t_start + 1) * P, SYNC)


@triton.jit
def _recurrent_error(
    carry_h, dpre, slot, rows, units, ks, own, full, w_i, w_f, w_g, w_o, B, H, PREC: tl.constexpr
):
    """Error reaching h_t: the carried part plus dpre_{t+1} W_hh (dpre is zero for idle rows)."""
    d = dpre + slot * B * 4 * H
    dh = L.load_rows(carry_h + slot * B * H, rows, units, H, own)
    dh += L.matmul(L.load_rows(d, rows, ks, 4 * H, full), w_i, PREC)
    dh += L.matmul(L.load_rows(d + H, rows, ks, 4 * H, full), w_f, PREC)
    dh += L.matmul(L.load_rows(d + 2 * H, rows, ks, 4 * H, full), w_g, PREC)
    dh += L.matmul(L.load_rows(d + 3 * H, rows, ks, 4 * H, full), w_o, PREC)
    return dh


@triton.jit
def _lstm_backward(
    dout,
    gates,
    cells,
    c0,
    w,
    lengths,
    carry_h,
    carry_c,
    xch,
    dpre,
    dh0,
    dc0,
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
        w_i = L.weight_tile(w, 0 * H, ks, units, k_ok, unit_ok, H)
        w_f = L.weight_tile(w, 1 * H, ks, units, k_ok, unit_ok, H)
        w_g = L.weight_tile(w, 2 * H, ks, units, k_ok, unit_ok, H)
        w_o = L.weight_tile(w, 3 * H, ks, units, k_ok, unit_ok, H)
    for tile in range(tl.program_id(1), tl.cdiv(B, BB), tl.num_programs(1)):
        rows = tile * BB + tl.arange(0, BB)
        row_ok = rows < B
        lens = tl.load(lengths + rows, mask=row_ok, other=0)
        own = row_ok[:, None] & unit_ok[None, :]
        full = row_ok[:, None] & k_ok[None, :]
        t_first = tl.minimum(t_hi, tl.load(lengths + tile * BB).to(tl.int32) - 1)
        for n in range(0, t_first - t_lo + 1):
            t = t_first - n
            slot = (t + 1) % 2
            if not RESIDENT:
                w_i = L.weight_tile(w, 0 * H, ks, units, k_ok, unit_ok, H)
                w_f = L.weight_tile(w, 1 * H, ks, units, k_ok, unit_ok, H)
                w_g = L.weight_tile(w, 2 * H, ks, units, k_ok, unit_ok, H)
                w_o = L.weight_tile(w, 3 * H, ks, units, k_ok, unit_ok, H)
            dh = _recurrent_error(
                carry_h, xch, slot, rows, units, ks, own, full, w_i, w_f, w_g, w_o, B, H, PREC
            )
            dc_in = L.load_rows(carry_c + slot * B * H, rows, units, H, own)
            active = own & (lens > t)[:, None]
            gt = gates + t * B * 4 * H
            i = L.load_rows(gt, rows, units, 4 * H, active)
            f = L.load_rows(gt + H, rows, units, 4 * H, active)
            g = L.load_rows(gt + 2 * H, rows, units, 4 * H, active)
            o = L.load_rows(gt + 3 * H, rows, units, 4 * H, active)
            tanh_c = L.tanh(L.load_rows(cells + t * B * H, rows, units, H, active))
            later = (lens * 0 + t > 0)[:, None]  # (BB, 1): step t−1 exists
            c_prev = L.load_rows(cells + (t - 1) * B * H, rows, units, H, active & later)
            c_prev += L.load_rows(c0, rows, units, H, active & ~later)
            dh_t = L.load_rows(dout + t * B * H, rows, units, H, active) + dh
            dc = dc_in + dh_t * o * (1.0 - tanh_c * tanh_c)
            d_i = tl.where(active, dc * g * i * (1.0 - i), 0.0)
            d_f = tl.where(active, dc * c_prev * f * (1.0 - f), 0.0)
            d_g = tl.where(active, dc * i * (1.0 - g * g), 0.0)
            d_o = tl.where(active, dh_t * tanh_c * o * (1.0 - o), 0.0)
            x = xch + (t % 2) * B * 4 * H
            L.store_rows(x, rows, units, 4 * H, d_i, own)
            L.store_rows(x + H, rows, units, 4 * H, d_f, own)
            L.store_rows(x + 2 * H, rows, units, 4 * H, d_g, own)
            L.store_rows(x + 3 * H, rows, units, 4 * H, d_o, own)
            out = dpre + t * B * 4 * H
            L.store_rows(out, rows, units, 4 * H, d_i, active)
            L.store_rows(out + H, rows, units, 4 * H, d_f, active)
            L.store_rows(out + 2 * H, rows, units, 4 * H, d_g, active)
            L.store_rows(out + 3 * H, rows, units, 4 * H, d_o, active)
            L.store_rows(carry_h + (t % 2) * B * H, rows, units, H, tl.where(active, 0.0, dh), own)
            L.store_rows(
                carry_c + (t % 2) * B * H, rows, units, H, tl.where(active, dc * f, dc_in), own
            )
            L.step_barrier(counter + tile, (n + 1) * P, SYNC)
        if finalize:
            if not RESIDENT:
                w_i = L.weight_tile(w, 0 * H, ks, units, k_ok, unit_ok, H)
                w_f = L.weight_tile(w, 1 * H, ks, units, k_ok, unit_ok, H)
                w_g = L.weight_tile(w, 2 * H, ks, units, k_ok, unit_ok, H)
                w_o = L.weight_tile(w, 3 * H, ks, units, k_ok, unit_ok, H)
            dh = _recurrent_error(
                carry_h, xch, 0, rows, units, ks, own, full, w_i, w_f, w_g, w_o, B, H, PREC
            )
            L.store_rows(dh0, rows, units, H, dh, own)
            L.store_rows(dc0, rows, units, H, L.load_rows(carry_c, rows, units, H, own), own)


def forward_recurrence(xp, h0, c0, w_hh, w_hr, schedule: Schedule):
    """Same contract as :func:`rnnkit.functional.lstm.forward_recurrence` (``w_hr`` None),
    except that ``xp`` holds the plain pre-activations (no ``doubles_tanh_rows``) and is only read;
    ``saved`` is ``(gates,)``."""
    if w_hr is not None:
        raise ValueError("backend='triton' does not support proj_size > 0 (LSTM projection)")
    steps, batch, four_h = xp.shape
    size = four_h // 4
    plan = _plan.make_plan(batch, size, 4, w_hh)
    gates = _plan.output(xp, xp.shape, schedule.ragged)
    cells = _plan.output(xp, (steps, batch, size), schedule.ragged)
    hidden = _plan.output(xp, (steps, batch, size), schedule.ragged)
    state_h = _plan.exchange(batch, size, xp, init=h0)
    state_c = _plan.exchange(batch, size, xp, init=c0)
    args = (
        xp.contiguous(),
        w_hh.contiguous(),
        schedule.lengths,
        state_h,
        state_c,
        gates,
        cells,
        hidden,
    )
    _plan.launch_forward(_lstm_forward, plan, args, steps, batch, B=batch, H=size)
    return (gates,), cells, hidden


def backward_recurrence(
    dout, dh_n, dc_n, saved, cells, c0, w_hh, w_hr, schedule: Schedule, need_dh0: bool = True
):
    """Same contract as :func:`rnnkit.functional.lstm.backward_recurrence` (``w_hr`` None);
    ``saved`` is ``(gates,)`` from :func:`forward_recurrence`. dh0 comes back whatever
    ``need_dh0`` says (the kernel computes it on the way)."""
    (gates,) = saved
    if w_hr is not None:
        raise ValueError("backend='triton' does not support proj_size > 0 (LSTM projection)")
    steps, batch, four_h = gates.shape
    size = four_h // 4
    plan = _plan.make_plan(batch, size, 4, w_hh)
    carry_h = _plan.exchange(batch, size, gates, init=dh_n)
    carry_c = _plan.exchange(batch, size, gates, init=dc_n)
    xch = _plan.exchange(batch, four_h, gates)
    dpre = _plan.output(gates, gates.shape, schedule.ragged)
    dh0 = torch.empty(dh_n.shape, dtype=dh_n.dtype, device=dh_n.device)
    dc0 = torch.empty(dc_n.shape, dtype=dc_n.dtype, device=dc_n.device)
    args = (
        dout.contiguous(),
        gates.contiguous(),
        cells.contiguous(),
        c0.contiguous(),
        w_hh.contiguous(),
        schedule.lengths,
        carry_h,
        carry_c,
        xch,
        dpre,
        dh0,
        dc0,
    )
    _plan.launch_backward(_lstm_backward, plan, args, steps, batch, B=batch, H=size)
    return dpre, dh0, dc0, None
