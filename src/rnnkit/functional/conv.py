r"""Convolutional LSTM and GRU, one layer, with hand-written BPTT.

The convolutional LSTM of Shi et al. (2015) replaces the products of the LSTM by convolutions
over feature maps; the gates come from **one convolution over** ``[x_t, h_{t-1}]`` (the input and
the previous state stacked along the channels), with "same" padding so that every state keeps the
frame's height and width:

.. math::
    \begin{aligned}
    (i, f, g, o) &= (\sigma, \sigma, \tanh, \sigma)(W * [x_t, h_{t-1}] + b) \\
    c_t &= f \odot c_{t-1} + i \odot g \\
    h_t &= o \odot \tanh c_t
    \end{aligned}

(no peephole terms ``W_c ⊙ c``: the form most implementations use). The convolutional GRU keeps
rnnkit's GRU (torch's form, the reset gate applied after the recurrent convolution):

.. math::
    \begin{aligned}
    (a_r, a_z, a_n) &= W_x * x_t + b, \qquad (u_r, u_z, u_n) = W_h * h_{t-1} \\
    r &= \sigma(a_r + u_r), \quad z = \sigma(a_z + u_z), \quad n = \tanh(a_n + r \odot u_n) \\
    h_t &= (1 - z) \odot n + z \odot h_{t-1}
    \end{aligned}

with ``W = [W_x | W_h]`` one weight over ``[x_t, h_{t-1}]`` as well.

Layout. ``weight`` ``(G·H, C + H, kh, kw)`` (G = 4 gate blocks i, f, g, o for the LSTM, 3 for the
GRU r, z, n; C input channels, H hidden channels; odd kernel sizes, padding ``k // 2``), ``bias``
``(G·H,)`` or None. Sequences are time-major ``(T, B, C, Y, X)`` (Y, X the frame's height and
width); states ``(B, H, Y, X)``.

How it is computed. The convolution over ``[x_t, h_{t-1}]`` is the sum of one over ``x_t`` with
``W_x = W[:, :C]`` and one over ``h_{t-1}`` with ``W_h = W[:, C:]``; each step sums the two
and writes the gate activations straight into the buffer saved for the backward (see
:func:`_gates_and_input`). The LSTM's g gate and ``tanh c_t`` are computed as
``tanh a = 2σ(2a) − 1`` (PyTorch's CPU tanh costs several sigmoids per element): the g rows of
the weight are doubled for the forward, so one sigmoid covers all four gates. With
``zero_start`` (the layer's default state of zeros)
the first step's state convolution is skipped (``W_h * 0 = 0``), and so are its share of the
backward. The backward loop walks ``t = T−1 … 0`` carrying ``∂L/∂h`` and ``∂L/∂c``, computes
the pointwise gate gradients ``δ_t = ∂L/∂(pre-activations)`` from the saved gates (and the
saved ``tanh c_t``), and sends ``δ_t`` back through ``W_h`` (a transposed convolution, run as a
convolution with the kernel turned 180°). After the loop, ``∂L/∂W_x`` and the bias gradient are
one batched convolution backward (for few input channels one batched matrix product, see
:func:`_unfolds`), ``∂L/∂W_h`` another (``aten.convolution_backward``, what
:func:`torch.nn.grad.conv2d_weight` calls, with all T·B steps stacked in the batch), and
``∂L/∂x`` one batched transposed convolution. Every sequence the layer creates is stored
channels-last (see "shared pieces" below).

What runs where. On the CPU in float32, 3 × 3 and 5 × 5 convolutions with many channels run
by Winograd's F(4 × 4, k × k) (:mod:`~rnnkit.functional._winograd`: 36 products per 4 × 4
block and channel pair instead of 144, 5 × 5: 64 instead of 400; PyTorch's CPU ``conv2d`` uses
oneDNN's direct algorithm): the loops' per-step convolutions (the LSTM's over
``[x_t, h_{t-1}]``, the GRU's over ``h_{t-1}``, and the backward's ``δ_t ↦ ∂L/∂h_{t-1}``)
where ``C_in ≥ 64`` and ``C_out ≥ 64`` (5 × 5: 32 and 32; :func:`_winograd_plan`), the σ of
the LSTM's gates applied on the way into the saved gates; and the weight gradients, step by
step (``∂L/∂W`` of the LSTM, ``∂L/∂W_x`` and ``∂L/∂W_h`` of the GRU) where ``C_in ≥ 16``
and ``C_out ≥ 64`` (:func:`_winograd_weight_grad`; oneDNN's weight gradient ran at half the
speed of its forward here), both only for frames whose sides are multiples of 4. Everything
else (``∂L/∂x``, the GRU's per-step input convolution, the first step's input-only
convolution with ``zero_start``, other kernel sizes, dtypes and devices, and the few-channel
cases) stays on ``conv2d`` / ``aten.convolution_backward`` as
described above. :data:`WINOGRAD` ("auto", "on", "off") switches it; both give the same sums
up to rounding (float32: about 5e-6 of the output's scale against 2e-6; 5 × 5: 1e-5).

Memory. The large sequences the layer keeps only for itself (the saved gates, cells and
``tanh c_t``, or the GRU's gates and ``W_hn * h_{t-1}``; the backward's gate gradients) are
:mod:`~rnnkit.functional._workspace` buffers, reused from one call to the next: freshly
allocated, blocks this large cost a page fault per 4 KB on every call. What a call returns (its
outputs and final states) is never such a buffer. Variable lengths use
:class:`~rnnkit.functional.schedule.Schedule`'s processing order, as the other cells: at step t
only the first ``batch_sizes[t]`` rows run.

A second-order backward (``create_graph=True``) runs the layer again with the textbook steps
below under autograd (:func:`run_conv_steps`) and differentiates that.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as nnf

from rnnkit.functional import _common as common
from rnnkit.functional import _winograd as winograd
from rnnkit.functional import _workspace as workspace
from rnnkit.functional.schedule import Schedule

__all__ = [
    "conv_lstm",
    "conv_gru",
    "ConvLSTMFunction",
    "ConvGRUFunction",
    "step_conv_lstm",
    "step_conv_gru",
    "run_conv_steps",
]


# ---------------------------------------------------------------------- the textbook steps


def _padding(weight: Tensor) -> tuple[int, int]:
    return weight.shape[-2] // 2, weight.shape[-1] // 2


def step_conv_lstm(x, h, c, weight, bias) -> tuple[Tensor, Tensor]:
    """One ConvLSTM step as the equations read: x ``(B, C, Y, X)``, h and c ``(B, H, Y, X)``.
    Returns (h_t, c_t)."""
    gates = nnf.conv2d(torch.cat([x, h], dim=1), weight, bias, padding=_padding(weight))
    i, f, g, o = gates.chunk(4, dim=1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c_new), c_new


def step_conv_gru(x, h, weight, bias) -> Tensor:
    """One ConvGRU step as the equations read. Returns h_t."""
    channels = x.shape[1]
    pad = _padding(weight)
    a_r, a_z, a_n = nnf.conv2d(x, weight[:, :channels], bias, padding=pad).chunk(3, dim=1)
    u_r, u_z, u_n = nnf.conv2d(h, weight[:, channels:], padding=pad).chunk(3, dim=1)
    r, z = torch.sigmoid(a_r + u_r), torch.sigmoid(a_z + u_z)
    n = torch.tanh(a_n + r * u_n)
    return (1 - z) * n + z * h


def run_conv_steps(step, x: Tensor, state: tuple[Tensor, ...], lengths=None
                   ) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Run ``step(x_t, *state)`` over x ``(T, B, C, Y, X)`` with PackedSequence semantics (a
    sequence of length L takes steps 0 … L−1 and keeps its state afterwards; its outputs past L
    are zero). Returns (the hidden states ``(T, B, H, Y, X)``, the final states)."""
    steps, batch = x.shape[:2]
    lengths = torch.as_tensor([steps] * batch if lengths is None else lengths)
    outputs = []
    for t in range(steps):
        active = (t < lengths).to(x.dtype).view(batch, 1, 1, 1)
        new = step(x[t], *state)
        new = new if isinstance(new, tuple) else (new,)
        state = tuple(active * n + (1 - active) * s for n, s in zip(new, state))
        outputs.append(active * state[0])
    return torch.stack(outputs), state


