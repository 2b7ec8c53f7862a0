"""Implementations of each cell's sequential part, by backend name.

A backend supplies two functions per cell: the forward recurrence and the backward recurrence,
with the signatures of the ``reference`` ones in ``elman.py``, ``lstm.py`` and ``gru.py``. The
input projection before the loop and the weight gradients after it are shared by all backends.

This module names no backend but ``reference``: a backend package registers its cells here when
it is imported, and :mod:`rnnkit.nn._backends` is the one place that imports them.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["register", "lookup"]

_TABLE: dict[tuple[str, str], tuple[Callable, Callable]] = {}


def register(cell: str, backend: str, forward: Callable, backward: Callable) -> None:
    """Make ``backend`` serve ``cell`` ("elman", "lstm" or "gru")."""
    _TABLE[(cell, backend)] = (forward, backward)


def lookup(cell: str, backend: str) -> tuple[Callable, Callable]:
    """The (forward, backward) recurrence pair for ``cell`` on ``backend`` (registered)."""
    try:
        return _TABLE[(cell, backend)]
    except KeyError:
        raise ValueError(f"backend {backend!r} does not implement the {cell} cell") from None
