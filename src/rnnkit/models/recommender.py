r"""Session-based next-item recommender (GRU4Rec-style) and its ranking losses.

The model reads a user's items ``i_1 … i_t`` and scores every item as the next one::

    e_t = dropout(E[i_t])                      # (B, T, E) item embedding
    s_t = RNN(e_1 … e_t)                       # (B, T, H) GRU / LSTM / Elman, rnnkit.nn
    q_t = dropout(W s_t + b)                   # (B, T, E) back into the embedding space
    score(j | i_1 … i_t) = q_t · E[j] + b_j    # dot product with the *same* (tied) embeddings

Training (``loss``) scores each step's true next item ``p`` against negatives ``n_j`` shared by
the batch, drawn by popularity (count ** ``sample_alpha``), the true item masked out among them:

- ``ce``: softmax cross-entropy over ``[p, n_1 … n_M]`` (with ``logq``, the sampled-softmax
  correction ``s_j - log(M q_j)`` on the negatives); ``negatives = 0``: over every item.
- ``bpr-max`` (Hidasi & Karatzoglou 2018): ``-log Σ_j w_j σ(s_p - s_j) + λ Σ_j w_j s_j²``,
  ``w = softmax(s_n)``, ``λ = bpreg``.
- ``top1-max``: ``Σ_j w_j (σ(s_j - s_p) + σ(s_j²))``.

Axes: B batch, T steps, E embedding size, H hidden units, N items (+1 for padding row 0),
P scored positions, M negatives.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as nnf

from rnnkit._options import option
from rnnkit.models._config import (
    CELLS,
    CellOptions,
    check_model_config,
    recurrent_stack,
)

__all__ = ["RecommenderConfig", "Recommender", "LOSSES", "ranking_loss", "sample_items"]

LOSSES = ("ce", "bpr-max", "top1-max")


@dataclass
class RecommenderConfig(CellOptions):
    """Model options of ``rnnkit recommend`` (the ``[model]`` section)."""

    embedding_size: int = option(128, "item embedding size (also the scoring space)")
    hidden_size: int = option(256, "hidden units of each recurrent layer")
    cell: str = option("gru", "recurrent cell", tuple(CELLS))
    num_layers: int = option(1, "stacked recurrent layers")
    dropout: float = option(0.1, "dropout between layers and on the output state")
    embedding_dropout: float = option(0.25, "dropout on the input item embeddings")
    item_bias: bool = option(True, "add a learned score bias b_j per item")

    def __post_init__(self) -> None:
        check_model_config(self, ("embedding_size", "hidden_size", "num_layers"))
        if not 0.0 <= self.embedding_dropout < 1.0:
            raise ValueError("embedding_dropout: expected a value in [0, 1), "
                             f"got {self.embedding_dropout}")


class Recommender(nn.Module):
    """Item embedding → recurrent layers → dot product with the tied item embeddings."""

    def __init__(self, num_items: int, config: RecommenderConfig) -> None:
        """``num_items``: rows of the embedding table, the padding row 0 included."""
        super().__init__()
        size = config.embedding_size
        self.embedding = nn.Embedding(num_items, size, padding_idx=0)
        nn.init.normal_(self.embedding.weight, std=size ** -0.5)
        with torch.no_grad():
            self.embedding.weight[0].zero_()
        self.input_dropout = nn.Dropout(config.embedding_dropout)
        self.rnn = recurrent_stack(config, size)
        self.output_dropout = nn.Dropout(config.dropout)
        self.project = nn.Linear(config.hidden_size, size)
        self.bias = nn.Parameter(torch.zeros(num_items)) if config.item_bias else None

    def forward(self, items: Tensor, lengths: Tensor) -> Tensor:
        """Query vectors (B, T, E) of padded ``items`` (B, T) with ``lengths`` (B,)."""
        embedded = self.input_dropout(self.embedding(items))  # (B, T, E)
        states, _ = self.rnn(embedded, lengths=lengths)  # (B, T, H)
        return self.project(self.output_dropout(states))  # (B, T, E)

    def last_query(self, items: Tensor, lengths: Tensor) -> Tensor:
        """The query vector (B, E) after each sequence's last item."""
        queries = self(items, lengths)  # (B, T, E)
        return queries[torch.arange(len(lengths)), lengths - 1]

    def item_weights(self) -> Tensor:
        """The tied output embeddings (N, E); row 0 is padding."""
        return self.embedding.weight

    def item_bias(self) -> Tensor | None:
        """The per-item score bias (N,), or None."""
        return self.bias

    def score_all(self, items: Tensor, lengths: Tensor) -> Tensor:
        """Scores (B, N) of every item after each sequence; padding scores -inf."""
        scores = self.last_query(items, lengths) @ self.item_weights().T  # (B, N)
        if self.bias is not None:
            scores = scores + self.bias
        scores[:, 0] = float("-inf")
        return scores


def sample_items(probabilities: Tensor, count: int, generator=None) -> Tensor:
    """``count`` item indices (M,) drawn with replacement from ``probabilities`` (N,)."""
    return torch.multinomial(probabilities, count, replacement=True, generator=generator)


def ranking_loss(queries: Tensor, targets: Tensor, weights: Tensor, kind: str,
                 negatives: Tensor | None = None, log_q: Tensor | None = None,
                 bpreg: float = 1.0, bias: Tensor | None = None) -> Tensor:
    """Mean loss over P positions.

    Args:
        queries: (P, E) query vectors.
        targets: (P,) the true next items.
        weights: (N, E) item embeddings (row 0 padding).
        kind: one of :data:`LOSSES`.
        negatives: (M,) negative items shared by the positions; None: every item (``ce`` only).
        log_q: (M,) ``log(M q_j)`` of the negatives, subtracted from their ``ce`` logits.
        bpreg: λ of ``bpr-max``'s score regularisation.
        bias: (N,) per-item score bias, or None.
    """
    if negatives is None:
        if kind != "ce":
            raise ValueError(f"loss {kind!r} needs sampled negatives (negatives > 0)")
        logits = queries @ weights.T  # (P, N)
        if bias is not None:
            logits = logits + bias
        logits[:, 0] = float("-inf")
        return nnf.cross_entropy(logits, targets)
    positive = (queries * weights[targets]).sum(-1)  # (P,)
    scores = queries @ weights[negatives].T  # (P, M)
    if bias is not None:
        positive = positive + bias[targets]
        scores = scores + bias[negatives]
    same = negatives[None, :] == targets[:, None]  # (P, M): the true item drawn as a negative
    if kind == "ce":
        shifted = scores - log_q if log_q is not None else scores
        logits = torch.cat([positive[:, None], shifted.masked_fill(same, float("-inf"))], 1)
        return nnf.cross_entropy(logits, torch.zeros_like(targets))
    softmax = torch.softmax(scores.masked_fill(same, float("-inf")), 1)  # (P, M)
    if kind == "bpr-max":
        ranked = (softmax * torch.sigmoid(positive[:, None] - scores)).sum(1)
        return (-torch.log(ranked + 1e-24) + bpreg * (softmax * scores ** 2).sum(1)).mean()
    if kind == "top1-max":
        terms = torch.sigmoid(scores - positive[:, None]) + torch.sigmoid(scores ** 2)
        return (softmax * terms).sum(1).mean()
    raise ValueError(f"loss: expected one of {', '.join(LOSSES)}, got {kind!r}")