# ---------------------------------------------------------------------- shared pieces
#
# Memory layout. Every sequence the layer creates (gates, cells, states and their gradients) is
# stored with the channels innermost, ``(T, B, Y, X, C)`` in memory, and used through a
# ``(T, B, C, Y, X)`` view: then each step's ``(B, C, Y, X)`` slice is a channels-last tensor
# (``torch.channels_last``), the layout oneDNN convolves without reordering its input and output
# on every call (the per-step convolutions ran 10–30 % faster so, one thread; the layer's
# outputs are these views). The sums are the same in either layout.

_CL = torch.channels_last


def _empty_last(like: Tensor, shape, zeros: bool) -> Tensor:
    """A new ``(T, B, C, Y, X)`` tensor stored channels-last; zeros if ``zeros`` (ragged
    batches: rows that stop early must read as zero)."""
    steps, batch, channels, height, width = shape
    make = like.new_zeros if zeros else like.new_empty
    return make(steps, batch, height, width, channels).permute(0, 1, 4, 2, 3)


def _take_last(like: Tensor, shape, zeros: bool) -> Tensor:
    """As :func:`_empty_last`, from a kept :mod:`_workspace` buffer: for what the layer keeps
    only for itself (saved for its backward, or scratch of the backward), never for what it
    returns. Hand it back with ``workspace.give`` once nothing reads it any more."""
    steps, batch, channels, height, width = shape
    buf = workspace.take((steps, batch, height, width, channels), like, zero=zeros)
    return buf.permute(0, 1, 4, 2, 3)


def _shares(a: Tensor, b: Tensor) -> bool:
    """Whether ``a`` lies in ``b``'s memory (a view of it)."""
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def _phys(seq: Tensor) -> Tensor:
    """The ``(T, B, Y, X, C)`` storage order of a channels-last ``(T, B, C, Y, X)`` view."""
    return seq.permute(0, 1, 3, 4, 2)


def _proc(schedule: Schedule, seq: Tensor) -> Tensor:
    """``(T, B, ...)`` in batch order → processing order (any layout)."""
    return schedule.to_processing(seq.reshape(*seq.shape[:2], -1)).view(seq.shape)


def _unproc_last(schedule: Schedule, seq: Tensor) -> Tensor:
    phys = _phys(seq)
    return schedule.from_processing(phys.flatten(2)).view(phys.shape).permute(0, 1, 4, 2, 3)


def _state_in(schedule: Schedule, state: Tensor) -> Tensor:
    """A ``(B, H, Y, X)`` state in batch order → processing order, channels-last."""
    moved = schedule.batch_to_processing(state.reshape(state.shape[0], -1)).view(state.shape)
    return moved.contiguous(memory_format=_CL)


