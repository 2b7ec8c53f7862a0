r"""Sequence classifier: an RNN reads the whole text; one vector stands for it; a linear layer
scores the classes.

The primer's point: the last hidden state ``s_T`` has seen every input, so it can stand for the
whole sequence. ``pooling="last"`` (the default) uses the final state of the last layer, both
directions when bidirectional (``[→s_T ; ←s_1]``, each direction's own last step, so padding
never changes it). Alternatives over the last layer's outputs ``o_1 … o_T``:

- ``mean``: ``(1/T) Σ_t o_t``;
- ``max``: the element-wise maximum over t;
- ``attention``: ``Σ_t α_t o_t`` with ``α = softmax_t(v·tanh(W o_t))``.

Padding positions never enter any of them. Scores: ``logits = V dropout(r) + b``.

``embed_dropout`` (Gal & Ghahramani, 2016) drops whole word types while training: per batch,
each vocabulary row is zeroed with that probability (every occurrence of the word in the batch
at once) and the kept rows are scaled by ``1/(1-p)``; ordinary dropout then still applies.

With ``char_vocab_size > 0`` each token's input is ``[E w_t ; c_t]``: its embedding and the
final states of a bidirectional character RNN over its spelling (the tagger's
:class:`~rnnkit.models._chars.CharEncoder`), so a token unseen in training (``<unk>``) still
gets a representation from prefixes and suffixes.

Axes: B texts, T tokens, C characters per token, E embedding, H hidden units, D directions,
K classes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from rnnkit._options import option
from rnnkit.models._chars import (
    CharOptions,
    CharSizes,
    WordCharRNN,
    check_word_char_config,
    join_chars,
)
from rnnkit.models._config import CELLS, CellOptions
from rnnkit.models.lm_features import LMFeatureSizes, join_lm_features

__all__ = ["ClassifierOptions", "ClassifierConfig", "Classifier", "POOLINGS"]

POOLINGS = ("last", "mean", "max", "attention")


@dataclass(kw_only=True)
class ClassifierOptions(CellOptions, CharOptions):
    """The options a user chooses (``rnnkit classify train``'s ``model`` section, flags
    ``--cell``, ``--embedding-size``, …); :class:`ClassifierConfig` adds the sizes that come
    from the data. Keyword-only."""

    cell: str = option("lstm", "recurrent cell", choices=tuple(CELLS))
    embedding_size: int = option(128, "embedding size", aliases=("embed_dim",))
    hidden_size: int = option(128, "hidden size (per direction)")
    num_layers: int = option(1, "RNN layers")
    bidirectional: bool = option(True, "read the text both ways")
    pooling: str = option(
        "last", "sequence representation: last (final hidden state), mean, max or attention",
        choices=POOLINGS)
    dropout: float = option(0.5, "dropout on embeddings, between layers and before the output "
                                 "layer")
    embed_dropout: float = option(
        0.0, "probability of dropping a whole word type (every occurrence in the batch) while "
        "training (Gal & Ghahramani)")


@dataclass
class ClassifierConfig(ClassifierOptions, CharSizes, LMFeatureSizes):
    """Sizes and options of a :class:`Classifier`: the sizes from the data positional, the
    options by keyword. ``char_vocab_size = 0`` (the default) turns the character RNN off."""

    vocab_size: int
    num_classes: int
    pad_id: int = 0

    def __post_init__(self) -> None:
        check_word_char_config(self, "num_classes")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling: expected one of {', '.join(POOLINGS)}, "
                             f"got {self.pooling!r}")
        if not 0.0 <= self.embed_dropout < 1.0:
            raise ValueError(f"embed_dropout: expected a value in [0, 1), "
                             f"got {self.embed_dropout}")

    def to_dict(self) -> dict:
        return asdict(self)


class Classifier(WordCharRNN):
    """Embedding → RNN stack → pooled representation → class scores."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__(config, config.bidirectional)
        self.directions = 2 if config.bidirectional else 1
        size = self.directions * config.hidden_size
        if config.pooling == "attention":
            self.attention = nn.Sequential(nn.Linear(size, size), nn.Tanh(),
                                           nn.Linear(size, 1, bias=False))
        self.output = nn.Linear(size, config.num_classes)

    def forward(self, tokens: Tensor, lengths: Tensor, chars: Tensor | None = None,
                char_lengths: Tensor | None = None, noise: Tensor | None = None) -> Tensor:
        """tokens ``(B, T)``, lengths ``(B,)`` (each ≥ 1); with the character RNN also chars
        ``(B, T, C)`` and char_lengths ``(B, T)`` (0 at padding) → logits ``(B, K)``.
        ``noise`` ``(B, T, E)``, if given, is added to the word embeddings (adversarial
        training)."""
        return self.output(self.dropout(self.encode(tokens, lengths, chars, char_lengths, noise)))

    def encode(self, tokens: Tensor, lengths: Tensor, chars: Tensor | None = None,
               char_lengths: Tensor | None = None, noise: Tensor | None = None) -> Tensor:
        """The sequence representation ``(B, D·H)``."""
        embedded = self.embedding(tokens)  # (B, T, E)
        if noise is not None:
            embedded = embedded + noise
        p = self.config.embed_dropout
        if self.training and p > 0.0:
            keep = torch.rand(self.config.vocab_size, device=tokens.device) >= p  # (V,)
            scale = keep.to(embedded.dtype) / (1.0 - p)
            embedded = embedded * scale[tokens].unsqueeze(-1)  # whole word types dropped
        embedded = join_chars(embedded, self.chars, chars, char_lengths,
                              "classifier")  # (B, T, E + 2·H_c)
        embedded = join_lm_features(embedded, self.lm_features, tokens, lengths)  # (B, T, +F)
        embedded = self.dropout(embedded)
        outputs, final = self.rnn(embedded, lengths=lengths)  # (B, T, D·H)
        pooling = self.config.pooling
        if pooling == "last":
            h_n = final[0] if isinstance(final, tuple) else final  # (L·D, B, H)
            return torch.cat(list(h_n[-self.directions :]), dim=-1)  # (B, D·H)
        mask = _mask(lengths, outputs.shape[1], outputs.device)  # (B, T)
        if pooling == "mean":
            return outputs.sum(1) / lengths.to(outputs).unsqueeze(1)
        if pooling == "max":
            return outputs.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)
        scores = self.attention(outputs).squeeze(-1).masked_fill(~mask, float("-inf"))  # (B, T)
        weights = torch.softmax(scores, dim=1)  # (B, T)
        return torch.einsum("bt,bth->bh", weights, outputs)


def _mask(lengths: Tensor, steps: int, device) -> Tensor:
    """``(B, T)`` True at real positions."""
    return torch.arange(steps, device=device).unsqueeze(0) < lengths.to(device).unsqueeze(1)
