"""The ``native`` backend of the GRU: ``gru.cpp``'s time loop behind the registry's contract.

Same arguments and results as :func:`rnnkit.functional.gru.forward_recurrence` and
:func:`~rnnkit.functional.gru.backward_recurrence`, for CPU tensors in float32 or float64. xp
arrives without the doubling the reference loop's tanh uses (this backend computes tanh itself),
and is overwritten with the gates, which are returned.
"""

from __future__ import annotations

import ctypes
import functools

import torch

from rnnkit.functional import _common as common
from rnnkit.functional import _workspace as workspace
from rnnkit.functional.registry import register
from rnnkit.functional.schedule import Schedule
from rnnkit.functional.textbook import lengths_from_batch_sizes, run_steps, step_gru
from rnnkit.native import _ffi
from rnnkit.native.lstm import _lib, _same_kind, _sizes

__all__ = ["forward_recurrence", "backward_recurrence", "self_check"]


def _forward(lib, xp, h0, w_hh, b_hn, batch_sizes, ragged: bool):
    steps, batch, three_h = xp.shape
    size = three_h // 3
    hn_lin = common.buffer(xp, (steps, batch, size), ragged)
    hidden = common.buffer(xp, (steps, batch, size), ragged)
    h0, w_hh = h0.contiguous(), w_hh.detach().contiguous()
    bias = None if b_hn is None else b_hn.detach().contiguous()
    _same_kind(xp, h0, w_hh, hn_lin, hidden, *([] if bias is None else [bias]))
    status = _ffi.call(
        lib, "rnnkit_gru_forward", xp.dtype, xp=xp, h0=h0, w_hh=w_hh, b_hn=bias,
        batch_sizes=batch_sizes, hn_lin=hn_lin, hidden=hidden, steps=steps, batch=batch,
        hidden_size=size, threads=torch.get_num_threads(),
    )
    if status != 0:
        raise MemoryError("the native GRU forward could not allocate its buffers")
    return xp, hn_lin, hidden


def forward_recurrence(xp, h0, w_hh, b_hn, schedule: Schedule):
    """See :func:`rnnkit.functional.gru.forward_recurrence` (xp not doubled, and overwritten
    with the gates)."""
    xp = xp.contiguous()  # itself when it already is
    return _forward(_lib(), xp, h0, w_hh, b_hn, _sizes(schedule), schedule.ragged)


def backward_recurrence(dout, dh_n, gates, hn_lin, hidden, h0, w_hh, schedule: Schedule):
    """See :func:`rnnkit.functional.gru.backward_recurrence`."""
    steps, batch, three_h = gates.shape
    ragged = schedule.ragged
    dhh = workspace.take(gates.shape, gates, zero=ragged)
    dn_pre = common.buffer(gates, hidden.shape, ragged)
    dh0 = torch.empty_like(dh_n)
    h0, w_hh = h0.contiguous(), w_hh.detach().contiguous()
    dout, dh_n = dout.contiguous(), dh_n.contiguous()
    _same_kind(gates, hn_lin, hidden, h0, w_hh, dout, dh_n, dn_pre, dhh, dh0)
    sizes = _sizes(schedule)  # held here: the call reads its memory
    status = _ffi.call(
        _lib(), "rnnkit_gru_backward", gates.dtype, gates=gates, hn_lin=hn_lin, hidden=hidden,
        h0=h0, w_hh=w_hh, dout=dout, dh_n=dh_n, batch_sizes=sizes, dn_pre=dn_pre, dhh=dhh,
        dh0=dh0, steps=steps, batch=batch, hidden_size=three_h // 3,
        threads=torch.get_num_threads(),
    )
    if status != 0:
        raise MemoryError("the native GRU backward could not allocate its buffers")
    return dn_pre, dhh, dh0


register("gru", "native", forward_recurrence, backward_recurrence)


def self_check(lib: ctypes.CDLL) -> str | None:
    """Run the compiled forward on small ragged problems (a vector-width and an odd hidden size)
    against the textbook step (:func:`rnnkit.functional.textbook.step_gru`); None if they agree,
    else what differed."""
    gen = torch.Generator().manual_seed(0)
    sizes = (3, 3, 2, 1)
    for hidden_size in (32, 5):
        xp = torch.randn(4, 3, 3 * hidden_size, generator=gen)
        h0 = torch.randn(3, hidden_size, generator=gen)
        w_hh = torch.randn(3 * hidden_size, hidden_size, generator=gen) * 0.3
        b_hn = torch.randn(hidden_size, generator=gen)
        b_hh = torch.cat([b_hn.new_zeros(2 * hidden_size), b_hn])  # b_ih, b_hr, b_hz: in xp
        step = functools.partial(step_gru, w_ih=None, w_hh=w_hh, b_ih=None, b_hh=b_hh)
        (want,), _ = run_steps(step, xp, (h0,), lengths_from_batch_sizes(sizes))
        batch_sizes = torch.tensor(sizes, dtype=torch.int64)
        _, _, got = _forward(lib, xp.clone(), h0, w_hh, b_hn, batch_sizes, True)
        error = (got - want).abs().max().item()
        if not error <= 1e-4:
            return f"hidden size {hidden_size}: largest difference {error:.3g}"
    return None
