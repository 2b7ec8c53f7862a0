"""Where each sequence of a batch sits in time: the shared bookkeeping of every cell.

The recurrences in this package run in *processing order*: the batch sorted by length, longest
first, and, for the reverse direction, every sequence flipped within its own length. In that order
every sequence starts at step 0, and at step t exactly the first ``batch_sizes[t]`` rows are still
running (PackedSequence's layout). A recurrence then touches only the prefix ``[:batch_sizes[t]]``
of the batch at step t; rows past it keep their state untouched, which gives PackedSequence
semantics without masks: outputs past a sequence's end stay zero, its final state is the state
after its last step, and the reverse direction starts at its own last step from ``h0``.

Moving a ``(T, B, ·)`` tensor into processing order is a permutation of the T·B rows; it is done
by one ``index_select`` and undone by one ``index_copy_``. Padded positions map onto padded
positions, so they never mix with real steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Schedule", "make_schedule"]


@dataclass(frozen=True)
class Schedule:
    """Batch layout for one direction of a layer. Axes: T steps, B batch.

    Attributes:
        batch_sizes: ``batch_sizes[t]`` rows are running at step t (non-increasing, Python ints).
        lengths: ``(B,)`` int64, sequence lengths in processing order (non-increasing), on the
            data's device.
        order: ``(B,)`` original batch index of each processing-order row, or None (identity).
        rows: ``(T*B,)`` flat row of the original ``(T, B)`` grid read for each processing-order
            row, or None when processing order is the original order.
        reverse: whether this is the reverse direction.
    """

    batch_sizes: tuple[int, ...]
    lengths: Tensor
    order: Tensor | None
    rows: Tensor | None
    reverse: bool

    @property
    def steps(self) -> int:
        return len(self.batch_sizes)

    @property
    def ragged(self) -> bool:
        return self.batch_sizes[-1] != self.batch_sizes[0]

    def to_processing(self, seq: Tensor) -> Tensor:
        """``(T, B, F)`` in batch order → processing order."""
        if self.rows is None:
            return seq.flip(0) if self.reverse else seq
        steps, batch, features = seq.shape
        return seq.reshape(steps * batch, features).index_select(0, self.rows).view(seq.shape)

    def from_processing(self, seq: Tensor) -> Tensor:
        """Inverse of :meth:`to_processing`."""
        if self.rows is None:
            return seq.flip(0) if self.reverse else seq
        steps, batch, features = seq.shape
        flat = seq.new_empty(steps * batch, features)
        flat.index_copy_(0, self.rows, seq.reshape(steps * batch, features))
        return flat.view(seq.shape)

    def batch_to_processing(self, state: Tensor) -> Tensor:
        """``(B, F)`` state in batch order → processing order."""
        return state if self.order is None else state.index_select(0, self.order)

    def batch_from_processing(self, state: Tensor) -> Tensor:
        """Inverse of :meth:`batch_to_processing`."""
        if self.order is None:
            return state
        out = torch.empty_like(state)
        out.index_copy_(0, self.order, state)
        return out

    def last_steps(self, seq: Tensor) -> Tensor:
        """State after each row's last step, ``(B, F)`` in processing order, from ``(T, B, F)``."""
        if not self.ragged:
            return seq[-1]
        batch = seq.shape[1]
        return seq[self.lengths - 1, torch.arange(batch, device=seq.device)]


def make_schedule(
    steps: int, batch: int, lengths: Tensor | None, device: torch.device, reverse: bool
) -> Schedule:
    """Build the processing-order layout for ``lengths`` (``(B,)`` int64 on the CPU, or None).

    ``lengths`` must already be validated: integers in ``[1, steps]``.
    """
    if lengths is None or bool((lengths == steps).all()):
        full = torch.full((batch,), steps, dtype=torch.int64, device=device)
        return Schedule((batch,) * steps, full, None, None, reverse)
    sorted_lengths, order = torch.sort(lengths, descending=True, stable=True)
    identity = bool((order == torch.arange(batch)).all())
    counts = torch.bincount(sorted_lengths, minlength=steps + 1)  # rows ending at each length
    batch_sizes = [int(n) for n in (batch - torch.cumsum(counts, 0)[:steps]).tolist()]
    if identity and not reverse:
        return Schedule(tuple(batch_sizes), sorted_lengths.to(device), None, None, reverse)
    time = torch.arange(steps).unsqueeze(1).expand(steps, batch)  # (T, B) processing step
    if reverse:
        inside = time < sorted_lengths
        time = torch.where(inside, sorted_lengths - 1 - time, time)
    rows = (time * batch + order).reshape(-1)
    return Schedule(
        tuple(batch_sizes),
        sorted_lengths.to(device),
        order.to(device),
        rows.to(device),
        reverse,
    )