def _state_out(schedule: Schedule, state: Tensor) -> Tensor:
    """A channels-last ``(B, H, Y, X)`` state in processing order → batch order."""
    if schedule.order is None:
        return state
    phys = state.permute(0, 2, 3, 1)
    return schedule.batch_from_processing(phys.flatten(1)).view(phys.shape).permute(0, 3, 1, 2)


def _last(schedule: Schedule, seq: Tensor) -> Tensor:
    """State after each row's last step, ``(B, ...)`` in processing order (channels-last)."""
    phys = _phys(seq)
    return schedule.last_steps(phys.flatten(2)).view(phys.shape[1:]).permute(0, 3, 1, 2)


def _unfolds(weight: Tensor, channels: int) -> bool:
    """Whether the backward's batched convolutions with the input (``∂L/∂x`` and ``∂L/∂W_x``)
    run as unfold / fold + matrix products (few input channels) rather than as oneDNN's
    convolution backward. With C·kh·kw ≤ 32 (a grey frame: C = 1) oneDNN ran far below its
    usual speed here (160 frames of 16 × 16, 1 ↔ 96 or 128 channels, 3 × 3, one thread, on a
    shared machine: ∂L/∂x 14.6–45 ms against 4.4–4.8 ms for a matrix product + fold; ∂L/∂W_x
    8.6–32 ms against 4.8–5.3 ms for unfold + a batched product); with more channels oneDNN
    is the faster. Both compute the same sums. (The forward runs ``conv2d`` per step either
    way.)"""
    return channels * weight.shape[2] * weight.shape[3] <= 32


def _gates_and_input(x: Tensor, gates: int, schedule: Schedule) -> tuple[Tensor, Tensor]:
    """The gates' buffer, channels-last ``(T, B, G·H, Y, X)`` (a kept :mod:`_workspace`
    buffer, uninitialised: it becomes the saved gates), and the input in processing order,
    channels-last ``(T, B, C, Y, X)``, for the loop's per-step ``conv2d`` over ``x_t`` (the
    LSTM's over ``[x_t, h_{t-1}]``; the GRU's apart from its state's, whose n block it needs
    alone). The loop writes the gate activations straight into the buffer: one batched
    ``conv2d`` over all steps first would return a fresh block of the buffer's size (page faults,
    or a copy), and ran no faster (one thread: 3.6 against 4.6 ms for 160 frames 1 → 128
    channels, 8.5 against 9.9 ms for 80 frames 16 → 256 channels, 16 × 16, with the copy)."""
    steps, batch, channels, height, width = x.shape
    buf = workspace.take((steps, batch, height, width, gates), x)  # (T, B, Y, X, G·H)
    flat = _proc(schedule, x).flatten(0, 1).contiguous(memory_format=_CL)
    return buf.permute(0, 1, 4, 2, 3), flat.view(x.shape)


def _input_grad(dxp: Tensor, x: Tensor, w_x: Tensor) -> Tensor:
    """``∂L/∂x`` from ``dxp = ∂L/∂(W_x * x + b)``, channels-last ``(T·B, G·H, Y, X)`` in batch
    order: the transposed convolution, as matmul + fold for few channels (see
    :func:`_unfolds`)."""
    if _unfolds(w_x, x.shape[2]):
        frames, gates = dxp.shape[:2]
        rows = dxp.permute(0, 2, 3, 1).reshape(-1, gates)  # (N·Y·X, G·H)
        # (C·kh·kw, N·Y·X): the product with the long side as its columns ran twice as fast
        # as the (N·Y·X, C·kh·kw) one for 3 × 3 kernels (one thread)
        cols = torch.mm(w_x.reshape(gates, -1).t(), rows.t())
        cols = cols.view(cols.shape[0], frames, -1).transpose(0, 1)  # (N, C·kh·kw, Y·X)
        return nnf.fold(cols, x.shape[3:], w_x.shape[2:], padding=_padding(w_x)).view(x.shape)
    common = ([1, 1], list(_padding(w_x)), [1, 1], False, [0, 0], 1)
    dx, _, _ = torch.ops.aten.convolution_backward(
        dxp, x.flatten(0, 1).contiguous(memory_format=_CL), w_x.contiguous(memory_format=_CL),
        None, *common, [True, False, False])
    return dx.contiguous().view(x.shape)


def _adjoint(weight: Tensor) -> Tensor:
    """The kernel whose convolution (same padding) is the transposed convolution with
    ``weight``: in and out channels swapped, the kernel turned 180° (channels-last, as the
    states it convolves). ``conv2d`` with it runs on the same fast path as the forward;
    ``conv_transpose2d`` measured slower here for 5 × 5 kernels (120 against 55 ms in one run
    on a loaded machine)."""
    return weight.transpose(0, 1).flip(2, 3).contiguous(memory_format=_CL)


#: Where 3 × 3 and 5 × 5 convolutions run by Winograd (:mod:`._winograd`): the loops' per-step
#: ones and the weight gradients. ``"auto"``: float32 on the CPU where it measured faster (see
#: :data:`WINOGRAD_MIN`); ``"on"``: every 3 × 3 / 5 × 5 one on the CPU in float32 or float64,
#: whatever the size (for tests); ``"off"``: ``conv2d`` and ``aten.convolution_backward`` as
#: before. Both compute the same sums, up to rounding.
WINOGRAD = "auto"
#: "auto", per kernel size: the least (C_in, C_out) of the per-step convolutions (3 × 3: with
#: 32 channels it won alone against ``conv2d`` but lost inside the layers; 5 × 5 won there) …
WINOGRAD_MIN = {3: (64, 64), 5: (32, 32)}
#: … and of the weight gradients (oneDNN's ran at about half its forward speed here)
WINOGRAD_MIN_GRAD = {3: (16, 64), 5: (16, 64)}


