"""Word-level encoding that the tagger and the classifier share: the character vocabulary of a
word + character model, word dropout of the words seen once in training, and character padding.

Axes: B texts, T words, C characters per word.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from rnnkit.data.vocab import PAD, UNK, Vocabulary

__all__ = ["CharVocab", "singletons", "drop_words", "pad_chars"]


@dataclass
class CharVocab:
    """The characters of the training words, and how much of a word the character RNN reads."""

    vocab: Vocabulary
    max_word_length: int = 30

    @classmethod
    def build(cls, words: Iterable[str], max_word_length: int) -> CharVocab:
        return cls(Vocabulary.build(([c for word in words for c in word],), specials=(PAD, UNK)),
                   max_word_length)

    @property
    def pad_id(self) -> int:
        return self.vocab.pad_id

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, words: Iterable[str]) -> list[list[int]]:
        """Character ids of each word (at least one: an empty word reads as ``<unk>``)."""
        return [self.vocab.encode(word[: self.max_word_length]) or [self.vocab.unk_id]
                for word in words]


def singletons(id_lists: Iterable[Sequence[int]], unk_id: int) -> frozenset[int]:
    """The word ids seen exactly once in ``id_lists`` (``<unk>`` never counts)."""
    counts = Counter(i for ids in id_lists for i in ids)
    return frozenset(i for i, n in counts.items() if n == 1 and i != unk_id)


def drop_words(id_lists: Sequence[Sequence[int]], singles: frozenset[int], unk_id: int,
               rate: float, rng: random.Random) -> list[list[int]]:
    """Each word of ``singles`` replaced by ``unk_id`` with probability ``rate`` (how the
    ``<unk>`` vector learns to stand for rare words); one draw per such word, in order."""
    if rate <= 0.0 or not singles:
        return [list(ids) for ids in id_lists]
    return [[unk_id if i in singles and rng.random() < rate else i for i in ids]
            for ids in id_lists]


def pad_chars(char_ids: Sequence[Sequence[Sequence[int]]], steps: int,
              pad_id: int) -> tuple[Tensor, Tensor]:
    """Per text, per word character ids → ``chars`` ``(B, T, C)`` padded with ``pad_id`` and
    ``char_lengths`` ``(B, T)``, 0 at padding words."""
    longest = max((len(word) for text in char_ids for word in text), default=1)
    chars = torch.full((len(char_ids), steps, longest), pad_id, dtype=torch.long)  # (B, T, C)
    char_lengths = torch.zeros(len(char_ids), steps, dtype=torch.long)  # (B, T)
    for b, text in enumerate(char_ids):
        for t, word in enumerate(text):
            chars[b, t, : len(word)] = torch.tensor(word, dtype=torch.long)
            char_lengths[b, t] = len(word)
    return chars, char_lengths
