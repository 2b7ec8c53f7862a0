r"""A recorder of the error reaching each hidden state, read by :mod:`rnnkit.diagnostics`.

Inside each cell's BPTT loop the error reaching the state at step t is

.. math::
    \partial L/\partial h_t = \underbrace{\partial L/\partial o_t}_{\text{output } t}
        + \underbrace{(\partial h_{t+1}/\partial h_t)^\top \partial L/\partial h_{t+1}}_{
          \text{carried back from step } t+1}

(``delta`` before the slope in ``elman.py``, ``dh_t`` in ``lstm.py`` and ``gru.py``). While a
:class:`Probe` is active, each reference backward recurrence records its L2 norm over the hidden
units, per row and step, into a ``(T, B)`` tensor in *processing order* (see
:mod:`~rnnkit.functional.schedule`: rows sorted by length, the reverse direction flipped within
each length, so step k of a row is position k forwards and position L−1−k in reverse).

Off (the default) it costs one module-global read per backward call, before the time loop; the
loop itself then tests a local ``None``. A module global rather than a context variable, because
CUDA backward passes run on autograd's own threads. One probe at a time per process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor

from rnnkit.functional.schedule import Schedule

__all__ = ["Probe", "Record", "recording", "recorder"]


@dataclass
class Record:
    """One backward recurrence (one layer, one direction) seen by a probe.

    Attributes:
        w_hh: the recurrent weight the layer ran with; tells layers and directions apart.
        schedule: the batch layout (lengths, direction) of that call.
        norms: ``(T, B)`` float32, ‖∂L/∂h_t‖₂ per processing step and row; 0 past a row's end.
    """

    w_hh: Tensor
    schedule: Schedule
    norms: Tensor


@dataclass
class Probe:
    """What the backward recurrences recorded while this probe was active."""

    records: list[Record] = field(default_factory=list)


_active: Probe | None = None


def recorder(
    w_hh: Tensor, schedule: Schedule, like: Tensor
) -> Callable[[int, Tensor], None] | None:
    """``record(t, dh_t)`` for one backward recurrence, or None when no probe is active.

    ``like`` is any ``(T, B, ·)`` tensor of the call (for the shape and device); ``dh_t`` is the
    ``(n, P)`` error reaching the state at processing step t, rows ``[:n]``.
    """
    probe = _active
    if probe is None:
        return None
    norms = torch.zeros(like.shape[:2], dtype=torch.float32, device=like.device)  # (T, B)
    probe.records.append(Record(w_hh.detach(), schedule, norms))

    def record(t: int, dh_t: Tensor) -> None:
        torch.linalg.vector_norm(dh_t.float(), dim=1, out=norms[t, : dh_t.shape[0]])

    return record


@contextmanager
def recording() -> Iterator[Probe]:
    """Activate a fresh :class:`Probe` for the backward passes run inside the block."""
    global _active
    if _active is not None:
        raise RuntimeError("a gradient-flow probe is already recording in this process")
    probe = Probe()
    _active = probe
    try:
        yield probe
    finally:
        _active = None
