"""Tokenizers for language modelling: characters, words (regex), subword BPE.

All three turn text into ids and back, are built from the training text alone (no downloads) and
are saved as JSON with the checkpoint (``to_json`` / :func:`tokenizer_from_json`).

- ``char``: one token per Unicode character; characters rarer than ``min_freq`` or unseen
  become ``<unk>``.
- ``word``: words (``\\w+``), single punctuation marks and newlines (the regex
  :data:`WORD_PATTERN`); decoding joins with spaces. Unseen words become ``<unk>``.
- ``bpe``: byte-level BPE trained with the ``tokenizers`` library; every text encodes (no
  unknown symbols) and decodes back exactly.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Any, Protocol

import numpy as np

from rnnkit.data.vocab import UNK, Vocabulary
from rnnkit.errors import RnnkitError

__all__ = [
    "Tokenizer",
    "CharTokenizer",
    "WordTokenizer",
    "BPETokenizer",
    "TOKENIZERS",
    "build_tokenizer",
    "tokenizer_from_json",
    "WORD_PATTERN",
]

TOKENIZERS = ("char", "word", "bpe")
WORD_PATTERN = r"\w+|[^\w\s]|\n"


class Tokenizer(Protocol):
    """Text ↔ ids."""

    kind: str

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> list[int] | np.ndarray: ...

    def decode(self, ids: Iterable[int]) -> str: ...

    def to_json(self) -> dict[str, Any]: ...


class CharTokenizer:
    """One token per character; ids through a :class:`Vocabulary` with ``<unk>``."""

    kind = "char"

    def __init__(self, vocab: Vocabulary) -> None:
        self.vocab = vocab
        self._unk = vocab.unk_id
        # code point → id for the Basic Multilingual Plane: encoding is one array lookup
        self._table = np.full(0x10000, -1 if self._unk is None else self._unk, dtype=np.int64)
        self._other: dict[int, int] = {}
        for index, token in enumerate(vocab):
            if len(token) == 1:
                code = ord(token)
                if code < 0x10000:
                    self._table[code] = index
                else:
                    self._other[code] = index

    @classmethod
    def train(cls, texts: Iterable[str], min_freq: int = 1, max_size: int | None = None):
        counts: Counter = Counter()
        for text in texts:
            counts.update(text)
        return cls(Vocabulary.build(counts, min_freq=min_freq, max_size=max_size,
                                    specials=(UNK,)))

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> np.ndarray:
        """Ids ``(len(text),)`` int64."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        ids = self._table[np.minimum(codes, 0xFFFF)]
        wide = np.nonzero(codes >= 0x10000)[0]
        for position in wide:  # rare: characters outside the BMP
            ids[position] = self._other.get(int(codes[position]), self._unk)
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.vocab.decode(ids))

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "vocab": self.vocab.to_json()}


class WordTokenizer:
    """Regex word tokens (:data:`WORD_PATTERN`); decoding joins them with spaces."""

    kind = "word"

    def __init__(self, vocab: Vocabulary, pattern: str = WORD_PATTERN) -> None:
        self.vocab = vocab
        self.pattern = pattern
        self._regex = re.compile(pattern)

    @classmethod
    def train(cls, texts: Iterable[str], min_freq: int = 1, max_size: int | None = None):
        regex = re.compile(WORD_PATTERN)
        counts: Counter = Counter()
        for text in texts:
            counts.update(regex.findall(text))
        return cls(Vocabulary.build(counts, min_freq=min_freq, max_size=max_size,
                                    specials=(UNK,)))

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        return self.vocab.encode(self._regex.findall(text))

    def decode(self, ids: Iterable[int]) -> str:
        text = " ".join(self.vocab.decode(ids))
        return text.replace(" \n ", "\n").replace(" \n", "\n").replace("\n ", "\n")

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "pattern": self.pattern, "vocab": self.vocab.to_json()}


class BPETokenizer:
    """Byte-level BPE from the ``tokenizers`` library, trained locally."""

    kind = "bpe"

    def __init__(self, backend) -> None:
        self.backend = backend

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 4096, min_freq: int = 2):
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers, trainers

        backend = HFTokenizer(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=min_freq, show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
        backend.train_from_iterator(texts, trainer=trainer)
        return cls(backend)

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text).ids

    def decode(self, ids: Iterable[int]) -> str:
        return self.backend.decode([int(i) for i in ids])

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "tokenizer": self.backend.to_str()}


def build_tokenizer(kind: str, texts: Iterable[str], *, vocab_size: int = 4096,
                    min_freq: int = 1) -> Tokenizer:
    """Train a tokenizer of ``kind`` on ``texts`` (an iterable of text chunks)."""
    if kind == "char":
        return CharTokenizer.train(texts, min_freq=min_freq)
    if kind == "word":
        return WordTokenizer.train(texts, min_freq=min_freq, max_size=vocab_size)
    if kind == "bpe":
        return BPETokenizer.train(texts, vocab_size=vocab_size, min_freq=max(min_freq, 2))
    raise ValueError(f"--tokenizer: expected one of {', '.join(TOKENIZERS)}, got {kind!r}")


def tokenizer_from_json(data: Any, *, source: str = "tokenizer") -> Tokenizer:
    """Inverse of ``to_json``; malformed data raises ``RnnkitError`` naming ``source``."""
    kind = data.get("kind") if isinstance(data, dict) else None
    try:
        if kind == "char":
            return CharTokenizer(Vocabulary.from_json(data["vocab"], source=source))
        if kind == "word":
            return WordTokenizer(Vocabulary.from_json(data["vocab"], source=source),
                                 data["pattern"])
        if kind == "bpe":
            from tokenizers import Tokenizer as HFTokenizer

            return BPETokenizer(HFTokenizer.from_str(data["tokenizer"]))
    except (KeyError, TypeError, ValueError, re.error, Exception) as err:
        if isinstance(err, RnnkitError):
            raise
        raise RnnkitError(f"{source}: damaged {kind} tokenizer: {err}") from None
    raise RnnkitError(f"{source}: unknown tokenizer kind {kind!r}")