def _winograd_ok(weight: Tensor, batch: int, height: int, width: int, grad: bool = False
                 ) -> bool:
    """Whether a convolution with ``weight`` ``(C_out, C_in, kh, kw)`` runs by Winograd
    (:data:`WINOGRAD`): "auto" asks float32 on the CPU, a 3 × 3 or 5 × 5 kernel, channels as
    :data:`WINOGRAD_MIN` (``grad``: :data:`WINOGRAD_MIN_GRAD`) and a frame whose height and
    width are multiples of 4 (whole 4 × 4 tiles: with partial ones, 10 × 10 frames, 3 × 3
    gained 1.0–1.3× at most)."""
    kernel = weight.shape[-1]
    if (WINOGRAD == "off" or weight.device.type != "cpu" or weight.shape[-2] != kernel
            or kernel not in winograd.KERNELS or batch == 0):
        return False
    if WINOGRAD == "on":
        return weight.dtype in (torch.float32, torch.float64)
    out_ch, in_ch = weight.shape[:2]
    min_in, min_out = (WINOGRAD_MIN_GRAD if grad else WINOGRAD_MIN)[kernel]
    return (weight.dtype == torch.float32 and in_ch >= min_in and out_ch >= min_out
            and height % 4 == 0 and width % 4 == 0)


def _winograd_plan(weight: Tensor, bias: Tensor | None, batch: int, height: int,
                   width: int) -> winograd.Plan | None:
    """A Winograd plan (:class:`._winograd.Plan`) for the loop's per-step convolution with
    ``weight`` ``(C_out, C_in, k, k)``, or None for ``conv2d`` (:func:`_winograd_ok`;
    docs/frames.md, "Speed")."""
    if not _winograd_ok(weight, batch, height, width):
        return None
    out_ch, in_ch, kernel = weight.shape[:3]
    return winograd.Plan(in_ch, out_ch, batch, height, width, weight,
                         winograd.transform_weight(weight), bias, kernel)


def _winograd_weight_grad(weight: Tensor, dy: Tensor, schedule: Schedule, first: int,
                          x: Tensor | None = None, h0: Tensor | None = None,
                          hidden: Tensor | None = None) -> Tensor | None:
    """``∂L/∂W`` for ``weight`` ``(C_out, C_in, k, k)`` by Winograd (:meth:`._winograd.Plan.
    add_weight_grad`), step by step over ``t = first … T−1`` (the first ``batch_sizes[t]``
    rows of each), or None where :func:`_winograd_ok` (:data:`WINOGRAD_MIN_GRAD`) says no.
    What was convolved at step t: ``x_t`` (x in batch order), ``h_{t-1}`` (h0, then
    ``hidden[t-1]``, in processing order) or both stacked along the channels, as given;
    ``dy``: ∂L/∂(that convolution), ``(T, B, C_out, Y, X)`` in processing order. (oneDNN's
    weight gradient ran at about half the speed of its forward convolution here, so this
    gains even at 16 input channels; docs/frames.md, "Speed".)"""
    steps, batch, _, height, width = dy.shape
    if not _winograd_ok(weight, batch, height, width, grad=True):
        return None
    out_ch, in_ch, kernel = weight.shape[:3]
    x_proc = None if x is None else _proc(schedule, x)
    plan = winograd.Plan(in_ch, out_ch, batch, height, width, weight, kernel=kernel)
    acc = workspace.take((plan.positions, in_ch, out_ch), weight, zero=True)
    for t in range(first, steps):
        n = schedule.batch_sizes[t]
        frames, start = plan.input(n), 0
        parts = ([] if x_proc is None else [x_proc[t]]) + (
            [] if hidden is None else [h0 if t == 0 else hidden[t - 1]])
        for part in parts:
            frames[:, start:start + part.shape[1]] = part[:n]
            start += part.shape[1]
        plan.add_weight_grad(n, dy[t, :n], acc)
    plan.release()
    grad = winograd.weight_grad(acc)
    workspace.give(acc)
    return grad


def _sigmoid_into(src: Tensor, dst: Tensor) -> None:
    torch.sigmoid(src, out=dst)


def _previous(h0: Tensor, hidden: Tensor, zero_start: bool) -> Tensor:
    """``h_{t-1}`` for the steps that can add to ``∂L/∂W_h``, ``(T', B, H, Y, X)`` channels-last:
    h0, then the states but the last; without h0 when it is known to be zero (``zero_start``)."""
    if zero_start:
        return hidden[:-1]
    phys = torch.cat([h0.permute(0, 2, 3, 1).unsqueeze(0), _phys(hidden)[:-1]])
    return phys.permute(0, 1, 4, 2, 3)


