r"""The character RNN that the tagger and the classifier share: each word's characters → the
final states of a bidirectional RNN, ``c = [→h_C ; ←h_1]``, a representation of the word from
its spelling (prefixes, suffixes), which rare and unknown words also get.

Axes: B texts, T words, C characters per word, N real words, U distinct words, H_c hidden units.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rnnkit._options import option, option_group
from rnnkit.models._config import CELLS, check_model_config, recurrent_stack
from rnnkit.models.lm_features import LMFeatures

__all__ = ["CharEncoder", "CharOptions", "CharSizes", "WordCharRNN", "check_word_char_config",
           "join_chars"]


@option_group
@dataclass(kw_only=True)
class CharOptions:
    """The character RNN's options, one group in the tagger's and the classifier's model
    options (flags ``--char-dim``, ``--char-hidden``; used with ``--chars``)."""

    char_dim: int = option(32, "character embedding size (with --chars)")
    char_hidden: int = option(64, "char RNN hidden size, per direction (with --chars)")


@dataclass(kw_only=True)
class CharSizes:
    """The character vocabulary's size in the tagger's and the classifier's configs
    (keyword-only, as :class:`~rnnkit.models._config.CellOptions`); ``0`` turns the character
    RNN off."""

    char_vocab_size: int = 0


def check_word_char_config(config, outputs: str) -> None:
    """``ValueError`` naming the field, for the config of a :class:`WordCharRNN` model:
    ``char_vocab_size`` ≥ 0; the vocabulary, ``outputs`` (its classes or tags), embedding,
    hidden and layer sizes ≥ 1, and the character RNN's with one; the cell, the dropout and
    the cell options (:func:`~rnnkit.models._config.check_model_config`)."""
    if config.char_vocab_size < 0:
        raise ValueError(f"char_vocab_size: expected an integer >= 0, "
                         f"got {config.char_vocab_size}")
    chars = ("char_dim", "char_hidden") if config.char_vocab_size > 0 else ()
    check_model_config(config, ("vocab_size", outputs, "embedding_size", "hidden_size",
                                "num_layers", *chars))


class CharEncoder(nn.Module):
    """Characters of each real word → final states of a bidirectional RNN, ``(N, 2·H_c)``."""

    def __init__(self, vocab_size: int, char_dim: int, char_hidden: int, cell: str = "lstm",
                 pad_id: int = 0) -> None:
        super().__init__()
        self.pad_id = pad_id
        self.embedding = nn.Embedding(vocab_size, char_dim, padding_idx=pad_id)
        self.rnn = CELLS[cell](char_dim, char_hidden, batch_first=True, bidirectional=True)
        self.output_size = 2 * char_hidden

    def forward(self, chars: Tensor, char_lengths: Tensor) -> Tensor:
        """chars ``(N, C)``, char_lengths ``(N,)`` (each ≥ 1) → ``(N, 2·H_c)``."""
        _, final = self.rnn(self.embedding(chars), lengths=char_lengths)
        hidden = final[0] if isinstance(final, tuple) else final  # (2, N, H_c)
        return torch.cat([hidden[0], hidden[1]], dim=-1)  # (N, 2·H_c)

    def features(self, chars: Tensor, char_lengths: Tensor) -> Tensor:
        """chars ``(B, T, C)``, char_lengths ``(B, T)`` (0 at padding) → ``(B, T, 2·H_c)``,
        zeros at padding."""
        real = char_lengths > 0  # (B, T)
        # Each distinct word of the batch is read once (a sentence batch repeats many words).
        words, inverse = torch.unique(chars[real], dim=0, return_inverse=True)  # (U, C), (N,)
        lengths = (words != self.pad_id).sum(1)  # (U,); char ids are never pad
        encoded = self(words, lengths.cpu())[inverse]  # (N, 2·H_c)
        features = encoded.new_zeros(*chars.shape[:2], encoded.shape[-1])  # (B, T, 2·H_c)
        features[real] = encoded
        return features


class WordCharRNN(nn.Module):
    """What the tagger and the classifier build alike: each word's input ``x_t = [E w_t ; c_t]``,
    its ``embedding`` joined (with a character RNN, ``chars``; None without) by its spelling
    (and, with ``lm_features``, by a frozen LM's states: :mod:`rnnkit.models.lm_features`),
    the recurrent stack ``rnn`` over ``x_1 … x_T`` and ``dropout``; from a model config's
    ``vocab_size``, ``embedding_size``, ``pad_id``, ``char_vocab_size`` (0: no character RNN),
    ``char_dim``, ``char_hidden``, ``lm_features``, ``dropout`` and its recurrent options
    (:func:`~rnnkit.models._config.recurrent_stack`). The model adds its output layer."""

    def __init__(self, config, bidirectional: bool) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_size,
                                      padding_idx=config.pad_id)
        self.chars = (CharEncoder(config.char_vocab_size, config.char_dim, config.char_hidden,
                                  config.cell, config.pad_id)
                      if config.char_vocab_size > 0 else None)
        self.lm_features = (LMFeatures(config.lm_features, config.vocab_size)
                            if config.lm_features else None)
        input_size = (config.embedding_size + (self.chars.output_size if self.chars else 0)
                      + (self.lm_features.output_size if self.lm_features else 0))
        self.rnn = recurrent_stack(config, input_size, bidirectional=bidirectional)
        self.dropout = nn.Dropout(config.dropout)


def join_chars(embedded: Tensor, encoder: CharEncoder | None, chars: Tensor | None,
               char_lengths: Tensor | None, owner: str) -> Tensor:
    """``embedded`` ``(B, T, E)`` with the character features appended (with an ``encoder``):
    ``(B, T, E + 2·H_c)``."""
    if encoder is None:
        return embedded
    if chars is None or char_lengths is None:
        raise ValueError(f"chars, char_lengths: required by a {owner} with a char RNN")
    return torch.cat([embedded, encoder.features(chars, char_lengths)], dim=-1)
