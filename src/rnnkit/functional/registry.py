"""Implementations of each cell's sequential part, by backend name.

A backend supplies two functions per cell: the forward recurrence and the backward recurrence,
with the signatures of the ``reference`` ones in ``elman.py``, ``lstm.py`` and ``gru.py``. The
input projection before the loop and the weight gradients after it are shared by all backends.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

__all__ = ["BACKENDS", "register", "lookup"]

BACKENDS = ("reference", "native", "triton")
# imported on first use; each registers itself
_MODULES = {
    "native": ("rnnkit.native.lstm", "rnnkit.native.elman", "rnnkit.native.gru"),
    "triton": ("rnnkit.kernels",),
}
_TABLE: dict[tuple[str, str], tuple[Callable, Callable]] = {}


def register(cell: str, backend: str, forward: Callable, backward: Callable) -> None:
    """Make ``backend`` serve ``cell`` ("elman", "lstm" or "gru")."""
    _TABLE[(cell, backend)] = (forward, backward)


def lookup(cell: str, backend: str) -> tuple[Callable, Callable]:
    """The (forward, backward) recurrence pair for ``cell`` on ``backend``."""
    if (cell, backend) not in _TABLE and backend in _MODULES:
        for module in _MODULES[backend]:
            importlib.import_module(module)
    try:
        return _TABLE[(cell, backend)]
    except KeyError:
        raise ValueError(f"backend {backend!r} does not implement the {cell} cell") from None