def _input_and_weight_grads(dxp_proc: Tensor, dhh_proc: Tensor, x: Tensor, h_prev: Tensor,
                            weight: Tensor, has_bias: bool, schedule: Schedule, need_x: bool,
                            dw_x: Tensor | None = None, dw_h: Tensor | None = None):
    """After the loop, over all T·B steps at once: ``∂L/∂W_x`` and ``∂L/∂b`` from one batched
    convolution backward (few input channels: a batched product of the unfolded input with
    δ, see :func:`_unfolds`), ``∂L/∂W_h`` from another (``∂L/∂W`` = ``[∂L/∂W_x | ∂L/∂W_h]``),
    ``∂L/∂x`` from one batched transposed convolution (:func:`_input_grad`).

    dxp_proc: ∂L/∂(W_x * x + b), dhh_proc: ∂L/∂(W_h * h_{t-1}), both channels-last
    ``(T, B, G·H, Y, X)`` in processing order (the same tensor for the LSTM); x in batch order,
    h_prev ``(T', B, H, Y, X)`` in processing order, where T' ≤ T counts the last steps: the
    steps whose ``h_{t-1}`` is known to be zero (an initial state of zeros) add nothing to
    ``∂L/∂W_h`` and are left out. ``aten.convolution_backward`` is what
    ``torch.nn.grad.conv2d_weight`` calls. ``dw_x`` / ``dw_h`` when already computed (by
    Winograd, :func:`_winograd_weight_grad`); the bias gradient is then a plain sum.
    """
    channels = x.shape[2]
    pad = list(_padding(weight))
    dxp = _unproc_last(schedule, dxp_proc).flatten(0, 1)  # batch order, (T·B, G·H, Y, X)
    w_x = weight[:, :channels].contiguous(memory_format=_CL)
    w_h = weight[:, channels:].contiguous(memory_format=_CL)
    common = ([1, 1], pad, [1, 1], False, [0, 0], 1)
    if dw_x is not None:
        db = dxp.sum((0, 2, 3)) if has_bias else None
    elif _unfolds(w_x, channels):  # Σ_n cols_n · δ_n: a batched product (oneDNN's weight
        # gradient ran at a fraction of its usual speed with so few input channels)
        rows = dxp.permute(0, 2, 3, 1).reshape(dxp.shape[0], -1, dxp.shape[1])  # (N, Y·X, G·H)
        cols = nnf.unfold(x.flatten(0, 1), w_x.shape[2:], padding=pad)  # (N, C·kh·kw, Y·X)
        dw_x = torch.matmul(cols, rows).sum(0).t().reshape(w_x.shape)
        db = rows.reshape(-1, rows.shape[-1]).sum(0) if has_bias else None
    else:
        _, dw_x, db = torch.ops.aten.convolution_backward(
            dxp, x.flatten(0, 1).contiguous(memory_format=_CL), w_x,
            [weight.shape[0]] if has_bias else None, *common, [False, True, has_bias])
    if dw_h is None and len(h_prev):
        dhh = dhh_proc[len(dhh_proc) - len(h_prev):]
        _, dw_h, _ = torch.ops.aten.convolution_backward(
            dhh.flatten(0, 1), h_prev.flatten(0, 1), w_h, None, *common, [False, True, False])
    elif dw_h is None:
        dw_h = torch.zeros_like(w_h)
    dx = _input_grad(dxp, x, w_x) if need_x else None
    return dx, torch.cat([dw_x, dw_h], dim=1).contiguous(), db


def _batch_lengths(schedule: Schedule) -> Tensor:
    return schedule.batch_from_processing(schedule.lengths.unsqueeze(1)).squeeze(1).cpu()


def _second_order(step, schedule: Schedule, x, states, weight, bias, grads, needs):
    """The backward as differentiable operations (``create_graph=True``): the textbook loop
    under autograd, differentiated with a graph of its own."""
    inputs = (x, *states, weight, bias)
    wanted = [t for t, need in zip(inputs, needs) if need and t is not None]
    with torch.enable_grad():
        out, finals = run_conv_steps(lambda x_t, *s: step(x_t, *s, weight, bias), x, states,
                                     _batch_lengths(schedule))
        found = iter(torch.autograd.grad((out, *finals), wanted, grads, create_graph=True,
                                         allow_unused=True))
    return tuple(next(found) if need and t is not None else None
                 for t, need in zip(inputs, needs))


def _grad(grad: Tensor | None, like: Tensor) -> Tensor:
    return torch.zeros_like(like) if grad is None else grad


# ---------------------------------------------------------------------- ConvLSTM


