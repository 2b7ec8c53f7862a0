r"""The textbook step of each cell, and the plain loop over time that runs it.

These are the primer's equations written once, as readably as torch allows, with autograd doing
the backward: the yardstick the fast code is measured against (the tests' reference loop and the
native backend's self-check), never the fast path itself. Shapes: x ``(B, I)`` (or ``(B, G)``
already projected, see below), h ``(B, P)``, c ``(B, H)``; weights as the modules hold them
(``w_ih`` ``(G, I)``, ``w_hh`` ``(G, P)``, G = blocks·H, see :mod:`rnnkit.functional.cells`).

``w_ih`` may be None: x then already holds ``W_ih x + b_ih`` (a backend's projected input), and
``b_ih`` should be None too. Either bias may be None (no bias).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["step_elman", "step_lstm", "step_gru", "run_steps", "lengths_from_batch_sizes"]


def _linear(x: Tensor, weight: Tensor | None, bias: Tensor | None) -> Tensor:
    """``x Wᵀ + b``; x itself where weight is None (already projected)."""
    out = x if weight is None else x @ weight.t()
    return out if bias is None else out + bias


def step_elman(x, h, w_ih, w_hh, b_ih, b_hh, nonlinearity: str = "tanh") -> Tensor:
    r"""Elman RNN: :math:`h_t = f(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})`, f = tanh or
    relu. Returns h_t ``(B, H)``."""
    a = _linear(x, w_ih, None) + h @ w_hh.t()  # (B, H)
    if b_ih is not None:
        a = a + b_ih
    if b_hh is not None:
        a = a + b_hh
    return torch.tanh(a) if nonlinearity == "tanh" else torch.relu(a)


def step_lstm(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr=None) -> tuple[Tensor, Tensor]:
    r"""LSTM, gates packed (i, f, g, o):

    .. math::
        \begin{aligned}
        (i, f, g, o) &= (\sigma, \sigma, \tanh, \sigma)(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1}
            + b_{hh}) \\
        c_t &= f \odot c_{t-1} + i \odot g \\
        h_t &= W_{hr}\,(o \odot \tanh c_t) \quad (\text{no } W_{hr} \text{ without projection})
        \end{aligned}

    Returns (h_t ``(B, P)``, c_t ``(B, H)``).
    """
    gates = _linear(x, w_ih, None) + h @ w_hh.t()  # (B, 4H)
    if b_ih is not None:
        gates = gates + b_ih
    if b_hh is not None:
        gates = gates + b_hh
    i, f, g, o = gates.chunk(4, dim=1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h_new = torch.sigmoid(o) * torch.tanh(c_new)
    if w_hr is not None:
        h_new = h_new @ w_hr.t()
    return h_new, c_new


def step_gru(x, h, w_ih, w_hh, b_ih, b_hh) -> Tensor:
    r"""GRU in torch's form, gates packed (r, z, n), ``b_hn`` inside the reset product:

    .. math::
        \begin{aligned}
        r &= \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr}) \\
        z &= \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz}) \\
        n &= \tanh(W_{in} x_t + b_{in} + r \odot (W_{hn} h_{t-1} + b_{hn})) \\
        h_t &= (1 - z) \odot n + z \odot h_{t-1}
        \end{aligned}

    Returns h_t ``(B, H)``.
    """
    x_r, x_z, x_n = _linear(x, w_ih, b_ih).chunk(3, dim=1)  # each (B, H)
    h_r, h_z, h_n = _linear(h, w_hh, b_hh).chunk(3, dim=1)
    r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return (1 - z) * n + z * h


def run_steps(
    step: Callable[..., Tensor | tuple[Tensor, ...]],
    x: Tensor,
    state: tuple[Tensor, ...],
    lengths: Sequence[int] | Tensor | None = None,
    reverse: bool = False,
) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """Run ``step(x_t, *state)`` over time with PackedSequence semantics.

    x ``(T, B, ·)``; state a tuple of ``(B, ·)``; lengths ``(B,)`` (all T if None). A sequence of
    length L takes steps 0 … L−1 (reverse: L−1 … 0) and keeps its state afterwards.
    Returns (history: per state ``(T, B, ·)``, zero past each sequence's end; final states).
    """
    steps, batch = x.shape[:2]
    lengths = torch.as_tensor([steps] * batch if lengths is None else lengths)
    history: list[tuple[Tensor, ...] | None] = [None] * steps
    for t in range(steps - 1, -1, -1) if reverse else range(steps):
        active = (t < lengths).unsqueeze(1).to(x.dtype)  # (B, 1)
        new = step(x[t], *state)
        new = new if isinstance(new, tuple) else (new,)
        state = tuple(active * n + (1 - active) * s for n, s in zip(new, state))
        history[t] = tuple(active * s for s in state)
    return tuple(torch.stack(values) for values in zip(*history)), state


def lengths_from_batch_sizes(batch_sizes: Sequence[int]) -> list[int]:
    """Per-sequence lengths from sorted batch sizes per step (``(3, 3, 2, 1)`` → ``[4, 3, 2]``)."""
    return [sum(1 for n in batch_sizes if n > row) for row in range(max(batch_sizes, default=0))]


def second_order(step: Callable[..., Tensor | tuple[Tensor, ...]], schedule, x: Tensor,
                 state: tuple[Tensor, ...], weights: tuple[Tensor | None, ...],
                 grad_outputs: tuple[Tensor, ...], needs: tuple[bool, ...]) -> tuple:
    """The backward of a layer as differentiable operations, for ``create_graph=True``
    (gradient penalties, Hessian-vector products): the layer is run again with the textbook
    step under autograd, and ``torch.autograd.grad`` of that run, which records its own graph,
    gives the gradients. Slower than the hand-written BPTT, which serves every first-order call.

    ``step(x_t, *state, *weights)``; x ``(T, B, I)`` and the states ``(B, ·)`` in batch order;
    ``grad_outputs`` for (output ``(T, B, ·)``, *final states); ``needs`` per input of
    ``(x, *state, *weights)``. Returns one gradient (or None) per input.
    """
    inputs = (x, *state, *weights)
    lengths = schedule.batch_from_processing(schedule.lengths.unsqueeze(1)).squeeze(1).cpu()
    wanted = [t for t, need in zip(inputs, needs, strict=True) if need and t is not None]
    with torch.enable_grad():
        history, finals = run_steps(lambda x_t, *s: step(x_t, *s, *weights), x, state, lengths,
                                    schedule.reverse)
        outputs = (history[0], *finals)
        grads = iter(torch.autograd.grad(outputs, wanted, grad_outputs, create_graph=True,
                                         allow_unused=True))
    return tuple(next(grads) if need and t is not None else None
                 for t, need in zip(inputs, needs, strict=True))
