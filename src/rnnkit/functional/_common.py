"""Pieces every cell's autograd Function shares: the input projection before the time loop and
the gradients of the input and recurrent weights after it (one matrix product each)."""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.functional._gemm import ReusedWeight
from rnnkit.functional.schedule import Schedule


def project_inputs(
    x: Tensor, w_ih: Tensor, bias: Tensor | None, schedule: Schedule, out: Tensor | None = None
) -> Tensor:
    """``x W_ihᵀ + bias`` for all steps at once, in processing order: ``(T, B, I)`` → ``(T, B, G)``.

    With ``out`` (contiguous ``(T, B, G)``, a kept :mod:`_workspace` buffer) the result is
    written there by ``torch.addmm``. oneDNN's product is faster but has no ``out=``;
    ``LSTMFunction`` takes this path only for blocks too large for glibc to reuse, where a fresh
    block's page faults cost more than that.
    """
    steps, batch, features = x.shape
    if out is not None:
        rows = schedule.to_processing(x).reshape(steps * batch, features)  # permute x, not xp
        flat = out.view(steps * batch, -1)
        if bias is None:
            torch.mm(rows, w_ih.t(), out=flat)
        else:
            torch.addmm(bias, rows, w_ih.t(), out=flat)
        return out
    projected = ReusedWeight(w_ih, steps * batch, bias)(x.reshape(steps * batch, features))
    return schedule.to_processing(projected.view(steps, batch, -1))


def input_grads(
    dprojected: Tensor, x: Tensor, w_ih: Tensor, schedule: Schedule, needs_dx: bool
) -> tuple[Tensor | None, Tensor, Tensor]:
    """Gradients of x, W_ih and the input bias from ``∂L/∂(x W_ihᵀ + b)`` in processing order."""
    steps, batch, features = x.shape
    dproj = schedule.from_processing(dprojected).reshape(steps * batch, -1)  # (T·B, G)
    dx = None
    if needs_dx:
        dx = ReusedWeight(w_ih.t(), steps * batch)(dproj).view(steps, batch, features)
    dw_ih = dproj.t() @ x.reshape(steps * batch, features)  # Σ_t over all steps: (G, I)
    return dx, dw_ih, dproj.sum(0)


def input_grad(dprojected: Tensor, w_ih: Tensor, schedule: Schedule) -> Tensor:
    """∂L/∂x ``(T, B, I)`` in batch order from ``∂L/∂(x W_ihᵀ + b)`` in processing order (the
    product first, then the smaller result is put back in batch order)."""
    steps, batch, gates = dprojected.shape
    rows = dprojected.reshape(steps * batch, gates)
    dx = ReusedWeight(w_ih.t(), steps * batch)(rows).view(steps, batch, -1)
    return schedule.from_processing(dx)


def weight_and_input_grads(
    backward_rec, dpre: Tensor, x: Tensor, w_ih: Tensor, h0: Tensor, hidden: Tensor,
    schedule: Schedule, needs_dx: bool,
) -> tuple[Tensor | None, Tensor, Tensor, Tensor]:
    """dx (batch order, or None), ∂L/∂W_ih, ∂L/∂W_hh and the bias gradient from the gate
    pre-activation gradient dpre ``(T, B, G)`` (processing order), for a cell whose input and
    recurrent products share dpre (Elman, LSTM). Uses the backend's one-pass ``weight_grads``
    when ``backward_rec`` has one, with ∂L/∂x first: the weight gradients, written last, are
    still in cache when autograd adds them to ``.grad``."""
    fused = getattr(backward_rec, "weight_grads", None)
    if fused is None:
        dw_hh = recurrent_weight_grad(dpre, h0, hidden)
        dx, dw_ih, dbias = input_grads(dpre, x, w_ih, schedule, needs_dx)
        return dx, dw_ih, dw_hh, dbias
    dx = input_grad(dpre, w_ih, schedule) if needs_dx else None
    dw_ih, dw_hh, dbias = fused(dpre, schedule.to_processing(x), h0, hidden)
    return dx, dw_ih, dw_hh, dbias


def recurrent_weight_grad(dpre: Tensor, h0: Tensor, hidden: Tensor) -> Tensor:
    """``Σ_t dpre_tᵀ h_{t-1}`` with h_{-1} = h0, all in processing order: ``(G, P)``.

    Rows past a sequence's end have ``dpre = 0``, so they add nothing.
    """
    gates = dpre.shape[-1]
    first = dpre[0].t() @ h0
    if dpre.shape[0] == 1:
        return first
    rest_d = dpre[1:].reshape(-1, gates)
    rest_h = hidden[:-1].reshape(-1, hidden.shape[-1])
    return torch.addmm(first, rest_d.t(), rest_h)


def buffer(like: Tensor, shape: tuple[int, ...], ragged: bool) -> Tensor:
    """A per-step buffer; zero-filled when some rows stop early (their steps are never written)."""
    make = torch.zeros if ragged else torch.empty
    return make(shape, dtype=like.dtype, device=like.device)


def rows(n: int, *views: Tensor) -> tuple[Tensor, ...]:
    """The first ``n`` rows of each view (the views themselves when ``n`` covers them)."""
    if n == views[0].shape[0]:
        return views
    return tuple(view[:n] for view in views)


def carry(state: Tensor, first_rows: Tensor) -> Tensor:
    """``state`` with its first rows replaced by ``first_rows`` (all of it when they cover it)."""
    if first_rows.shape[0] == state.shape[0]:
        return first_rows
    state[: first_rows.shape[0]] = first_rows
    return state


def grad_or_zeros(grad: Tensor | None, like: Tensor) -> Tensor:
    return torch.zeros_like(like) if grad is None else grad


def doubled_block(weight: Tensor | None, block: int, blocks: int) -> Tensor | None:
    """A copy of ``weight`` (or a bias) with the rows of gate ``block`` (of ``blocks``) times
    two, so that ``σ`` of that gate's pre-activation is ``σ(2a)`` and ``tanh a = 2σ(2a) − 1``
    (:func:`two_x_minus_one`). The reference loops use this: PyTorch's CPU tanh costs several
    sigmoids per element (docs/benchmarks.md)."""
    if weight is None:
        return None
    size = weight.shape[0] // blocks
    out = weight.detach().clone()
    out[block * size : (block + 1) * size] *= 2
    return out


def two_x_minus_one(x: Tensor, out: Tensor, minus_one: Tensor) -> Tensor:
    """``2x − 1`` into ``out`` in one pass (``minus_one``: a 0-dim tensor like ``x``); with
    ``x = σ(2a)`` that is ``tanh a``."""
    return torch.add(minus_one, x, alpha=2, out=out)


def per_step_blocks(seq: Tensor, blocks: int) -> list[tuple[Tensor, ...]]:
    """``seq`` ``(T, B, k·H)`` as T tuples of k ``(B, H)`` views, made in bulk before a loop
    (slicing inside the loop costs as much as a small kernel)."""
    steps, batch, width = seq.shape
    per_block = (v.unbind(0) for v in seq.view(steps, batch, blocks, width // blocks).unbind(2))
    return list(zip(*per_block))
