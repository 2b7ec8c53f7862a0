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
from rnnkit.functional import _workspace as workspace
from rnnkit.functional import probe
from rnnkit.functional._gemm import ReusedWeight
from rnnkit.functional.registry import lookup, register
from rnnkit.functional.schedule import Schedule
from rnnkit.functional.textbook import second_order, step_lstm

__all__ = ["lstm", "LSTMFunction", "forward_recurrence", "backward_recurrence"]


def forward_recurrence(xp, h0, c0, w_hh, w_hr, schedule: Schedule):
    """Sequential part of the forward, in processing order.

    Args: xp ``(T, B, 4H)`` with both biases and **its g block doubled** (``common.doubled_block``
    on ``w_ih`` and the bias, see ``LSTMFunction``); it is overwritten: step t's gates replace its
    row t once read. h0 ``(B, P)``; c0 ``(B, H)``; w_hh ``(4H, P)`` as the module holds it;
    w_hr ``(P, H)`` or None.
    Returns: ``saved`` for :func:`backward_recurrence`: (gates ``(T, B, 4H)`` after their
    nonlinearities — xp's memory —, ``tanh c_t`` ``(T, B, H)``, and with a projection
    ``o ⊙ tanh c_t`` ``(T, B, H)``, else None); cells ``(T, B, H)``; hidden ``(T, B, P)``.
    Cells, hidden and the tanh/projection buffers are zero past each row's end; gates there
    hold whatever xp held (never read).
    """
    steps, batch, four_h = xp.shape
    size = four_h // 4
    ragged = schedule.ragged
    gates = xp  # each step's gates overwrite the pre-activations it has just read
    # kept buffers (see LSTMFunction); hidden is the layer's output and leaves the call
    tanh_cells = workspace.take((steps, batch, size), xp, zero=ragged)
    cells = workspace.take((steps, batch, size), xp, zero=ragged)
    hidden = common.buffer(xp, (steps, batch, h0.shape[1]), ragged)
    outputs = None if w_hr is None else workspace.take((steps, batch, size), xp, zero=ragged)
    recurrent = ReusedWeight(common.doubled_block(w_hh, 2, 4), batch)  # h W_hhᵀ, g rows doubled
    project = None if w_hr is None else ReusedWeight(w_hr, batch)
    minus_one = xp.new_full((), -1.0)
    # Per-step views made once: slicing inside the loop costs as much as a small kernel.
    step_t, tanh_t, cells_t, hidden_t = (v.unbind(0) for v in (xp, tanh_cells, cells, hidden))
    gates_t = common.per_step_blocks(xp, 4)  # (i, f, g, o) views of each step
    out_t = None if outputs is None else outputs.unbind(0)
    h_prev, c_prev = h0, c0
    for t, n in enumerate(schedule.batch_sizes):
        if n == 0:
            break
        step, tanh_c, c, h = step_t[t], tanh_t[t], cells_t[t], hidden_t[t]
        i, f, g, o = gates_t[t]
        if n != batch:
            step, tanh_c, c, h = step[:n], tanh_c[:n], c[:n], h[:n]
            i, f, g, o = i[:n], f[:n], g[:n], o[:n]
            h_prev, c_prev = h_prev[:n], c_prev[:n]
        torch.sigmoid(recurrent(h_prev, step), out=step)  # i, f, o; σ(2 z_g) for g
        common.two_x_minus_one(g, g, minus_one)  # g = tanh z_g
        torch.mul(f, c_prev, out=c)
        c.addcmul_(i, g)  # c_t = f c_{t-1} + i g
        common.two_x_minus_one(torch.add(c, c, out=tanh_c).sigmoid_(), tanh_c, minus_one)  # tanh c
        if project is None:
            torch.mul(o, tanh_c, out=h)
        else:
            r = out_t[t] if n == batch else out_t[t][:n]
            h.copy_(project(torch.mul(o, tanh_c, out=r)))
        h_prev, c_prev = h, c
    return (gates, tanh_cells, outputs), cells, hidden