class ConvLSTMFunction(torch.autograd.Function):
    """One ConvLSTM layer over a whole sequence with hand-written BPTT (see the module).

    What it saves for the backward (the gates, the cells, ``tanh c_t``) and the backward's
    ``∂L/∂gates`` are :mod:`_workspace` buffers, as :class:`rnnkit.functional.lstm.LSTMFunction`'s:
    ``∂L/∂gates`` is handed back when the backward is done with it, the saved ones after the
    backward (unless autograd keeps the graph for another one) or at once when no graph is
    recorded (``graph`` False), so the next call reuses them instead of faulting in fresh pages.
    What it returns (the outputs, h_n, c_n) is never such a buffer."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(ctx, x, h0, c0, weight, bias, schedule, zero_start=False, graph=True):
        steps, batch, channels = x.shape[:3]
        size = weight.shape[0] // 4
        pad = _padding(weight)
        # the g rows doubled: σ over all four blocks at once, then tanh a = 2σ(2a) − 1 (PyTorch's
        # CPU tanh costs several sigmoids per element); tanh c_t the same way
        w_in, b_in = common.doubled_block(weight, 2, 4), common.doubled_block(bias, 2, 4)
        w_x = w_in[:, :channels].contiguous(memory_format=_CL)
        w_in = w_in.contiguous(memory_format=_CL)
        gates, x_steps = _gates_and_input(x, weight.shape[0], schedule)
        state_shape = (steps, batch, size, *x.shape[3:])
        ragged = schedule.ragged
        cells = _take_last(x, state_shape, ragged)
        tanh_cells = _take_last(x, state_shape, ragged)  # kept for the backward
        hidden = _empty_last(x, state_shape, ragged)  # returned: never a kept buffer
        h0p, c0p = _state_in(schedule, h0), _state_in(schedule, c0)
        h_prev, c_prev = h0p, c0p
        minus_one = x.new_full((), -1.0)
        plan = _winograd_plan(w_in, b_in, batch, *x.shape[3:])  # or conv2d
        if plan is None:
            xh_buf = x.new_empty(batch, *x.shape[3:], channels + size).permute(0, 3, 1, 2)
        for t, n in enumerate(schedule.batch_sizes):
            pre = gates[t, :n]
            if (t or not zero_start) and plan is not None:  # [x_t, h_{t-1}] into its input
                xh = plan.input(n)
                xh[:, :channels] = x_steps[t, :n]
                xh[:, channels:] = h_prev[:n]
                plan.run(n, pre, _sigmoid_into)  # σ on the way into the saved gates
            else:
                if t or not zero_start:  # one conv2d over [x_t, h_{t-1}] (ran 10–20 % faster
                    # than two, summed); W_h * 0 = 0
                    xh = torch.cat([x_steps[t, :n], h_prev[:n]], dim=1, out=xh_buf[:n])
                    u = nnf.conv2d(xh, w_in, b_in, padding=pad)
                else:
                    u = nnf.conv2d(x_steps[t, :n], w_x, b_in, padding=pad)
                torch.sigmoid(u, out=pre)
            i, f, g, o = pre.chunk(4, dim=1)
            common.two_x_minus_one(g, g, minus_one)  # tanh of the g pre-activation
            c = torch.mul(f, c_prev[:n], out=cells[t, :n]).addcmul_(i, g)
            tanh_c = torch.mul(c, 2, out=tanh_cells[t, :n]).sigmoid_()
            common.two_x_minus_one(tanh_c, tanh_c, minus_one)
            torch.mul(o, tanh_c, out=hidden[t, :n])
            h_prev, c_prev = hidden[t], cells[t]
        if plan is not None:
            plan.release()
        h_n = _state_out(schedule, _last(schedule, hidden))
        c_n = _state_out(schedule, _last(schedule, cells))
        if _shares(c_n, cells):  # a view of a buffer that is handed back
            c_n = c_n.clone()
        if graph:
            ctx.save_for_backward(x, h0, c0, weight, bias, h0p, c0p, gates, cells, tanh_cells,
                                  hidden)
            ctx.schedule, ctx.zero_start = schedule, zero_start
        else:
            workspace.give_all(gates, cells, tanh_cells)
        return _unproc_last(schedule, hidden), h_n, c_n

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, dout, dh_n, dc_n):
        x, h0, c0, weight, bias, h0p, c0p, gates, cells, tanh_cells, hidden = ctx.saved_tensors
        schedule = ctx.schedule
        need = ctx.needs_input_grad
        if torch.is_grad_enabled():  # create_graph=True
            grads = (_grad(dout, hidden), _grad(dh_n, h0), _grad(dc_n, c0))
            return (*_second_order(step_conv_lstm, schedule, x, (h0, c0), weight, bias, grads,
                                   need[:5]), None, None, None)
        size = weight.shape[0] // 4
        batch = x.shape[1]
        pad = _padding(weight)
        w_back = _adjoint(weight[:, x.shape[2]:])  # δ_t ↦ ∂L/∂h_{t-1}
        dout = _phys(_proc(schedule, _grad(dout, hidden)))  # (T, B, Y, X, H), any strides
        dh = _state_in(schedule, _grad(dh_n, h0)).clone()  # ∂L/∂h carried back from t+1
        dc = _state_in(schedule, _grad(dc_n, c0)).clone()  # ∂L/∂c carried back from t+1
        dgates = _take_last(gates, gates.shape, schedule.ragged)
        # the pointwise work on the (…, Y, X, channels) storage order: contiguous slices, and
        # the three gate blocks that take ∂L/∂c_t multiplied by it in one broadcast product
        gates_p, dgates_p, tanh_p, cells_p = map(_phys, (gates, dgates, tanh_cells, cells))
        dc_p = dc.permute(0, 2, 3, 1)  # (B, Y, X, H)
        one = gates.new_ones(())
        plan = _winograd_plan(w_back, None, batch, *x.shape[3:])  # or conv2d
        for t in reversed(range(schedule.steps)):
            n = schedule.batch_sizes[t]
            pre, dpre = gates_p[t, :n], dgates_p[t, :n]  # (n, Y, X, 4H)
            i, f, g, o = pre.chunk(4, dim=-1)
            d_i, d_f, d_g, d_o = dpre.chunk(4, dim=-1)
            tanh_c = tanh_p[t, :n]
            c_prev = c0p.permute(0, 2, 3, 1)[:n] if t == 0 else cells_p[t - 1, :n]
            dc_t = dc_p[:n]
            dh_t = torch.add(dh.permute(0, 2, 3, 1)[:n], dout[t, :n])  # from output t, state t+1
            torch.addcmul(pre, pre, pre, value=-1, out=dpre)  # σ' = s − s² (i, f, o)
            torch.addcmul(one, g, g, value=-1, out=d_g)  # tanh' = 1 − g²
            d_o.mul_(dh_t).mul_(tanh_c)
            dh_t.mul_(o)  # ∂L/∂(tanh c_t)
            dc_t.add_(dh_t)
            dc_t.addcmul_(dh_t.mul_(tanh_c), tanh_c, value=-1)  # ∂L/∂c_t: + (1 − tanh² c_t) ⋅
            d_i.mul_(g)
            d_f.mul_(c_prev)
            d_g.mul_(i)
            dpre[..., : 3 * size].unflatten(-1, (3, size)).mul_(dc_t.unsqueeze(-2))  # i, f, g
            dc_t.mul_(f)  # → ∂L/∂c_{t-1}
            if (t or need[1]) and plan is not None:  # ∂L/∂h_{t-1}, into dh (read above)
                plan.input(n).copy_(dgates[t, :n])
                plan.run(n, dh[:n])
            elif t or need[1]:  # ∂L/∂h_{t-1}; for t = 0 only when h0 wants it
                back = nnf.conv2d(dgates[t, :n], w_back, padding=pad)
                if n == batch:
                    dh = back
                else:
                    dh[:n] = back
        if plan is not None:
            plan.release()
        h_prev = _previous(h0p, hidden, ctx.zero_start)
        # ∂L/∂W over [x_t, h_{t-1}] by Winograd where it pays (h0p is zero with zero_start)
        dw = _winograd_weight_grad(weight, dgates, schedule, 0, x, h0p, hidden)
        dw_x, dw_h = (None, None) if dw is None else (dw[:, : x.shape[2]], dw[:, x.shape[2]:])
        dx, dweight, dbias = _input_and_weight_grads(dgates, dgates, x, h_prev, weight,
                                                     bias is not None, schedule, need[0],
                                                     dw_x, dw_h)
        workspace.give(dgates)  # nothing returned refers to it
        if not workspace.graph_kept():  # no later backward reads the saved buffers
            workspace.give_all(gates, cells, tanh_cells)
        dh0 = _state_out(schedule, dh) if need[1] else None
        return dx, dh0, _state_out(schedule, dc), dweight, dbias, None, None, None


def conv_lstm(x: Tensor, h0: Tensor, c0: Tensor, weight: Tensor, bias: Tensor | None,
              schedule: Schedule, zero_start: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """One ConvLSTM layer: x ``(T, B, C, Y, X)``, h0 and c0 ``(B, H, Y, X)``, weight
    ``(4H, C + H, kh, kw)``, bias ``(4H,)`` or None → (output ``(T, B, H, Y, X)``, h_n, c_n), in
    batch order. ``zero_start=True`` promises that h0 is all zeros (the layer's default
    state): the first step's state convolution and its share of the backward are skipped."""
    graph = workspace.records_graph(x, h0, c0, weight, bias)
    return ConvLSTMFunction.apply(x, h0, c0, weight, bias, schedule, zero_start, graph)


