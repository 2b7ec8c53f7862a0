r"""A recorder of the error reaching each hidden state, read by :mod:`rnnkit.diagnostics`.

Inside each cell's BPTT loop the error reaching the state at step t is

.. math::
    \partial L/\partial h_t = \underbrace{\partial L/\partial o_t}_{\text{output } t}
        + \underbrace{(\partial h_{t+1}/\partial h_t)^\top \partial L/\partial h_{t+1}}_{
          \text{carried back from step } t+1}

(``delta`` before the slope in ``elman.py``, ``dh_t`` in ``lstm.py``, ``gru.py`` and
``regularised.py``). While a :class:`Probe` is active, each hand-written backward recurrence
records its L2 norm over the hidden units, per row and step, into a ``(T, B)`` tensor in the
order the call ran its steps:

- *processing order* for the layers with a :class:`~rnnkit.functional.schedule.Schedule` (rows
  sorted by length, the reverse direction flipped within each length, so step k of a row is
  position k forwards and position L−1−k in reverse); steps past a row's end stay 0;
- *plain order* for the layers with the cell options (:mod:`rnnkit.functional.regularised`,
  no Schedule): batch order, every row through every step of the call, an ``active`` mask
  marking the steps a row really runs (the others, its padding, stay 0), and ``reverse`` when
  the caller flipped the whole sequence (step t of the call is then time position T−1−t).

:mod:`rnnkit.diagnostics.flow` turns either into time positions and distances from the last step.
A backward that must itself be differentiable (``create_graph=True``) runs autograd reference
loops instead of these recurrences and records nothing.

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
        schedule: the batch layout (lengths, direction) of that call; None for a call in plain
            order (see the module docstring).
        norms: ``(T, B)`` float32, ‖∂L/∂h_t‖₂ per step of the call and row; 0 where the row
            does not run (past its end; in plain order, wherever ``active`` is False).
        active: plain order only: ``(T, B)`` bool, True where the row runs the step; None when
            every row runs every step.
        reverse: plain order only: the call ran backwards in time (the caller flipped the
            sequence), so its step t is time position T−1−t.
    """

    w_hh: Tensor
    schedule: Schedule | None
    norms: Tensor
    active: Tensor | None = None
    reverse: bool = False


@dataclass
class Probe:
    """What the backward recurrences recorded while this probe was active."""

    records: list[Record] = field(default_factory=list)


_active: Probe | None = None


def recorder(
    w_hh: Tensor,
    schedule: Schedule | None,
    like: Tensor,
    *,
    active: Tensor | None = None,
    reverse: bool = False,
) -> Callable[[int, Tensor], None] | None:
    """``record(t, dh_t)`` for one backward recurrence, or None when no probe is active.

    ``like`` is any ``(T, B, ·)`` tensor of the call (for the shape and device); ``dh_t`` is the
    ``(n, P)`` error reaching the state at processing step t, rows ``[:n]``. With ``schedule``
    None the call runs in plain order: ``dh_t`` holds all B rows at step t of the call,
    ``active`` ``(T, B, 1)`` or ``(T, B)`` (nonzero where the row runs the step, or None) and
    ``reverse`` are stored with the record (see :class:`Record`).
    """
    probe = _active
    if probe is None:
        return None
    norms = torch.zeros(like.shape[:2], dtype=torch.float32, device=like.device)  # (T, B)
    if schedule is not None:
        probe.records.append(Record(w_hh.detach(), schedule, norms))

        def record(t: int, dh_t: Tensor) -> None:
            torch.linalg.vector_norm(dh_t.float(), dim=1, out=norms[t, : dh_t.shape[0]])

        return record
    running = None if active is None else active.detach().reshape(norms.shape) != 0  # (T, B)
    probe.records.append(Record(w_hh.detach(), None, norms, running, reverse))

    def record_plain(t: int, dh_t: Tensor) -> None:
        torch.linalg.vector_norm(dh_t.float(), dim=1, out=norms[t])
        if running is not None:
            norms[t].masked_fill_(~running[t], 0.0)  # padding: the row does not run this step

    return record_plain


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
