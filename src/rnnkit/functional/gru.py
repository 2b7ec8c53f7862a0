r"""GRU, one layer and one direction, in torch's formulation.

.. math::
    \begin{aligned}
    r &= \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr}) \\
    z &= \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz}) \\
    n &= \tanh(W_{in} x_t + b_{in} + r \odot (W_{hn} h_{t-1} + b_{hn})) \\
    h_t &= (1 - z) \odot n + z \odot h_{t-1}
    \end{aligned}

Packing ``(W_ir|W_iz|W_in)``: ``w_ih`` ``(3H, I)``, ``w_hh`` ``(3H, H)``. ``b_hn`` sits inside the
reset gate's product, so it cannot be folded into the input projection as ``b_hr`` and ``b_hz`` are.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.functional import _common as common
from rnnkit.functional import probe
from rnnkit.functional._gemm import ReusedWeight
from rnnkit.functional.registry import lookup, register
from rnnkit.functional.schedule import Schedule

__all__ = ["gru", "GRUFunction", "forward_recurrence", "backward_recurrence"]


def forward_recurrence(xp, h0, w_hh, b_hn, schedule: Schedule):
    """Sequential part of the forward, in processing order.

    Args: xp ``(T, B, 3H)`` with b_ih and (b_hr, b_hz) added; h0 ``(B, H)``; w_hh ``(3H, H)``;
    b_hn ``(H,)`` or None.
    Returns: gates ``(T, B, 3H)`` = (r, z, n) after their nonlinearities, hn_lin ``(T, B, H)`` =
    ``W_hn h_{t-1} + b_hn``, hidden ``(T, B, H)``; all zero past each row's end.
    """
    steps, batch, three_h = xp.shape
    size = three_h // 3
    ragged = schedule.ragged
    gates = common.buffer(xp, xp.shape, ragged)
    hn_lin = common.buffer(xp, (steps, batch, size), ragged)  # W_hn h_{t-1} + b_hn
    hidden = common.buffer(xp, (steps, batch, size), ragged)
    hh_bias = None if b_hn is None else torch.cat([b_hn.new_zeros(2 * size), b_hn])
    recurrent = ReusedWeight(w_hh, batch, hh_bias)  # h W_hhᵀ + (0, 0, b_hn)
    rz_cols, n_cols = slice(0, 2 * size), slice(2 * size, 3 * size)
    per_step = [v.unbind(0) for v in (xp, gates, hn_lin, hidden)]
    h_prev = h0
    for t, n in enumerate(schedule.batch_sizes):
        if n == 0:
            break
        x, step, hn, h, h_prev = common.rows(n, *(views[t] for views in per_step), h_prev)
        hh = recurrent(h_prev)  # (n, 3H)
        hn.copy_(hh[:, n_cols])
        rz = step[:, rz_cols]
        torch.add(x[:, rz_cols], hh[:, rz_cols], out=rz)
        rz.sigmoid_()
        new = step[:, n_cols]
        torch.addcmul(x[:, n_cols], step[:, :size], hn, out=new)
        new.tanh_()
        torch.sub(h_prev, new, out=h)
        h.mul_(step[:, size : 2 * size]).add_(new)  # n + z ⊙ (h_{t-1} − n)
        h_prev = h
    return gates, hn_lin, hidden


def backward_recurrence(dout, dh_n, gates, hn_lin, hidden, h0, w_hh, schedule: Schedule):
    """Sequential part of BPTT, in processing order.

    Returns: dxp ``(T, B, 3H)`` (∂L/∂ input projection), dhh ``(T, B, 3H)`` (∂L/∂(W_hh h_{t-1}
    + b_hh)), dh0 ``(B, H)``.
    """
    steps, batch, three_h = gates.shape
    size = three_h // 3
    r, z, new = gates.view(steps, batch, 3, size).unbind(2)
    # Factors free of the carried error, for all steps at once (one or two whole-tensor ops each).
    one = gates.new_ones(())
    coef_n = torch.addcmul(one, new, new, value=-1).mul_(1 - z)  # ∂n_pre/∂h_t = (1−z)(1−n²)
    coef_z = torch.addcmul(z, z, z, value=-1)  # σ'(z_pre) = z − z², then × (h_{t-1} − n):
    coef_z[0].mul_(h0 - new[0])
    coef_z[1:].mul_(hidden[:-1] - new[1:])
    coef_r = torch.addcmul(r, r, r, value=-1).mul_(hn_lin)  # ∂r_pre/∂n_pre = r(1−r) hn_lin
    ragged = schedule.ragged
    dhh = common.buffer(gates, gates.shape, ragged)
    dn_pre = common.buffer(gates, (steps, batch, size), ragged)
    back = ReusedWeight(w_hh.t(), batch)  # dhh W_hh
    dh = dh_n.clone()  # ∂L/∂h carried back from step t+1
    record = probe.recorder(w_hh, schedule, dout)  # None unless diagnostics are recording
    per_step = [v.unbind(0) for v in (dout, coef_n, coef_r, coef_z, r, z, dn_pre, dhh)]
    for t in reversed(range(steps)):
        n = schedule.batch_sizes[t]
        if n == 0:
            continue
        d_out, c_n, c_r, c_z, reset, update, dn, d_hh, dh_prev = common.rows(
            n, *(views[t] for views in per_step), dh
        )
        dh_t = d_out + dh_prev  # error from output t and from state t+1
        if record is not None:
            record(t, dh_t)  # ∂L/∂h_t
        torch.mul(dh_t, c_n, out=dn)
        torch.mul(dn, c_r, out=d_hh[:, :size])  # r
        torch.mul(dh_t, c_z, out=d_hh[:, size : 2 * size])  # z
        torch.mul(dn, reset, out=d_hh[:, 2 * size :])  # W_hn h + b_hn
        dh_t.mul_(update)  # the direct path z ⊙ h_{t-1}
        dh = common.carry(dh, back(d_hh, dh_t))
    dxp = torch.cat([dhh[..., : 2 * size], dn_pre], dim=-1)
    return dxp, dhh, dh


register("gru", "reference", forward_recurrence, backward_recurrence)


class GRUFunction(torch.autograd.Function):
    """One GRU layer over a whole sequence with hand-written BPTT."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, schedule, backend):
        forward_rec, _ = lookup("gru", backend)
        size = w_hh.shape[1]
        b_hn = None
        bias = None
        if b_ih is not None:
            bias = b_ih + torch.cat([b_hh[: 2 * size], b_hh.new_zeros(size)])
            b_hn = b_hh[2 * size :]
        xp = common.project_inputs(x, w_ih, bias, schedule)  # (T, B, 3H), processing order
        h0p = schedule.batch_to_processing(h0)
        gates, hn_lin, hidden = forward_rec(xp, h0p, w_hh, b_hn, schedule)
        h_n = schedule.batch_from_processing(schedule.last_steps(hidden))
        ctx.save_for_backward(x, h0p, w_ih, w_hh, gates, hn_lin, hidden)
        ctx.config = (schedule, backend, b_ih is not None)
        return schedule.from_processing(hidden), h_n

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, dout, dh_n):
        x, h0p, w_ih, w_hh, gates, hn_lin, hidden = ctx.saved_tensors
        schedule, backend, has_bias = ctx.config
        _, backward_rec = lookup("gru", backend)
        dout = schedule.to_processing(common.grad_or_zeros(dout, hidden))
        dh_n = schedule.batch_to_processing(common.grad_or_zeros(dh_n, h0p))
        dxp, dhh, dh0 = backward_rec(dout, dh_n, gates, hn_lin, hidden, h0p, w_hh, schedule)
        dw_hh = common.recurrent_weight_grad(dhh, h0p, hidden)
        dx, dw_ih, db_ih = common.input_grads(dxp, x, w_ih, schedule, ctx.needs_input_grad[0])
        db_hh = dhh.sum((0, 1)) if has_bias else None
        if not has_bias:
            db_ih = None
        dh0 = schedule.batch_from_processing(dh0)
        return dx, dh0, dw_ih, dw_hh, db_ih, db_hh, None, None


def gru(
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    schedule: Schedule,
    backend: str = "reference",
) -> tuple[Tensor, Tensor]:
    """One GRU layer, one direction. x ``(T, B, I)``, h0 ``(B, H)`` → (output ``(T, B, H)``,
    h_n ``(B, H)``), in batch order."""
    return GRUFunction.apply(x, h0, w_ih, w_hh, b_ih, b_hh, schedule, backend)
