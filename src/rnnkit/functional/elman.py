r"""Elman RNN: the source document's network, one layer and one direction.

.. math::
    s_t = f(U x_t + b_{ih} + W s_{t-1} + b_{hh}), \qquad f \in \{\tanh, \mathrm{relu}\}

``U`` is ``w_ih`` ``(H, I)``, ``W`` is ``w_hh`` ``(H, H)``. Backpropagation through time walks
t = T−1 … 0; the error reaching ``s_t`` is the error from its own output plus the error carried
back from ``s_{t+1}``:

.. math::
    \delta_t = \big(\partial L/\partial o_t + W^\top a_{t+1}\big) \odot f'(\cdot), \qquad
    \partial L/\partial W = \sum_t \delta_t^\top s_{t-1}, \quad
    \partial L/\partial U = \sum_t \delta_t^\top x_t

The sums over t are single matrix products after the loop. Tensors are time-major.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from rnnkit.functional import _common as common
from rnnkit.functional import _workspace as workspace
from rnnkit.functional import probe
from rnnkit.functional._gemm import ReusedWeight
from rnnkit.functional.registry import lookup, register
from rnnkit.functional.schedule import Schedule
from rnnkit.functional.textbook import second_order, step_elman

__all__ = ["elman", "ElmanFunction", "forward_recurrence", "backward_recurrence"]

NONLINEARITIES = ("tanh", "relu")


def forward_recurrence(xp: Tensor, h0: Tensor, w_hh: Tensor, schedule: Schedule, nonlinearity: str):
    """Sequential part of the forward, in processing order.

    Args: xp ``(T, B, H)`` projected inputs with both biases, **doubled for tanh** (see
    ``ElmanFunction``); h0 ``(B, H)``; w_hh ``(H, H)`` as the module holds it.
    Returns: hidden ``(T, B, H)``, zero past each row's end.

    tanh is computed as ``tanh a = 2σ(2a) − 1``: two passes, each far cheaper than PyTorch's CPU
    tanh (see :func:`rnnkit.functional._common.doubled_block`).
    """
    tanh = nonlinearity == "tanh"
    hidden = common.buffer(xp, xp.shape, schedule.ragged)
    recurrent = ReusedWeight(2 * w_hh.detach() if tanh else w_hh, xp.shape[1])  # s W_hhᵀ
    minus_one = xp.new_full((), -1.0)
    per_step = [v.unbind(0) for v in (xp, hidden)]
    prev = h0
    for t, n in enumerate(schedule.batch_sizes):
        if n == 0:
            break
        x, step, prev = common.rows(n, *(views[t] for views in per_step), prev)
        pre = recurrent(prev, x)  # U x_t + W s_{t-1} + b (times two for tanh)
        if tanh:
            common.two_x_minus_one(torch.sigmoid(pre, out=step), step, minus_one)
        else:
            torch.clamp_min(pre, 0, out=step)
        prev = step
    return hidden


forward_recurrence.doubles_tanh_rows = True  # ElmanFunction doubles xp when tanh


def backward_recurrence(
    dout: Tensor,
    dh_n: Tensor,
    hidden: Tensor,
    w_hh: Tensor,
    schedule: Schedule,
    nonlinearity: str,
    need_dh0: bool = True,
):
    """Sequential part of BPTT, in processing order.

    Returns: dpre ``(T, B, H)`` (∂L/∂ pre-activation a_t) and dh0 ``(B, H)``. With ``need_dh0``
    False (h0 needs no gradient) a backend may skip the product that gives dh0 and return None.
    """
    if nonlinearity == "tanh":
        slope = 1 - hidden * hidden  # tanh'(a) from s = tanh(a), all steps at once
    else:
        slope = (hidden > 0).to(hidden.dtype)
    dpre = common.buffer(hidden, hidden.shape, schedule.ragged)
    back = ReusedWeight(w_hh.t(), hidden.shape[1])  # δ W_hh
    dh = dh_n.clone()  # ∂L/∂s carried back from step t+1; rows not yet started keep ∂L/∂s_n
    record = probe.recorder(w_hh, schedule, dout)  # None unless diagnostics are recording
    per_step = [v.unbind(0) for v in (dout, dpre, slope)]
    for t in reversed(range(schedule.steps)):
        n = schedule.batch_sizes[t]
        if n == 0:
            continue
        d_out, delta, slope_t, dh_prev = common.rows(n, *(views[t] for views in per_step), dh)
        torch.add(d_out, dh_prev, out=delta)  # error from output t and from state t+1
        if record is not None:
            record(t, delta)  # ∂L/∂s_t
        delta.mul_(slope_t)  # through f
        if t > 0 or need_dh0:
            dh = common.carry(dh, back(delta))  # on to s_{t-1}
    return dpre, dh if need_dh0 else None


register("elman", "reference", forward_recurrence, backward_recurrence)


class ElmanFunction(torch.autograd.Function):
    """One Elman layer over a whole sequence with hand-written BPTT."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, schedule, nonlinearity, backend):
        bias = None if b_ih is None else b_ih + b_hh
        forward_rec, _ = lookup("elman", backend)
        w_in = w_ih
        if nonlinearity == "tanh" and getattr(forward_rec, "doubles_tanh_rows", False):
            w_in, bias = 2 * w_ih, None if bias is None else 2 * bias
        xp = common.project_inputs(x, w_in, bias, schedule)  # (T, B, H), processing order
        h0p = schedule.batch_to_processing(h0)
        hidden = forward_rec(xp, h0p, w_hh, schedule, nonlinearity)
        h_n = schedule.batch_from_processing(schedule.last_steps(hidden))
        ctx.save_for_backward(h0, b_ih, b_hh, x, h0p, w_ih, w_hh, hidden)
        ctx.config = (schedule, nonlinearity, backend, b_ih is not None)
        return schedule.from_processing(hidden), h_n

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, dout, dh_n):
        h0, b_ih, b_hh, x, h0p, w_ih, w_hh, hidden = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: a backward that is differentiable
            schedule, nonlinearity = ctx.config[0], ctx.config[1]
            grads = (common.grad_or_zeros(dout, hidden), common.grad_or_zeros(dh_n, h0))
            step = functools.partial(step_elman, nonlinearity=nonlinearity)
            return (*second_order(step, schedule, x, (h0,), (w_ih, w_hh, b_ih, b_hh), grads,
                                  ctx.needs_input_grad[:6]), None, None, None)
        schedule, nonlinearity, backend, has_bias = ctx.config
        _, backward_rec = lookup("elman", backend)
        dout = schedule.to_processing(common.grad_or_zeros(dout, hidden))
        dh_n = schedule.batch_to_processing(common.grad_or_zeros(dh_n, h0p))
        need_dh0 = ctx.needs_input_grad[1]
        dpre, dh0 = backward_rec(dout, dh_n, hidden, w_hh, schedule, nonlinearity,
                                 need_dh0=need_dh0)
        dx, dw_ih, dw_hh, dbias = common.weight_and_input_grads(
            backward_rec, dpre, x, w_ih, h0p, hidden, schedule, ctx.needs_input_grad[0]
        )
        workspace.give(dpre)  # nothing returned refers to it
        db = dbias if has_bias else None
        dh0 = schedule.batch_from_processing(dh0) if need_dh0 else None
        return dx, dh0, dw_ih, dw_hh, db, db, None, None, None


def elman(
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    schedule: Schedule,
    nonlinearity: str = "tanh",
    backend: str = "reference",
) -> tuple[Tensor, Tensor]:
    """One Elman layer, one direction. x ``(T, B, I)``, h0 ``(B, H)`` → (output ``(T, B, H)``,
    h_n ``(B, H)``), both in batch order; ``schedule`` gives lengths and direction."""
    return ElmanFunction.apply(x, h0, w_ih, w_hh, b_ih, b_hh, schedule, nonlinearity, backend)
