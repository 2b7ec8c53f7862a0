r"""Sequence tagger: a bidirectional RNN over word vectors, one tag score vector per word.

Each word ``w_t`` becomes ``x_t = [E w_t ; c_t]``: its embedding, concatenated (optionally) with
``c_t``, the final states of a bidirectional character RNN read over the word's characters, which
gives rare and unknown words a representation from their spelling. A bidirectional stack reads
``x_1 … x_T``; the output at step t, ``[→s_t ; ←s_t]``, sees the whole sentence, and the output
layer gives the tag scores ``o_t = V [→s_t ; ←s_t] + b`` (the primer's "result for the current
step").

Axes: B sentences, T words, C characters per word, N real words in the batch, E word embedding,
K tags, H hidden units, D = 2 directions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import Tensor, nn

from rnnkit._options import option
from rnnkit.models._chars import (
    CharEncoder,
    CharOptions,
    CharSizes,
    WordCharRNN,
    check_word_char_config,
    join_chars,
)
from rnnkit.models._config import CELLS, CellOptions
from rnnkit.models.lm_features import LMFeatureSizes, join_lm_features

__all__ = ["TaggerOptions", "TaggerConfig", "Tagger", "CharEncoder", "CELLS"]


@dataclass(kw_only=True)
class TaggerOptions(CellOptions, CharOptions):
    """The options a user chooses (``rnnkit tag train``'s ``model`` section, flags ``--cell``,
    ``--embedding-size``, …); :class:`TaggerConfig` adds the sizes that come from the data.
    Keyword-only."""

    cell: str = option("lstm", "recurrent cell", choices=tuple(CELLS))
    embedding_size: int = option(100, "word embedding size", aliases=("word_dim",))
    hidden_size: int = option(128, "word RNN hidden size (per direction)")
    num_layers: int = option(2, "word RNN layers")
    dropout: float = option(0.33, "dropout on embeddings, between layers, before the output "
                                  "layer")


@dataclass
class TaggerConfig(TaggerOptions, CharSizes, LMFeatureSizes):
    """Sizes of a :class:`Tagger`: the sizes from the data positional, the options by keyword.
    ``char_vocab_size = 0`` turns the character RNN off."""

    vocab_size: int
    num_tags: int
    pad_id: int = 0

    def __post_init__(self) -> None:
        check_word_char_config(self, "num_tags")

    def to_dict(self) -> dict:
        return asdict(self)


class Tagger(WordCharRNN):
    """Bidirectional word (+ character) RNN tagger; see the module docstring."""

    def __init__(self, config: TaggerConfig) -> None:
        super().__init__(config, bidirectional=True)
        self.output = nn.Linear(2 * config.hidden_size, config.num_tags)

    def forward(
        self,
        words: Tensor,
        lengths: Tensor,
        chars: Tensor | None = None,
        char_lengths: Tensor | None = None,
    ) -> Tensor:
        """words ``(B, T)``, lengths ``(B,)``; with the character RNN also chars ``(B, T, C)``
        and char_lengths ``(B, T)`` (0 at padding). Returns tag scores ``(B, T, K)``; rows past
        a sentence's end are the output layer's bias alone and must be masked by the caller."""
        inputs = join_chars(self.embedding(words), self.chars, chars, char_lengths,
                            "tagger")  # (B, T, E + 2·H_c)
        inputs = join_lm_features(inputs, self.lm_features, words, lengths)  # (B, T, +F)
        hidden, _ = self.rnn(self.dropout(inputs), lengths=lengths)  # (B, T, 2H)
        return self.output(self.dropout(hidden))  # (B, T, K)
