"""Ranking evaluation of next-item recommenders, one code path for models and baselines.

A *scorer* maps a batch of histories (lists of item indices) to scores over every item,
``(B, N + 1)`` with column 0 the padding item. :func:`evaluate_ranking` ranks each case's
held-out item under one of two protocols:

- ``sampled`` (SASRec): the target against ``negatives`` items drawn uniformly, without
  replacement, from the items neither in the history nor the target;
- ``full``: the target against every item, the history's items left out unless
  ``exclude_seen`` is off (the target itself is never left out).

The rank ``r`` (0-based) counts the candidates scoring *at least* as high as the target, so ties
go against it (pessimistic). At a cut-off K: HR@K = Recall@K = mean of ``[r < K]`` (one held-out
item per case), NDCG@K = mean of ``[r < K] / log2(r + 2)``, MRR@K = mean of ``[r < K] / (r + 1)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from rnnkit.data.interactions import Case

__all__ = ["Protocol", "PROTOCOLS", "pessimistic_ranks", "metrics_at", "sample_negatives",
           "evaluate_ranking", "Scorer"]

PROTOCOLS = ("sampled", "full")
Scorer = Callable[[list[list[int]]], Tensor]


@dataclass
class Protocol:
    """How cases are ranked (see the module docstring)."""

    kind: str = "sampled"
    negatives: int = 100
    cutoffs: tuple[int, ...] = (10,)
    exclude_seen: bool = True
    batch_size: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in PROTOCOLS:
            raise ValueError(f"protocol: expected one of {', '.join(PROTOCOLS)}, "
                             f"got {self.kind!r}")
        if self.negatives < 1:
            raise ValueError(f"negatives: expected an integer >= 1, got {self.negatives}")
        if not self.cutoffs or min(self.cutoffs) < 1:
            raise ValueError(f"cutoffs: expected integers >= 1, got {self.cutoffs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size: expected an integer >= 1, got {self.batch_size}")


def pessimistic_ranks(scores: Tensor, targets: Tensor, mask: Tensor | None = None) -> Tensor:
    """0-based rank of each row's target column: how many *other* candidates score >= it.

    Args:
        scores: (B, C) candidate scores.
        targets: (B,) column of the right candidate in each row.
        mask: (B, C) bool, the columns taking part (all when None).
    Returns:
        (B,) int64 ranks.
    """
    target_scores = scores.gather(1, targets[:, None])  # (B, 1)
    beaten = scores >= target_scores  # (B, C): ties count against the target
    if mask is not None:
        beaten &= mask
    beaten[torch.arange(len(targets)), targets] = False
    return beaten.sum(1)


def metrics_at(ranks: Tensor, cutoffs: Sequence[int], hit_name: str = "hr") -> dict[str, float]:
    """HR (or Recall) / NDCG / MRR at each cut-off, from 0-based ranks."""
    ranks = ranks.double()
    metrics = {}
    for k in cutoffs:
        hit = ranks < k
        metrics[f"{hit_name}@{k}"] = float(hit.double().mean())
        metrics[f"ndcg@{k}"] = float((hit / torch.log2(ranks + 2)).mean())
        metrics[f"mrr@{k}"] = float((hit / (ranks + 1)).mean())
    return metrics


def sample_negatives(cases: Sequence[Case], num_items: int, count: int, seed: int) -> Tensor:
    """(C, count) item indices in ``1..num_items``, per case distinct and outside its history
    and target, drawn uniformly; ``-1`` fills the row when fewer items are left."""
    rng = np.random.default_rng(seed)
    rows = np.full((len(cases), count), -1, dtype=np.int64)
    for row, case in enumerate(cases):
        seen = set(case.history)
        seen.add(case.target)
        available = num_items - len(seen)
        want = min(count, available)
        if want <= 0:
            continue
        if want * 4 > available:  # few left: pick among them directly
            pool = np.setdiff1d(np.arange(1, num_items + 1), np.fromiter(seen, np.int64))
            rows[row, :want] = rng.choice(pool, size=want, replace=False)
            continue
        picked: dict[int, None] = {}
        while len(picked) < want:
            for item in rng.integers(1, num_items + 1, size=2 * want).tolist():
                if item not in seen:
                    picked[item] = None
        rows[row, :want] = list(picked)[:want]
    return torch.from_numpy(rows)


def evaluate_ranking(scorer: Scorer, cases: Sequence[Case], num_items: int,
                     protocol: Protocol) -> dict[str, float]:
    """Mean metrics of ``scorer`` over ``cases`` (``num_items`` items, indices 1..N), and the
    number of cases as ``users``."""
    if not cases:
        raise ValueError("cases: nothing to evaluate")
    negatives = (sample_negatives(cases, num_items, protocol.negatives, protocol.seed)
                 if protocol.kind == "sampled" else None)
    ranks = []
    for start in range(0, len(cases), protocol.batch_size):
        batch = cases[start:start + protocol.batch_size]
        scores = scorer([c.history for c in batch]).float()  # (B, N + 1)
        if negatives is None:
            ranks.append(_full_ranks(scores, batch, protocol.exclude_seen))
        else:
            ranks.append(_sampled_ranks(scores, batch, negatives[start:start + len(batch)]))
    hit_name = "hr" if protocol.kind == "sampled" else "recall"
    metrics = metrics_at(torch.cat(ranks), protocol.cutoffs, hit_name)
    return {**metrics, "users": len(cases)}


def _sampled_ranks(scores: Tensor, batch: Sequence[Case], negatives: Tensor) -> Tensor:
    targets = torch.tensor([c.target for c in batch])
    candidates = torch.cat([targets[:, None], negatives], 1)  # (B, 1 + n)
    mask = candidates >= 0
    chosen = scores.gather(1, candidates.clamp(min=0))  # (B, 1 + n)
    return pessimistic_ranks(chosen, torch.zeros(len(batch), dtype=torch.long), mask)


def _full_ranks(scores: Tensor, batch: Sequence[Case], exclude_seen: bool) -> Tensor:
    mask = torch.ones_like(scores, dtype=torch.bool)
    mask[:, 0] = False  # padding
    if exclude_seen:
        for row, case in enumerate(batch):
            mask[row, case.history] = False
    targets = torch.tensor([c.target for c in batch])
    mask[torch.arange(len(batch)), targets] = True
    return pessimistic_ranks(scores, targets, mask)

