"""Tagged sentences as tensors: the tagger's vocabularies, sentences as ids, padded batches."""

from __future__ import annotations

import random
from dataclasses import dataclass

from torch import Tensor

from rnnkit.data.bucketing import pad_sequences
from rnnkit.data.conll import TaggedDocument, read_tagged
from rnnkit.data.vocab import PAD, UNK, Vocabulary
from rnnkit.data.words import CharVocab, drop_words, pad_chars, singletons
from rnnkit.tasks._labels import label_vocabulary

__all__ = ["IGNORE", "TagVocabs", "Encoded", "encode", "collate", "read_gold"]

IGNORE = -100  # target id at padding positions: cross-entropy skips it


@dataclass
class TagVocabs:
    """The three vocabularies of a tagger and the options that shape encoding."""

    words: Vocabulary
    chars: CharVocab | None
    tags: Vocabulary
    lowercase: bool = True
    singletons: frozenset[int] = frozenset()  # word ids seen once in training

    @classmethod
    def build(cls, doc: TaggedDocument, config) -> TagVocabs:
        sentences = doc.sentences
        words = [[_norm(w, config.lowercase) for w in s.words] for s in sentences]
        word_vocab = Vocabulary.build(words, min_freq=config.min_freq, specials=(PAD, UNK))
        chars = (CharVocab.build((w for s in sentences for w in s.words),
                                 config.max_word_length) if config.chars else None)
        tags = label_vocabulary([t for s in sentences for t in s.tags])
        singles = singletons((word_vocab.encode(s) for s in words), word_vocab.unk_id)
        return cls(word_vocab, chars, tags, config.lowercase, singles)

    def files(self) -> dict:
        """JSON files for the checkpoint."""
        files = {"words.json": self.words.to_json(), "tags.json": self.tags.to_json()}
        if self.chars is not None:
            files["chars.json"] = self.chars.vocab.to_json()
        return files


def _norm(word: str, lowercase: bool) -> str:
    return word.lower() if lowercase else word


@dataclass
class Encoded:
    """One sentence as ids; ``tags`` are None where unknown or not given."""

    words: list[int]
    chars: list[list[int]]
    tags: list[int | None]


def encode(doc: TaggedDocument, vocabs: TagVocabs) -> list[Encoded]:
    """Every sentence of ``doc`` as ids (unknown gold tags become None)."""
    encoded = []
    for sentence in doc.sentences:
        words = vocabs.words.encode(_norm(w, vocabs.lowercase) for w in sentence.words)
        chars = vocabs.chars.encode(sentence.words) if vocabs.chars is not None else []
        tags = [vocabs.tags.id_of(t) if t in vocabs.tags else None for t in sentence.tags]
        encoded.append(Encoded(words, chars, tags))
    return encoded


def collate(items: list[Encoded], vocabs: TagVocabs, *, word_dropout: float = 0.0,
            rng: random.Random | None = None) -> dict[str, Tensor]:
    """A batch: ``words`` ``(B, T)``, ``lengths`` ``(B,)``, ``tags`` ``(B, T)`` (IGNORE at
    padding and unknown tags) and, with chars, ``chars`` ``(B, T, C)``, ``char_lengths``
    ``(B, T)``."""
    word_ids = drop_words([item.words for item in items], vocabs.singletons, vocabs.words.unk_id,
                          word_dropout, rng or random.Random())
    words, lengths = pad_sequences(word_ids, vocabs.words.pad_id)
    tag_ids = [[IGNORE if t is None else t for t in item.tags] for item in items]
    batch = {"words": words, "lengths": lengths, "tags": pad_sequences(tag_ids, IGNORE)[0]}
    if vocabs.chars is not None:
        chars, char_lengths = pad_chars([item.chars for item in items], words.shape[1],
                                        vocabs.chars.pad_id)
        batch.update(chars=chars, char_lengths=char_lengths)
    return batch


def read_gold(path: str, config: dict) -> TaggedDocument:
    """A gold-tagged file read with the task's format and column options."""
    return read_tagged(path, fmt=config["format"], tag_column=config["tag_column"])