def backward_recurrence(
    dout, dh_n, dc_n, saved, cells, c0, w_hh, w_hr, schedule: Schedule, need_dh0: bool = True
):
    """Sequential part of BPTT, in processing order, from :func:`forward_recurrence`'s
    ``saved``.

    Walks t = T−1 … 0 carrying ∂L/∂h and ∂L/∂c of step t+1. Everything a step needs is computed
    from that step's gates while they are in cache (a few elementwise passes over ``(n, H)``):

    - ∂L/∂h_t = dout_t + ∂L/∂pre_{t+1} W_hh (one product, dout added inside it)
    - ∂L/∂c_t = ∂L/∂c_{t+1} f_{t+1} + ∂L/∂h_t o (1 − tanh² c_t)
    - ∂L/∂pre = (dc g σ'(i), dc c_{t-1} σ'(f), dc i (1 − g²), dh tanh c_t σ'(o)), σ' = s (1 − s)

    Returns: dpre ``(T, B, 4H)`` (∂L/∂ gate pre-activations; a :mod:`_workspace` buffer),
    dh0 ``(B, P)``, dc0 ``(B, H)``, and ∂L/∂w_hr ``(P, H)`` (None without projection).
    With ``need_dh0`` False (h0 needs no gradient) a backend may skip the product that gives
    dh0 and return None for it.
    """
    gates, tanh_cells, outputs = saved
    steps, batch, four_h = gates.shape
    size = four_h // 4
    dout = dout.contiguous()
    dpre = workspace.take(gates.shape, gates, zero=schedule.ragged)
    dh_total = None if w_hr is None else common.buffer(dout, dout.shape, schedule.ragged)
    back = ReusedWeight(w_hh.t(), batch)  # dpre W_hh
    unproject = None if w_hr is None else ReusedWeight(w_hr.t(), batch)  # dh W_hr
    dh_state = dh_n.clone()  # ∂L/∂h carried back, for rows whose next step has not run
    dc = dc_n.clone()  # ∂L/∂c carried back from step t+1
    scratch = torch.empty_like(dc)
    one = gates.new_ones(())
    record = probe.recorder(w_hh, schedule, dout)  # None unless diagnostics are recording
    gates_t, dgates_t = common.per_step_blocks(gates, 4), common.per_step_blocks(dpre, 4)
    ifg_t, difg_t = (v.view(steps, batch, 4, size)[:, :, :3].unbind(0) for v in (gates, dpre))
    dpre_t, dout_t, cells_t, tanh_t = (v.unbind(0) for v in (dpre, dout, cells, tanh_cells))
    total_t = None if dh_total is None else dh_total.unbind(0)
    below = None  # (dpre_{t+1}, rows running at t+1)
    for t in reversed(range(steps)):
        n = schedule.batch_sizes[t]
        if n == 0:
            continue
        (i, f, g, o), (di, df, dg, do), ifg, d_ifg = gates_t[t], dgates_t[t], ifg_t[t], difg_t[t]
        d_out, tanh_c, c_prev = dout_t[t], tanh_t[t], c0 if t == 0 else cells_t[t - 1]
        if n != batch:
            i, f, g, o, di, df, dg, do, ifg, d_ifg, d_out, tanh_c, c_prev = (
                v[:n] for v in (i, f, g, o, di, df, dg, do, ifg, d_ifg, d_out, tanh_c, c_prev)
            )
        # error from output t and from state t+1
        if below is None:
            dh_t = d_out + dh_state[:n]
        else:
            d_next, m = below
            top = back(d_next, d_out[:m])
            if m == n:
                dh_t = top
            else:  # rows m..n end at step t: their carried error is still dh_n's
                dh_t = dh_state[:n]
                dh_t[:m] = top
                dh_t[m:] += d_out[m:]
        if record is not None:
            record(t, dh_t)  # ∂L/∂h_t
        if unproject is None:
            dr = dh_t
        else:
            total_t[t][:n] = dh_t
            dr = unproject(dh_t)  # back through the projection: (n, H)
        dc_t = dc if n == batch else dc[:n]
        dr_o = torch.mul(dr, o, out=scratch if n == batch else scratch[:n])
        # ∂L/∂c_t gains dr o (1 − tanh² c_t)
        dc_t.add_(dr_o)
        dr_o_tanh = dr_o.mul_(tanh_c)
        dc_t.addcmul_(dr_o_tanh, tanh_c, value=-1)
        torch.addcmul(dr_o_tanh, dr_o_tanh, o, value=-1, out=do)  # dr tanh c σ'(o)
        torch.addcmul(ifg, ifg, ifg, value=-1, out=d_ifg)  # σ'(i), σ'(f), (g − g², fixed next)
        torch.addcmul(one, g, g, value=-1, out=dg)  # tanh'(g) = 1 − g²
        di.mul_(g)  # ∂c/∂i = g
        df.mul_(c_prev)  # ∂c/∂f = c_{t-1}
        dg.mul_(i)  # ∂c/∂g = i
        d_ifg.mul_(dc_t.unsqueeze(1))
        dc_t.mul_(f)  # on to c_{t-1}
        below = (dpre_t[t] if n == batch else dpre_t[t][:n], n)
    if not need_dh0:
        dh_state = None
    elif below is not None:  # ∂L/∂h_{-1}: every row runs at step 0
        dh_state = common.carry(dh_state, back(below[0]))
    dw_hr = None
    if w_hr is not None:  # Σ_t dh_tᵀ (o ⊙ tanh c_t), one product over all steps
        dw_hr = dh_total.reshape(-1, dh_total.shape[-1]).t() @ outputs.reshape(-1, size)
    return dpre, dh_state, dc, dw_hr


forward_recurrence.doubles_tanh_rows = True  # LSTMFunction hands it xp with the g block doubled
register("lstm", "reference", forward_recurrence, backward_recurrence)


