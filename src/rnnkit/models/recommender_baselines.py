"""Baseline next-item scorers, ranked by the same code as the model
(:func:`rnnkit.data.rank_metrics.evaluate_ranking`).

- :class:`MostPopular`: every history gets the items' training counts.
- :class:`Cooccurrence`: item-to-item transitions: how often item ``j`` directly followed the
  history's last item in training, plus the item's popularity scaled into [0, 1) to order the
  items that never followed it (and every item after an unseen last item).

Both return ``(B, N + 1)`` scores (column 0 is padding).
"""

from __future__ import annotations

from collections import Counter

import torch
from torch import Tensor

__all__ = ["MostPopular", "Cooccurrence", "BASELINES"]

BASELINES = ("popular", "cooccurrence")


class MostPopular:
    """Scores = training counts, the same for every history."""

    def __init__(self, counts: list[int]) -> None:
        self.scores = torch.tensor([0.0, *counts], dtype=torch.float64)  # (N + 1,)

    def __call__(self, histories: list[list[int]]) -> Tensor:
        return self.scores.expand(len(histories), -1).clone()  # (B, N + 1)


class Cooccurrence:
    """Scores = count(last item → j) + popularity(j) / (max popularity + 1)."""

    def __init__(self, train: list[list[int]], counts: list[int]) -> None:
        self.size = len(counts) + 1
        popularity = torch.tensor([0.0, *counts], dtype=torch.float64)
        self.tie_break = popularity / (popularity.max() + 1)  # (N + 1,) in [0, 1)
        pairs = Counter((a, b) for seq in train for a, b in zip(seq, seq[1:], strict=False))
        self.rows: dict[int, tuple[Tensor, Tensor]] = {}
        by_source: dict[int, list[tuple[int, int]]] = {}
        for (source, target), number in pairs.items():
            by_source.setdefault(source, []).append((target, number))
        for source, followers in by_source.items():
            targets, numbers = zip(*followers, strict=True)
            self.rows[source] = (torch.tensor(targets), torch.tensor(numbers, dtype=torch.float64))

    def __call__(self, histories: list[list[int]]) -> Tensor:
        scores = self.tie_break.expand(len(histories), -1).clone()  # (B, N + 1)
        for row, history in enumerate(histories):
            followers = self.rows.get(history[-1]) if history else None
            if followers is not None:
                scores[row, followers[0]] += followers[1]
        return scores
