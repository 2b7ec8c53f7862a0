"""The ``native`` backend of the Elman RNN: ``elman.cpp``'s time loop behind the registry's
contract.

Same arguments and results as :func:`rnnkit.functional.elman.forward_recurrence` and
:func:`~rnnkit.functional.elman.backward_recurrence`, for CPU tensors in float32 or float64, tanh
or relu. xp arrives without the doubling the reference loop's tanh uses (this backend computes
tanh itself).
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
from rnnkit.functional.textbook import lengths_from_batch_sizes, run_steps, step_elman
from rnnkit.native import _ffi
from rnnkit.native.lstm import _SUFFIX, _lib, _same_kind, _sizes, weight_grads

__all__ = ["forward_recurrence", "backward_recurrence", "serves", "self_check"]


def serves(x: Tensor) -> str | None:
    """Why the native Elman RNN cannot serve input like ``x``, or None if it can (library
    aside)."""
    if x.device.type != "cpu":
        return f"it runs on CPU tensors only, got {x.device.type}"
    if x.dtype not in _SUFFIX:
        return f"it runs in float32 or float64, got {x.dtype}"
    return None


def _forward(lib, xp, h0, w_hh, batch_sizes, ragged: bool, relu: bool) -> Tensor:
    steps, batch, size = xp.shape
    hidden = common.buffer(xp, xp.shape, ragged)  # the output: zero past each row's end
    xp, h0, w_hh = xp.contiguous(), h0.contiguous(), w_hh.detach().contiguous()
    _same_kind(xp, h0, w_hh, hidden)
    status = _ffi.call(
        lib, "rnnkit_elman_forward", xp.dtype, xp=xp, h0=h0, w_hh=w_hh, batch_sizes=batch_sizes,
        hidden=hidden, steps=steps, batch=batch, hidden_size=size, relu=int(relu),
        threads=torch.get_num_threads(),
    )
    if status != 0:
        raise MemoryError("the native Elman RNN forward could not allocate its buffers")
    return hidden


def forward_recurrence(xp, h0, w_hh, schedule: Schedule, nonlinearity: str) -> Tensor:
    """See :func:`rnnkit.functional.elman.forward_recurrence` (xp not doubled)."""
    return _forward(_lib(), xp, h0, w_hh, _sizes(schedule), schedule.ragged,
                    nonlinearity == "relu")


def _backward(lib, hidden, w_hh, dout, dh_n, batch_sizes, dpre, relu: bool, need_dh0=True):
    steps, batch, size = hidden.shape
    dh0 = torch.empty_like(dh_n) if need_dh0 else None  # None: the C++ side skips its product
    w_hh = w_hh.detach().contiguous()
    dout, dh_n = dout.contiguous(), dh_n.contiguous()
    _same_kind(hidden, w_hh, dout, dh_n, dpre, *([dh0] if need_dh0 else []))
    status = _ffi.call(
        lib, "rnnkit_elman_backward", hidden.dtype, hidden=hidden, w_hh=w_hh, dout=dout,
        dh_n=dh_n, batch_sizes=batch_sizes, dpre=dpre, dh0=dh0, steps=steps, batch=batch,
        hidden_size=size, relu=int(relu), threads=torch.get_num_threads(),
    )
    if status != 0:
        raise MemoryError("the native Elman RNN backward could not allocate its buffers")
    return dh0


def backward_recurrence(dout, dh_n, hidden, w_hh, schedule: Schedule, nonlinearity: str,
                        need_dh0: bool = True):
    """See :func:`rnnkit.functional.elman.backward_recurrence`."""
    dpre = workspace.take(hidden.shape, hidden, zero=schedule.ragged)
    dh0 = _backward(_lib(), hidden, w_hh, dout, dh_n, _sizes(schedule), dpre,
                    nonlinearity == "relu", need_dh0)
    return dpre, dh0


backward_recurrence.weight_grads = weight_grads  # ElmanFunction uses it instead of two products
register("elman", "native", forward_recurrence, backward_recurrence)


def self_check(lib: ctypes.CDLL) -> str | None:
    """Run the compiled forward on small ragged problems (a vector-width and an odd hidden size,
    tanh and relu) against the textbook step (:func:`rnnkit.functional.textbook.step_elman`);
    None if they agree, else what differed."""
    gen = torch.Generator().manual_seed(0)
    sizes = (3, 3, 2, 1)
    for hidden_size in (32, 5):
        xp = torch.randn(4, 3, hidden_size, generator=gen)
        h0 = torch.randn(3, hidden_size, generator=gen)
        w_hh = torch.randn(hidden_size, hidden_size, generator=gen) * 0.3
        batch_sizes = torch.tensor(sizes, dtype=torch.int64)
        for relu in (False, True):
            step = functools.partial(step_elman, w_ih=None, w_hh=w_hh, b_ih=None, b_hh=None,
                                     nonlinearity="relu" if relu else "tanh")
            (want,), _ = run_steps(step, xp, (h0,), lengths_from_batch_sizes(sizes))
            got = _forward(lib, xp, h0, w_hh, batch_sizes, True, relu)
            error = (got - want).abs().max().item()
            if not error <= 1e-4:
                kind = "relu" if relu else "tanh"
                return f"hidden size {hidden_size}, {kind}: largest difference {error:.3g}"
    return None
