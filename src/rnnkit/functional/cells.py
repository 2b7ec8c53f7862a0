"""What each cell is, in one table: the facts the layers, kernels and diagnostics share.

A cell mode (torch.nn's names: ``RNN_TANH``, ``RNN_RELU``, ``LSTM``, ``GRU``) packs its weights as
``blocks`` stacked blocks of H rows each (``w_ih`` ``(blocks·H, I)``, ``w_hh`` ``(blocks·H, P)``),
in the order of ``gates``; it carries the states named in ``states``, each ``(B, ·)``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CellSpec", "CELLS", "spec"]


@dataclass(frozen=True)
class CellSpec:
    """One cell mode.

    Attributes:
        mode: torch.nn's mode name (``module.mode``).
        cell: the functional cell that computes it (``"elman"``, ``"lstm"``, ``"gru"``).
        blocks: H-row blocks in ``w_ih`` / ``w_hh`` / the biases (1, 4 or 3).
        gates: names of those blocks in packing order (LSTM i, f, g, o; GRU r, z, n); empty for
            the Elman RNN, whose single block is the new state's pre-activation.
        states: names of the recurrent states (``("h",)``, or ``("h", "c")`` for the LSTM).
        nonlinearity: the Elman RNN's f (``"tanh"`` or ``"relu"``); None for gated cells.
    """

    mode: str
    cell: str
    blocks: int
    gates: tuple[str, ...]
    states: tuple[str, ...]
    nonlinearity: str | None = None


CELLS: dict[str, CellSpec] = {
    spec.mode: spec
    for spec in (
        CellSpec("RNN_TANH", "elman", 1, (), ("h",), "tanh"),
        CellSpec("RNN_RELU", "elman", 1, (), ("h",), "relu"),
        CellSpec("LSTM", "lstm", 4, ("i", "f", "g", "o"), ("h", "c")),
        CellSpec("GRU", "gru", 3, ("r", "z", "n"), ("h",)),
    )
}


def spec(mode: str) -> CellSpec:
    """The :class:`CellSpec` of ``mode`` (``module.mode``)."""
    return CELLS[mode]
