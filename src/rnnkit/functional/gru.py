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
from rnnkit.functional import _workspace as workspace
from rnnkit.functional import probe
from rnnkit.functional._gemm import ReusedWeight
from rnnkit.functional.registry import lookup, register
from rnnkit.functional.schedule import Schedule
from rnnkit.functional.textbook import second_order, step_gru

__all__ = ["gru", "GRUFunction", "forward_recurrence", "backward_recurrence"]


def forward_recurrence(xp, h0, w_hh, b_hn, schedule: Schedule):
    """Sequential part of the forward, in processing order.

    Args: xp ``(T, B, 3H)`` with b_ih and (b_hr, b_hz) added, **its n block doubled** (see
    ``GRUFunction``: ``tanh a = 2σ(2a) − 1``, and PyTorch's CPU tanh costs several sigmoids per
    element); h0 ``(B, H)``; w_hh ``(3H, H)``; b_hn ``(H,)`` or None.
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
    minus_one = xp.new_full((), -1.0)
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
        torch.addcmul(x[:, n_cols], step[:, :size], hn, value=2, out=new)  # 2 (x_n + r ⊙ hn)
        common.two_x_minus_one(new.sigmoid_(), new, minus_one)  # n = tanh(x_n + r ⊙ hn)
        torch.sub(h_prev, new, out=h)
        h.mul_(step[:, size : 2 * size]).add_(new)  # n + z ⊙ (h_{t-1} − n)
        h_prev = h
    return gates, hn_lin, hidden


forward_recurrence.doubles_tanh_rows = True  # GRUFunction hands it xp with the n block doubled


def backward_recurrence(dout, dh_n, gates, hn_lin, hidden, h0, w_hh, schedule: Schedule):
    """Sequential part of BPTT, in processing order.

    Each step's factors are computed from its gates while they are in cache:
    ∂L/∂n_pre = dh (1 − z)(1 − n²), ∂L/∂hn = ∂L/∂n_pre ⊙ r, ∂L/∂r_pre = ∂L/∂hn ⊙ hn (1 − r),
    ∂L/∂z_pre = dh (h_{t-1} − n) z (1 − z), and dh_{t-1} = ∂L/∂(W_hh h + b_hh) W_hh + dh ⊙ z.

    Returns: dxp_n ``(T, B, H)`` (∂L/∂ the n block of the input projection; its r and z blocks
    equal dhh's), dhh ``(T, B, 3H)`` (∂L/∂(W_hh h_{t-1} + b_hh); a :mod:`_workspace` buffer),
    dh0 ``(B, H)``.
    """
    steps, batch, three_h = gates.shape
    size = three_h // 3
    ragged = schedule.ragged
    dhh = workspace.take(gates.shape, gates, zero=ragged)
    dn_pre = common.buffer(gates, (steps, batch, size), ragged)
    back = ReusedWeight(w_hh.t(), batch)  # dhh W_hh
    dh = dh_n.clone()  # ∂L/∂h carried back from step t+1
    scratch = [torch.empty_like(dh) for _ in range(2)]
    record = probe.recorder(w_hh, schedule, dout)  # None unless diagnostics are recording
    per_step = [v.unbind(0) for v in (dout, hn_lin, dn_pre)]
    gates_t, dhh_t = common.per_step_blocks(gates, 3), common.per_step_blocks(dhh, 3)
    dhh_rows, hidden_t = dhh.unbind(0), hidden.unbind(0)
    for t in reversed(range(steps)):
        n = schedule.batch_sizes[t]
        if n == 0:
            continue
        h_prev = h0 if t == 0 else hidden_t[t - 1]
        (reset, update, new), (d_r, d_z, d_hn) = gates_t[t], dhh_t[t]
        d_out, hn, dn, d_hh, h_prev, dh_prev, s1, s2 = common.rows(
            n, *(views[t] for views in per_step), dhh_rows[t], h_prev, dh, *scratch
        )
        if n != batch:
            reset, update, new, d_r, d_z, d_hn = (
                v[:n] for v in (reset, update, new, d_r, d_z, d_hn)
            )
        dh_t = d_out + dh_prev  # error from output t and from state t+1
        if record is not None:
            record(t, dh_t)  # ∂L/∂h_t
        a = torch.addcmul(dh_t, dh_t, update, value=-1, out=s1)  # dh (1 − z)
        torch.addcmul(a, torch.mul(a, new, out=s2), new, value=-1, out=dn)  # a (1 − n²)
        torch.mul(dn, reset, out=d_hn)  # into W_hn h + b_hn
        v = torch.mul(d_hn, hn, out=s1)
        torch.addcmul(v, v, reset, value=-1, out=d_r)  # dn hn r (1 − r)
        w = torch.sub(h_prev, new, out=s1).mul_(dh_t)
        u = torch.mul(w, update, out=s2)
        torch.addcmul(u, u, update, value=-1, out=d_z)  # dh (h_{t-1} − n) z (1 − z)
        dh = common.carry(dh, back(d_hh, dh_t.mul_(update)))  # + the direct path z ⊙ dh
    return dn_pre, dhh, dh


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
        w_in = w_ih
        if getattr(forward_rec, "doubles_tanh_rows", False):  # see forward_recurrence
            w_in, bias = common.doubled_block(w_ih, 2, 3), common.doubled_block(bias, 2, 3)
        xp = common.project_inputs(x, w_in, bias, schedule)  # (T, B, 3H), processing order
        h0p = schedule.batch_to_processing(h0)
        gates, hn_lin, hidden = forward_rec(xp, h0p, w_hh, b_hn, schedule)
        h_n = schedule.batch_from_processing(schedule.last_steps(hidden))
        ctx.save_for_backward(h0, b_ih, b_hh, x, h0p, w_ih, w_hh, gates, hn_lin, hidden)
        ctx.config = (schedule, backend, b_ih is not None)
        return schedule.from_processing(hidden), h_n

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, dout, dh_n):
        h0, b_ih, b_hh, x, h0p, w_ih, w_hh, gates, hn_lin, hidden = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: a backward that is differentiable
            grads = (common.grad_or_zeros(dout, hidden), common.grad_or_zeros(dh_n, h0))
            return (*second_order(step_gru, ctx.config[0], x, (h0,), (w_ih, w_hh, b_ih, b_hh),
                                  grads, ctx.needs_input_grad[:6]), None, None)
        schedule, backend, has_bias = ctx.config
        _, backward_rec = lookup("gru", backend)
        dout = schedule.to_processing(common.grad_or_zeros(dout, hidden))
        dh_n = schedule.batch_to_processing(common.grad_or_zeros(dh_n, h0p))
        dxp, dhh, dh0 = backward_rec(dout, dh_n, gates, hn_lin, hidden, h0p, w_hh, schedule)
        dw_hh = common.recurrent_weight_grad(dhh, h0p, hidden)
        db_hh = dhh.sum((0, 1)) if has_bias else None
        kept = None
        if dxp.shape[-1] != dhh.shape[-1]:  # only the n block: r and z are dhh's, reuse it
            dhh[..., 2 * dxp.shape[-1] :] = dxp
            dxp = kept = dhh
        dx, dw_ih, db_ih = common.input_grads(dxp, x, w_ih, schedule, ctx.needs_input_grad[0])
        if kept is not None:
            workspace.give(kept)  # nothing returned refers to it
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
