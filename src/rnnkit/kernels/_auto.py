"""When ``backend="auto"`` picks the Triton kernels: a table of measured wins over cuDNN.

Each entry ``(cell, dtype, hidden, batch)`` is a point of the benchmark grid
(``python -m rnnkit.bench gpu``) where the kernels' forward *and* forward+backward were faster
than torch.nn (cuDNN) on the same card. A call is served by the kernels only when the grid point
that covers it (the smallest grid H ≥ its H and grid B ≥ its B) is in the table.
"""

from __future__ import annotations

import torch

from rnnkit.functional.cells import spec

GRID_HIDDEN = (128, 256, 512, 1024)
GRID_BATCH = (1, 8, 64, 256)

# No GPU has measured these kernels yet (the issue that built them was lent none), so the table
# is empty and "auto" keeps the reference path everywhere. A GPU session pastes the lines that
# ``python -m rnnkit.bench gpu --auto-table`` prints here.
PREFERRED: frozenset[tuple[str, str, int, int]] = frozenset()


def grid_point(values: tuple[int, ...], value: int) -> int | None:
    """Smallest grid value ≥ ``value``, or None past the grid."""
    return next((v for v in values if v >= value), None)


def compute_dtype(module) -> torch.dtype:
    """The dtype the recurrence runs in: float32 under autocast (the Functions cast to it)."""
    if torch.is_autocast_enabled("cuda"):
        return torch.float32
    return next(module.parameters()).dtype


def auto_prefers(module, seq: torch.Tensor) -> bool:
    """Whether the measured table says the kernels beat cuDNN for this module and input."""
    hidden = grid_point(GRID_HIDDEN, module.hidden_size)
    batch = grid_point(GRID_BATCH, seq.shape[1])  # seq is time-major (T, B, I) here
    if hidden is None or batch is None:
        return False
    dtype = str(compute_dtype(module)).removeprefix("torch.")
    return (spec(module.mode).cell, dtype, hidden, batch) in PREFERRED
