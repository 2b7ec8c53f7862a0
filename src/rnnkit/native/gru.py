"""The ``native`` backend of the GRU: ``lstm.cpp``'s GRU loop behind the registry's contract.

Same arguments and results as :func:`rnnkit.functional.gru.forward_recurrence` and
:func:`~rnnkit.functional.gru.backward_recurrence`, for CPU tensors in float32 or float64. xp
arrives without the doubling the reference loop's tanh uses (this backend computes tanh itself),
and is overwritten with the gates, which are returned.
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor

from rnnkit.functional import _common as common
from rnnkit.functional import _workspace as workspace
from rnnkit.functional.registry import register
from rnnkit.functional.schedule import Schedule
from rnnkit.native.lstm import _SUFFIX, _lib, _ptr, _same_kind, _sizes

__all__ = ["forward_recurrence", "backward_recurrence", "self_check"]


def _forward(lib, xp, h0, w_hh, b_hn, batch_sizes, ragged: bool):
    steps, batch, three_h = xp.shape
    size = three_h // 3
    hn_lin = common.buffer(xp, (steps, batch, size), ragged)
    hidden = common.buffer(xp, (steps, batch, size), ragged)
    h0, w_hh = h0.contiguous(), w_hh.detach().contiguous()
    bias = None if b_hn is None else b_hn.detach().contiguous()
    _same_kind(xp, h0, w_hh, hn_lin, hidden, *([] if bias is None else [bias]))
    status = getattr(lib, f"rnnkit_gru_forward_{_SUFFIX[xp.dtype]}")(
        _ptr(xp), _ptr(h0), _ptr(w_hh), None if bias is None else _ptr(bias),
        _ptr(batch_sizes), _ptr(hn_lin), _ptr(hidden), steps, batch, size,
        torch.get_num_threads(),
    )  # fmt: skip
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
    status = getattr(_lib(), f"rnnkit_gru_backward_{_SUFFIX[gates.dtype]}")(
        _ptr(gates), _ptr(hn_lin), _ptr(hidden), _ptr(h0), _ptr(w_hh), _ptr(dout), _ptr(dh_n),
        _ptr(sizes), _ptr(dn_pre), _ptr(dhh), _ptr(dh0), steps, batch,
        three_h // 3, torch.get_num_threads(),
    )  # fmt: skip
    if status != 0:
        raise MemoryError("the native GRU backward could not allocate its buffers")
    return dn_pre, dhh, dh0


register("gru", "native", forward_recurrence, backward_recurrence)


def _plain_gru(xp, h0, w_hh, b_hn, batch_sizes) -> Tensor:
    """The textbook loop, for :func:`self_check`: hidden ``(T, B, H)``, zero past each end."""
    h, hs = h0.clone(), []
    for t, n in enumerate(batch_sizes):
        x_r, x_z, x_n = xp[t, :n].chunk(3, 1)
        h_r, h_z, h_n = (h[:n] @ w_hh.t()).chunk(3, 1)
        r, z = (x_r + h_r).sigmoid(), (x_z + h_z).sigmoid()
        new = (x_n + r * (h_n + b_hn)).tanh()
        h_new = new + z * (h[:n] - new)
        h = torch.cat([h_new, h[n:]])
        hs.append(torch.cat([h_new, h.new_zeros(len(h) - n, h.shape[1])]))
    return torch.stack(hs)


def self_check(lib: ctypes.CDLL) -> str | None:
    """Run the compiled forward on small ragged problems (a vector-width and an odd hidden size)
    against :func:`_plain_gru`; None if they agree, else what differed."""
    gen = torch.Generator().manual_seed(0)
    sizes = (3, 3, 2, 1)
    for hidden_size in (32, 5):
        xp = torch.randn(4, 3, 3 * hidden_size, generator=gen)
        h0 = torch.randn(3, hidden_size, generator=gen)
        w_hh = torch.randn(3 * hidden_size, hidden_size, generator=gen) * 0.3
        b_hn = torch.randn(hidden_size, generator=gen)
        want = _plain_gru(xp, h0, w_hh, b_hn, sizes)
        batch_sizes = torch.tensor(sizes, dtype=torch.int64)
        _, _, got = _forward(lib, xp.clone(), h0, w_hh, b_hn, batch_sizes, True)
        error = (got - want).abs().max().item()
        if not error <= 1e-4:
            return f"hidden size {hidden_size}: largest difference {error:.3g}"
    return None