# ---------------------------------------------------------------------- ConvGRU


class ConvGRUFunction(torch.autograd.Function):
    """One ConvGRU layer over a whole sequence with hand-written BPTT (see the module). Its
    saved gates, ``W_hn * h_{t-1}`` and ``h_{t-1} − n_t`` and the backward's two gradient
    sequences are :mod:`_workspace` buffers, handed back as :class:`ConvLSTMFunction`'s. n is
    computed as ``tanh a = 2σ(2a) − 1`` (see the module)."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(ctx, x, h0, weight, bias, schedule, zero_start=False, graph=True):
        steps, batch, channels = x.shape[:3]
        size = weight.shape[0] // 3
        pad = _padding(weight)
        w_h = weight[:, channels:].contiguous(memory_format=_CL)
        w_x = weight[:, :channels].contiguous(memory_format=_CL)
        gates, x_steps = _gates_and_input(x, weight.shape[0], schedule)  # becomes (r, z, n)
        state_shape = (steps, batch, size, *x.shape[3:])
        ragged = schedule.ragged
        hn_conv = _take_last(x, state_shape, ragged or zero_start)  # W_hn * h_{t-1}
        h_minus_n = _take_last(x, state_shape, ragged)  # h_{t-1} − n_t, for ∂L/∂z
        hidden = _empty_last(x, state_shape, ragged)  # returned: never a kept buffer
        h0p = _state_in(schedule, h0)
        h_prev = h0p
        minus_one = x.new_full((), -1.0)
        plan = _winograd_plan(w_h, None, batch, *x.shape[3:])  # or conv2d
        if plan is not None:  # W_h * h_{t-1} goes here
            u_buf = workspace.take((batch, *x.shape[3:], weight.shape[0]), x).permute(0, 3, 1, 2)
        for t, n in enumerate(schedule.batch_sizes):
            pre = gates[t, :n]
            r, z, new = pre.chunk(3, dim=1)
            a = nnf.conv2d(x_steps[t, :n], w_x, bias, padding=pad)  # W_x * x_t + b
            if t or not zero_start:
                if plan is not None:
                    plan.input(n).copy_(h_prev[:n])
                    u = plan.run(n, u_buf[:n])
                else:
                    u = nnf.conv2d(h_prev[:n], w_h, padding=pad)
                hn_conv[t, :n] = u[:, 2 * size :]
                torch.add(a[:, : 2 * size], u[:, : 2 * size], out=pre[:, : 2 * size]).sigmoid_()
                torch.addcmul(a[:, 2 * size :], r, u[:, 2 * size :], out=new)
            else:  # W_h * 0 = 0
                torch.sigmoid(a[:, : 2 * size], out=pre[:, : 2 * size])
                new.copy_(a[:, 2 * size :])
            common.two_x_minus_one(new.mul_(2).sigmoid_(), new, minus_one)  # n = tanh(·)
            diff = torch.sub(h_prev[:n], new, out=h_minus_n[t, :n])
            torch.addcmul(new, z, diff, out=hidden[t, :n])  # n + z ⊙ (h_{t-1} − n)
            h_prev = hidden[t]
        if plan is not None:
            plan.release()
            workspace.give(u_buf)
        h_n = _state_out(schedule, _last(schedule, hidden))
        if graph:
            ctx.save_for_backward(x, h0, weight, bias, h0p, gates, hn_conv, h_minus_n, hidden)
            ctx.schedule, ctx.zero_start = schedule, zero_start
        else:
            workspace.give_all(gates, hn_conv, h_minus_n)
        return _unproc_last(schedule, hidden), h_n

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, dout, dh_n):
        x, h0, weight, bias, h0p, gates, hn_conv, h_minus_n, hidden = ctx.saved_tensors
        schedule = ctx.schedule
        need = ctx.needs_input_grad
        if torch.is_grad_enabled():  # create_graph=True
            grads = (_grad(dout, hidden), _grad(dh_n, h0))
            return (*_second_order(step_conv_gru, schedule, x, (h0,), weight, bias, grads,
                                   need[:4]), None, None, None)
        size = weight.shape[0] // 3
        batch = x.shape[1]
        pad = _padding(weight)
        w_back = _adjoint(weight[:, x.shape[2]:])
        dout = _phys(_proc(schedule, _grad(dout, hidden)))  # (T, B, Y, X, H), any strides
        dh = _state_in(schedule, _grad(dh_n, h0)).clone()
        ragged = schedule.ragged
        dxp = _take_last(gates, gates.shape, ragged)  # ∂L/∂(W_x * x + b)
        dhh = _take_last(gates, gates.shape, ragged)  # ∂L/∂(W_h * h_{t-1})
        # pointwise work on the (…, Y, X, channels) storage order, as the LSTM's
        gates_p, dxp_p, dhh_p, hn_p, diff_p = map(_phys, (gates, dxp, dhh, hn_conv, h_minus_n))
        one = gates.new_ones(())
        plan = _winograd_plan(w_back, None, batch, *x.shape[3:])  # or conv2d
        for t in reversed(range(schedule.steps)):
            n = schedule.batch_sizes[t]
            pre, dpre = gates_p[t, :n], dxp_p[t, :n]  # (n, Y, X, 3H)
            r, z, new = pre.chunk(3, dim=-1)
            d_r, d_z, d_n = dpre.chunk(3, dim=-1)
            dh_t = torch.add(dh.permute(0, 2, 3, 1)[:n], dout[t, :n])
            rz = pre[..., : 2 * size]
            torch.addcmul(rz, rz, rz, value=-1, out=dpre[..., : 2 * size])  # σ' = s − s²
            torch.addcmul(one, new, new, value=-1, out=d_n)  # tanh' = 1 − n²
            d_n.mul_(dh_t).addcmul_(d_n, z, value=-1)  # into a_n: ⋅ (1 − z) ∂L/∂h_t
            d_r.mul_(d_n).mul_(hn_p[t, :n])
            d_z.mul_(dh_t).mul_(diff_p[t, :n])
            if t or need[1] or not ctx.zero_start:  # ∂L/∂W_h (and ∂L/∂h_{t-1}) need step t
                dhh_p[t, :n, ..., : 2 * size] = dpre[..., : 2 * size]
                torch.mul(d_n, r, out=dhh_p[t, :n, ..., 2 * size :])  # into u_n = W_hn * h_{t-1}
            if (t or need[1]) and plan is not None:  # ∂L/∂h_{t-1}, into dh (read above)
                plan.input(n).copy_(dhh[t, :n])
                plan.run(n, dh[:n]).addcmul_(dh_t.permute(0, 3, 1, 2), z.permute(0, 3, 1, 2))
            elif t or need[1]:  # ∂L/∂h_{t-1}; for t = 0 only when h0 wants it
                back = nnf.conv2d(dhh[t, :n], w_back, padding=pad).addcmul_(dh_t.permute(
                    0, 3, 1, 2), z.permute(0, 3, 1, 2))
                if n == batch:
                    dh = back
                else:
                    dh[:n] = back
        if plan is not None:
            plan.release()
        h_prev = _previous(h0p, hidden, ctx.zero_start)
        channels = x.shape[2]  # ∂L/∂W_x, ∂L/∂W_h by Winograd where it pays; with
        # zero_start, step 0's share of dhh is not computed (h0 = 0 adds nothing)
        dw_x = _winograd_weight_grad(weight[:, :channels], dxp, schedule, 0, x=x)
        dw_h = _winograd_weight_grad(weight[:, channels:], dhh, schedule, int(ctx.zero_start),
                                     h0=h0p, hidden=hidden)
        dx, dweight, dbias = _input_and_weight_grads(dxp, dhh, x, h_prev, weight,
                                                     bias is not None, schedule, need[0],
                                                     dw_x, dw_h)
        workspace.give_all(dxp, dhh)  # nothing returned refers to them
        if not workspace.graph_kept():  # no later backward reads the saved buffers
            workspace.give_all(gates, hn_conv, h_minus_n)
        dh0 = _state_out(schedule, dh) if need[1] else None
        return dx, dh0, dweight, dbias, None, None, None


def conv_gru(x: Tensor, h0: Tensor, weight: Tensor, bias: Tensor | None,
             schedule: Schedule, zero_start: bool = False) -> tuple[Tensor, Tensor]:
    """One ConvGRU layer: x ``(T, B, C, Y, X)``, h0 ``(B, H, Y, X)``, weight
    ``(3H, C + H, kh, kw)``, bias ``(3H,)`` or None → (output ``(T, B, H, Y, X)``, h_n), in batch
    order. ``zero_start``: as :func:`conv_lstm`."""
    graph = workspace.records_graph(x, h0, weight, bias)
    return ConvGRUFunction.apply(x, h0, weight, bias, schedule, zero_start, graph)
