"""The ``native`` backend of the LSTM: ``lstm.cpp``'s time loop behind the registry's contract.

Same arguments and results as :func:`rnnkit.functional.lstm.forward_recurrence` and
:func:`~rnnkit.functional.lstm.backward_recurrence`, for CPU tensors in float32 or float64 and
no projection (``w_hr`` None; :func:`serves` tells). xp arrives with plain g rows (this backend
computes tanh itself), and is overwritten with the gates, as in the reference.
"""

from __future__ import annotations

import ctypes
import functools

import torch
from torch import Tensor

from rnnkit.functional import _common as common
from rnnkit.functional import _workspace as workspace
from rnnkit.functional.registry import register
from rnnkit.functional.schedule import Schedule
from rnnkit.functional.textbook import lengths_from_batch_sizes, run_steps, step_lstm
from rnnkit.native import _ffi

__all__ = ["forward_recurrence", "backward_recurrence", "serves", "self_check"]

_SUFFIX = _ffi.SUFFIX  # the dtypes the library serves


def serves(x: Tensor, proj_size: int) -> str | None:
    """Why the native LSTM cannot serve input like ``x``, or None if it can (library aside)."""
    if x.device.type != "cpu":
        return f"it runs on CPU tensors only, got {x.device.type}"
    if x.dtype not in _SUFFIX:
        return f"it runs in float32 or float64, got {x.dtype}"
    if proj_size:
        return "it has no projection (proj_size must be 0)"
    return None


def _lib():
    from rnnkit.native import library, problem

    lib = library()
    if lib is None:
        raise RuntimeError(f"the native backend is unavailable: {problem()}")
    return lib


def _same_kind(*tensors: Tensor) -> None:
    """The C++ side reads raw memory: every tensor must be a contiguous CPU tensor of one
    supported dtype, or the call would read the wrong bytes."""
    dtype = tensors[0].dtype
    for t in tensors:
        if t.device.type != "cpu" or t.dtype != dtype or dtype not in _SUFFIX:
            raise TypeError(
                "backend='native' needs CPU tensors all in float32 or all in float64, got "
                + ", ".join(f"{u.dtype} on {u.device}" for u in tensors)
            )
        if not t.is_contiguous():
            raise ValueError("backend='native' got a non-contiguous buffer (internal error)")


def _sizes(schedule: Schedule) -> Tensor:
    return torch.tensor(schedule.batch_sizes, dtype=torch.int64)


def _forward(lib, xp, h0, c0, w_hh, batch_sizes, ragged: bool):
    steps, batch, four_h = xp.shape
    size = four_h // 4
    hidden = common.buffer(xp, (steps, batch, size), ragged)  # the output: leaves the call
    cells = workspace.take((steps, batch, size), xp, zero=ragged)  # saved: handed back later
    h0, c0, w_hh = h0.contiguous(), c0.contiguous(), w_hh.detach().contiguous()
    _same_kind(xp, h0, c0, w_hh, hidden, cells)
    status = _ffi.call(
        lib, "rnnkit_lstm_forward", xp.dtype, xp=xp, h0=h0, c0=c0, w_hh=w_hh,
        batch_sizes=batch_sizes, hidden=hidden, cells=cells, steps=steps, batch=batch,
        hidden_size=size, threads=torch.get_num_threads(),
    )
    if status != 0:
        raise MemoryError("the native LSTM forward could not allocate its buffers")
    return hidden, cells


def forward_recurrence(xp, h0, c0, w_hh, w_hr, schedule: Schedule):
    """See :func:`rnnkit.functional.lstm.forward_recurrence` (xp without doubled g rows).
    ``saved`` is ``(gates, None, None)``: the backward recomputes ``tanh c_t`` from the cells,
    which costs less than writing and reading it back."""
    if w_hr is not None:
        raise ValueError("backend='native' has no projection (proj_size must be 0)")
    xp = xp.contiguous()  # itself when it already is
    hidden, cells = _forward(_lib(), xp, h0, c0, w_hh, _sizes(schedule), schedule.ragged)
    return (xp, None, None), cells, hidden