# Up to this size the input projection (which becomes the saved gates) is a fresh oneDNN result:
# glibc serves blocks below its largest mmap threshold (32 MB) from memory freed by the previous
# call, so they cost no page faults, and oneDNN's product is faster than ``torch.addmm``. Larger
# blocks come from fresh mmap pages every time; those are written into a kept workspace buffer.
FRESH_XP_MAX_BYTES = 32 << 20


class LSTMFunction(torch.autograd.Function):
    """One LSTM layer over a whole sequence with hand-written BPTT.

    The large per-step buffers it saves for the backward (the cells, ``tanh c_t``, and above
    ``FRESH_XP_MAX_BYTES`` the gates, which are the input projection's memory) are
    :mod:`_workspace` buffers: handed back when the backward is done with them (unless the graph
    is kept for another backward), or at once when no graph is recorded, so the next call reuses
    them instead of faulting in fresh pages. ``graph`` says whether autograd records this call.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, schedule, backend, graph):
        bias = None if b_ih is None else b_ih + b_hh
        forward_rec, _ = lookup("lstm", backend)
        w_in = w_ih
        if getattr(forward_rec, "doubles_tanh_rows", False):  # tanh via σ: see common.doubled_block
            w_in, bias = common.doubled_block(w_ih, 2, 4), common.doubled_block(bias, 2, 4)
        shape = (x.shape[0], x.shape[1], w_in.shape[0])
        kept_xp = shape[0] * shape[1] * shape[2] * x.element_size() > FRESH_XP_MAX_BYTES
        if kept_xp:  # (T, B, 4H), processing order
            xp = common.project_inputs(x, w_in, bias, schedule, out=workspace.take(shape, x))
        else:
            xp = common.project_inputs(x, w_in, bias, schedule)
        h0p = schedule.batch_to_processing(h0)
        c0p = schedule.batch_to_processing(c0)
        saved, cells, hidden = forward_rec(xp, h0p, c0p, w_hh, w_hr, schedule)
        h_n = schedule.batch_from_processing(schedule.last_steps(hidden))
        c_n = schedule.batch_from_processing(schedule.last_steps(cells))
        if c_n.data_ptr() == cells[-1].data_ptr():  # a view of cells, which is handed back
            c_n = c_n.clone()
        if graph:
            ctx.save_for_backward(h0, c0, b_ih, b_hh, x, h0p, c0p, w_ih, w_hh, w_hr, cells,
                                  hidden, *saved)
            ctx.config = (schedule, backend, b_ih is not None, kept_xp)
        else:
            workspace.give_all(cells, *saved[1:], saved[0] if kept_xp else None)
        return schedule.from_processing(hidden), h_n, c_n

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, dout, dh_n, dc_n):
        h0, c0, b_ih, b_hh, x, h0p, c0p, w_ih, w_hh, w_hr, cells, hidden, *saved = \
            ctx.saved_tensors
        schedule, backend, has_bias, kept_xp = ctx.config
        if torch.is_grad_enabled():  # create_graph=True: a backward that is differentiable
            grads = (common.grad_or_zeros(dout, hidden), common.grad_or_zeros(dh_n, h0),
                     common.grad_or_zeros(dc_n, c0))
            return (*second_order(step_lstm, schedule, x, (h0, c0),
                                  (w_ih, w_hh, b_ih, b_hh, w_hr), grads,
                                  ctx.needs_input_grad[:8]), None, None, None)
        _, backward_rec = lookup("lstm", backend)
        dout = schedule.to_processing(common.grad_or_zeros(dout, hidden))
        dh_n = schedule.batch_to_processing(common.grad_or_zeros(dh_n, h0p))
        dc_n = schedule.batch_to_processing(common.grad_or_zeros(dc_n, c0p))
        need_dh0 = ctx.needs_input_grad[1]
        dpre, dh0, dc0, dw_hr = backward_rec(
            dout, dh_n, dc_n, tuple(saved), cells, c0p, w_hh, w_hr, schedule, need_dh0=need_dh0
        )
        dx, dw_ih, dw_hh, dbias = common.weight_and_input_grads(
            backward_rec, dpre, x, w_ih, h0p, hidden, schedule, ctx.needs_input_grad[0]
        )
        workspace.give(dpre)  # nothing returned refers to it
        if not workspace.graph_kept():  # no later backward reads the saved buffers
            workspace.give_all(cells, *saved[1:], saved[0] if kept_xp else None)
        db = dbias if has_bias else None
        dh0 = schedule.batch_from_processing(dh0) if need_dh0 else None
        dc0 = schedule.batch_from_processing(dc0)
        return dx, dh0, dc0, dw_ih, dw_hh, db, db, dw_hr, None, None, None


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
    graph = workspace.records_graph(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)
    return LSTMFunction.apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, schedule, backend, graph)
