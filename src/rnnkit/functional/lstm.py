r"""LSTM, one layer and one direction, with torch's gate order and optional projection.

.. math::
    \begin{aligned}
    (i, f, g, o) &= (\sigma, \sigma, \tanh, \sigma)(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})\\
    c_t &= f \odot c_{t-1} + i \odot g \\
    h_t &= W_{hr}\,(o \odot \tanh c_t) \quad (o \odot \tanh c_t \text{ without projection})
    \end{aligned}

Packing ``(W_ii|W_if|W_ig|W_io)``: ``w_ih`` ``(4H, I)``, ``w_hh`` ``(4H, P)``, ``w_hr`` ``(P, H)``
where P = proj_size, or P = H without projection. The cell state keeps a path through time with
only the forget gate on it, which is how the LSTM answers the vanishing gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.functional import _common as common
from rnnkit.functional import probe
from rnnkit.functional._gemm import ReusedWeight
from rnnkit.functional.registry import lookup, register
from rnnkit.functional.schedule import Schedule

__all__ = ["lstm", "LSTMFunction", "forward_recurrence", "backward_recurrence"]


def forward_recurrence(xp, h0, c0, w_hh, w_hr, schedule: Schedule):
    """Sequential part of the forward, in processing order.

    Args: xp ``(T, B, 4H)`` with both biases; h0 ``(B, P)``; c0 ``(B, H)``; w_hh ``(4H, P)``;
    w_hr ``(P, H)`` or None.
    Returns: gates ``(T, B, 4H)`` after their nonlinearities, cells ``(T, B, H)``,
    hidden ``(T, B, P)``; all zero past each row's end.
    """
    steps, batch, four_h = xp.shape
    size = four_h // 4
    ragged = schedule.ragged
    gates = common.buffer(xp, xp.shape, ragged)
    cells = common.buffer(xp, (steps, batch, size), ragged)
    hidden = common.buffer(xp, (steps, batch, h0.shape[1]), ragged)
    recurrent = ReusedWeight(w_hh, batch)  # h W_hhᵀ
    project = None if w_hr is None else ReusedWeight(w_hr, batch)
    g_cols = slice(2 * size, 3 * size)
    # Per-step views made once: slicing inside the loop costs as much as a small kernel.
    xp_t, gates_t, cells_t, hidden_t = (v.unbind(0) for v in (xp, gates, cells, hidden))
    quads_t = gates.view(steps, batch, 4, size).unbind(0)
    h_prev, c_prev = h0, c0
    for t, n in enumerate(schedule.batch_sizes):
        if n == 0:
            break
        full = n == batch
        step, quad = gates_t[t], quads_t[t]
        c, h = cells_t[t], hidden_t[t]
        x = xp_t[t]
        if not full:
            step, quad, c, h, x = step[:n], quad[:n], c[:n], h[:n], x[:n]
            h_prev, c_prev = h_prev[:n], c_prev[:n]
        pre = recurrent(h_prev, x)  # (n, 4H) gate pre-activations
        torch.sigmoid(pre, out=step)  # i, f, o (and g, overwritten next)
        torch.tanh(pre[:, g_cols], out=step[:, g_cols])
        i, f, g, o = quad.unbind(1)
        torch.mul(f, c_prev, out=c)
        c.addcmul_(i, g)
        if project is None:
            torch.mul(o, torch.tanh(c), out=h)
        else:
            h.copy_(project(o * torch.tanh(c)))
        h_prev, c_prev = h, c
    return gates, cells, hidden


def backward_recurrence(dout, dh_n, dc_n, gates, cells, c0, w_hh, w_hr, schedule: Schedule):
    """Sequential part of BPTT, in processing order.

    Returns: dpre ``(T, B, 4H)`` (∂L/∂ gate pre-activations), dh0 ``(B, P)``, dc0 ``(B, H)``,
    and ∂L/∂w_hr ``(P, H)`` (None without projection).
    """
    steps, batch, four_h = gates.shape
    size = four_h // 4
    i, f, g, o = gates.view(steps, batch, 4, size).unbind(2)
    tanh_c = torch.tanh(cells)
    # All that does not depend on the carried error, for all steps at once (few passes over
    # memory: each line is one or two whole-tensor ops). Inside the loop then
    # ∂L/∂(i, f, g)_pre = dc ⊙ coef[:, :, :3] and ∂L/∂o_pre = dr ⊙ coef[:, :, 3].
    coef = torch.addcmul(gates, gates, gates, value=-1).view(steps, batch, 4, size)  # σ' = s − s²
    torch.addcmul(gates.new_ones(()), g, g, value=-1, out=coef[:, :, 2])  # tanh' = 1 − g²
    coef[:, :, 0].mul_(g)  # ∂c/∂i = g
    coef[0, :, 1].mul_(c0)  # ∂c/∂f = c_{t-1}
    coef[1:, :, 1].mul_(cells[:-1])
    coef[:, :, 2].mul_(i)  # ∂c/∂g = i
    coef[:, :, 3].mul_(tanh_c)  # ∂h/∂o = tanh c
    through_h = torch.addcmul(o, o, tanh_c * tanh_c, value=-1)  # ∂h/∂c = o (1 − tanh² c)
    dpre = common.buffer(gates, gates.shape, schedule.ragged)
    dh_total = None if w_hr is None else common.buffer(dout, dout.shape, schedule.ragged)
    back = ReusedWeight(w_hh.t(), batch)  # dpre W_hh
    unproject = None if w_hr is None else ReusedWeight(w_hr.t(), batch)  # dh W_hr
    dh = dh_n.clone()  # ∂L/∂h carried back from step t+1
    dc = dc_n.clone()  # ∂L/∂c carried back from step t+1
    record = probe.recorder(w_hh, schedule, dout)  # None unless diagnostics are recording
    per_step = [v.unbind(0) for v in (dout, through_h, coef, f, dpre, dpre.view(coef.shape))]
    total_t = None if dh_total is None else dh_total.unbind(0)
    for t in reversed(range(steps)):
        n = schedule.batch_sizes[t]
        if n == 0:
            continue
        d_out, through, cf, forget, d_pre, quad, dh_prev, dc_t = common.rows(
            n, *(views[t] for views in per_step), dh, dc
        )
        dh_t = d_out + dh_prev  # error from output t and from state t+1
        if record is not None:
            record(t, dh_t)  # ∂L/∂h_t
        if unproject is None:
            dr = dh_t
        else:
            total_t[t][:n] = dh_t
            dr = unproject(dh_t)  # back through the projection: (n, H)
        dc_t.addcmul_(dr, through)
        torch.mul(dc_t.unsqueeze(1), cf[:, :3], out=quad[:, :3])
        torch.mul(dr, cf[:, 3], out=quad[:, 3])
        dc_t.mul_(forget)  # on to c_{t-1}
        dh = common.carry(dh, back(d_pre))  # on to h_{t-1}
    dw_hr = None
    if w_hr is not None:  # Σ_t dh_tᵀ (o ⊙ tanh c_t), one product over all steps
        dw_hr = dh_total.reshape(-1, dh_total.shape[-1]).t() @ (o * tanh_c).reshape(-1, size)
    return dpre, dh, dc, dw_hr


register("lstm", "reference", forward_recurrence, backward_recurrence)


class LSTMFunction(torch.autograd.Function):
    """One LSTM layer over a whole sequence with hand-written BPTT."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, schedule, backend):
        bias = None if b_ih is None else b_ih + b_hh
        forward_rec, _ = lookup("lstm", backend)
        xp = common.project_inputs(x, w_ih, bias, schedule)  # (T, B, 4H), processing order
        h0p = schedule.batch_to_processing(h0)
        c0p = schedule.batch_to_processing(c0)
        gates, cells, hidden = forward_rec(xp, h0p, c0p, w_hh, w_hr, schedule)
        h_n = schedule.batch_from_processing(schedule.last_steps(hidden))
        c_n = schedule.batch_from_processing(schedule.last_steps(cells))
        ctx.save_for_backward(x, h0p, c0p, w_ih, w_hh, w_hr, gates, cells, hidden)
        ctx.config = (schedule, backend, b_ih is not None)
        return schedule.from_processing(hidden), h_n, c_n

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, dout, dh_n, dc_n):
        x, h0p, c0p, w_ih, w_hh, w_hr, gates, cells, hidden = ctx.saved_tensors
        schedule, backend, has_bias = ctx.config
        _, backward_rec = lookup("lstm", backend)
        dout = schedule.to_processing(common.grad_or_zeros(dout, hidden))
        dh_n = schedule.batch_to_processing(common.grad_or_zeros(dh_n, h0p))
        dc_n = schedule.batch_to_processing(common.grad_or_zeros(dc_n, c0p))
        dpre, dh0, dc0, dw_hr = backward_rec(
            dout, dh_n, dc_n, gates, cells, c0p, w_hh, w_hr, schedule
        )
        dw_hh = common.recurrent_weight_grad(dpre, h0p, hidden)
        dx, dw_ih, dbias = common.input_grads(dpre, x, w_ih, schedule, ctx.needs_input_grad[0])
        db = dbias if has_bias else None
        dh0 = schedule.batch_from_processing(dh0)
        dc0 = schedule.batch_from_processing(dc0)
        return dx, dh0, dc0, dw_ih, dw_hh, db, db, dw_hr, None, None


def lstm(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    w_hr: Tensor | None,
    schedule: Schedule,
    backend: str = "reference",
) -> tuple[Tensor, Tensor, Tensor]:
    """One LSTM layer, one direction. x ``(T, B, I)``, h0 ``(B, P)``, c0 ``(B, H)`` →
    (output ``(T, B, P)``, h_n ``(B, P)``, c_n ``(B, H)``), in batch order."""
    return LSTMFunction.apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, schedule, backend)