def _backward(lib, gates, cells, c0, w_hh, dout, dh_n, dc_n, batch_sizes, dpre, need_dh0=True):
    steps, batch, four_h = gates.shape
    size = four_h // 4
    dh0 = torch.empty_like(dh_n) if need_dh0 else None  # None: the C++ side skips its product
    dc0 = torch.empty_like(dc_n)
    c0, w_hh = c0.contiguous(), w_hh.detach().contiguous()
    dout, dh_n, dc_n = dout.contiguous(), dh_n.contiguous(), dc_n.contiguous()
    _same_kind(gates, cells, c0, w_hh, dout, dh_n, dc_n, dpre, dc0, *([dh0] if need_dh0 else []))
    status = _ffi.call(
        lib, "rnnkit_lstm_backward", gates.dtype, gates=gates, cells=cells, c0=c0, w_hh=w_hh,
        dout=dout, dh_n=dh_n, dc_n=dc_n, batch_sizes=batch_sizes, dpre=dpre, dh0=dh0, dc0=dc0,
        steps=steps, batch=batch, hidden_size=size, threads=torch.get_num_threads(),
    )
    if status != 0:
        raise MemoryError("the native LSTM backward could not allocate its buffers")
    return dh0, dc0


def backward_recurrence(
    dout, dh_n, dc_n, saved, cells, c0, w_hh, w_hr, schedule: Schedule, need_dh0: bool = True
):
    """See :func:`rnnkit.functional.lstm.backward_recurrence`."""
    gates = saved[0]
    dpre = workspace.take(gates.shape, gates, zero=schedule.ragged)
    dh0, dc0 = _backward(
        _lib(), gates, cells, c0, w_hh, dout, dh_n, dc_n, _sizes(schedule), dpre, need_dh0
    )
    return dpre, dh0, dc0, None


def weight_grads(dpre: Tensor, x: Tensor, h0: Tensor, hidden: Tensor):
    """∂L/∂W_ih ``(G, I)``, ∂L/∂W_hh ``(G, P)`` and the bias gradient ``(G,)`` in one pass over
    dpre ``(T, B, G)``, all in processing order (x ``(T, B, I)``, h0 ``(B, P)``, hidden
    ``(T, B, P)``): the sums over steps of :func:`rnnkit.functional._common.input_grads` and
    :func:`~rnnkit.functional._common.recurrent_weight_grad` as one product
    ``dpreᵀ [x | h_{t−1}]`` on ``weight_grads.cpp``'s register tile (faster than the two
    ``torch.mm`` calls: docs/benchmarks.md)."""
    steps, batch, gates = dpre.shape
    x, h0, hidden = x.contiguous(), h0.contiguous(), hidden.contiguous()
    dw_ih = dpre.new_empty(gates, x.shape[-1])
    dw_hh = dpre.new_empty(gates, h0.shape[-1])
    dbias = dpre.new_empty(gates)
    _same_kind(dpre, x, h0, hidden, dw_ih, dw_hh, dbias)
    status = _ffi.call(
        _lib(), "rnnkit_weight_grads", dpre.dtype, dpre=dpre, k=steps * batch, g=gates, x=x,
        i=x.shape[-1], h0=h0, hidden=hidden, b=batch, p=h0.shape[-1], dw_ih=dw_ih, dw_hh=dw_hh,
        db=dbias, threads=torch.get_num_threads(),
    )
    if status != 0:
        raise MemoryError("the native weight gradients could not allocate their buffers")
    return dw_ih, dw_hh, dbias


backward_recurrence.weight_grads = weight_grads  # LSTMFunction uses it instead of two products
register("lstm", "native", forward_recurrence, backward_recurrence)


def self_check(lib: ctypes.CDLL) -> str | None:
    """Run the compiled forward on two small ragged problems (a vector-width and an odd hidden
    size) against :func:`_plain_lstm`; None if they agree, else what differed."""
    gen = torch.Generator().manual_seed(0)
    sizes = (3, 3, 2, 1)
    for hidden_size in (32, 5):
        xp = torch.randn(4, 3, 4 * hidden_size, generator=gen)
        h0, c0 = torch.randn(2, 3, hidden_size, generator=gen).unbind(0)
        w_hh = torch.randn(4 * hidden_size, hidden_size, generator=gen) * 0.3
        step = functools.partial(step_lstm, w_ih=None, w_hh=w_hh, b_ih=None, b_hh=None)
        (want_h, want_c), _ = run_steps(step, xp, (h0, c0), lengths_from_batch_sizes(sizes))
        batch_sizes = torch.tensor(sizes, dtype=torch.int64)
        got_h, got_c = _forward(lib, xp.clone(), h0, c0, w_hh, batch_sizes, True)
        error = max((got_h - want_h).abs().max().item(), (got_c - want_c).abs().max().item())
        if not error <= 1e-4:
            return f"hidden size {hidden_size}: largest difference {error:.3g}"
    return None
