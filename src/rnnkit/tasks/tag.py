"""Sequence labelling (POS tagging, NER): the pieces of the ``tag`` application
(:mod:`rnnkit.apps.tag`): vocabularies, encoding, the Trainer's task, inference and scoring.

Words are looked up in a vocabulary of the training words seen ``min_freq`` times or more
(others are ``<unk>``, which is how the ``<unk>`` vector is learnt with the default
``min_freq = 2``). With ``min_freq = 1`` every word is in the vocabulary; then ``word_dropout``
replaces the words seen once by ``<unk>`` at that rate while training (with ``min_freq >= 2``
those words are ``<unk>`` already and ``word_dropout`` has no effect). The character RNN sees
every word's characters (case kept), so unknown words still get a representation.

A checkpoint directory holds ``model.safetensors``, ``config.json`` (the task and model configs)
and ``words.json``, ``chars.json``, ``tags.json`` (vocabularies).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from torch import Tensor
from torch.nn import functional as nnf

from rnnkit.data.bucketing import BucketBatchSampler, pad_sequences
from rnnkit.data.conll import TaggedDocument, read_tagged, write_tagged
from rnnkit.data.vocab import PAD, UNK, Vocabulary
from rnnkit.data.words import CharVocab, drop_words, pad_chars, singletons
from rnnkit.models.tagger import Tagger, TaggerConfig
from rnnkit.tasks import metrics as M
from rnnkit.tasks._labels import (
    check_known,
    device_of,
    label_vocabulary,
    run_in_buckets,
    shard_batches,
)
from rnnkit.train import StepOutput
from rnnkit.train import checkpoint as ckpt

__all__ = ["TagVocabs", "TagTask", "read_gold", "evaluate_document", "predict_document", "encode",
           "collate", "predict_tags", "score"]

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


def forward(model: Tagger, batch: dict[str, Tensor]) -> Tensor:
    """Tag scores ``(B, T, K)`` for a collated batch."""
    device = device_of(model)
    chars = batch.get("chars")
    char_lengths = batch.get("char_lengths")
    return model(
        batch["words"].to(device), batch["lengths"],
        None if chars is None else chars.to(device),
        None if char_lengths is None else char_lengths.to(device),
    )


def loss_fn(model: Tagger, batch: dict[str, Tensor]) -> tuple[Tensor, int]:
    """Mean cross-entropy over the real tokens of a batch, and their number."""
    logits = forward(model, batch)  # (B, T, K)
    targets = batch["tags"].to(logits.device)  # (B, T)
    loss = nnf.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)
    return loss, int((targets != IGNORE).sum())


def predict_tags(model: Tagger, encoded: list[Encoded], vocabs: TagVocabs,
                 batch_size: int = 64, *, bucketed: bool = True) -> list[list[str]]:
    """The most likely tag of every word, sentence by sentence."""
    def run(indices: list[int]) -> Tensor:
        batch = collate([encoded[i] for i in indices], vocabs)
        return forward(model, batch).argmax(-1)  # (B, T)

    lengths = [len(item.words) for item in encoded]
    best = run_in_buckets(model, lengths, batch_size, run, bucketed=bucketed)
    return [vocabs.tags.decode(ids[:n].tolist()) for ids, n in zip(best, lengths, strict=True)]


def score(gold: list[list[str]], pred: list[list[str]], tag_names: list[str]) -> dict:
    """Token accuracy, per-tag P/R/F1 and (for BIO/BIOES tags) span P/R/F1."""
    flat_gold = [t for s in gold for t in s]
    flat_pred = [t for s in pred for t in s]
    result = {
        "tokens": len(flat_gold),
        "sentences": len(gold),
        "accuracy": M.accuracy(flat_gold, flat_pred),
        "per_tag": M.per_label_prf(flat_gold, flat_pred, sorted(set(flat_gold) | set(tag_names))),
    }
    if M.is_span_scheme(flat_gold):
        spans = M.span_prf(gold, pred)
        result.update({f"span_{k}": v for k, v in spans.items() if k != "support"})
    return result


def evaluate_document(model: Tagger, doc: TaggedDocument, vocabs: TagVocabs, *,
                      batch_size: int = 64, unknown_labels: str = "error") -> dict:
    """Score ``model`` on a gold-tagged document."""
    places = [doc.where(i, j) for i, s in enumerate(doc.sentences) for j in range(len(s.words))]
    gold_flat = [t for s in doc.sentences for t in s.tags]
    check_known(gold_flat, places, vocabs.tags, unknown_labels, "tag")
    pred = predict_tags(model, encode(doc, vocabs), vocabs, batch_size)
    gold = [list(s.tags) for s in doc.sentences]
    return score(gold, pred, vocabs.tags.tokens)


def predict_document(model: Tagger, doc: TaggedDocument, vocabs: TagVocabs, output: str | None,
                     batch_size: int = 64) -> str:
    """Tag ``doc`` and write it with the tag column filled (atomically, unless ``output`` is
    None); returns the text."""
    pred = predict_tags(model, encode(doc, vocabs), vocabs, batch_size)
    return write_tagged(doc, pred, output)


def read_gold(path: str, config: dict) -> TaggedDocument:
    """A gold-tagged file read with the task's format and column options."""
    return read_tagged(path, fmt=config["format"], tag_column=config["tag_column"])


class TagTask:
    """The tagging task as the :class:`~rnnkit.train.Trainer` sees it."""

    name = "tag"
    monitor = "valid_accuracy"
    monitor_mode = "max"
    unit = "tok"

    def __init__(self, config, train_doc: TaggedDocument,
                 valid_doc: TaggedDocument | None, vocabs: TagVocabs, model_cfg: TaggerConfig,
                 seed: int = 0):
        self.config, self.vocabs, self.model_cfg = config, vocabs, model_cfg
        self.seed = seed
        self.train_items = encode(train_doc, vocabs)
        self.train_format = train_doc.format
        # Without a validation file, the first 500 training sentences stand in.
        self.dev_items = encode(valid_doc, vocabs) if valid_doc else self.train_items[:500]
        self.dev_gold = [[vocabs.tags.token_of(t) if t is not None else "<unseen>"
                          for t in item.tags] for item in self.dev_items]

    def train_batches(self, epoch: int, shard):
        sampler = BucketBatchSampler([len(item.words) for item in self.train_items],
                                     self.config.batch_size, max_tokens=self.config.max_tokens,
                                     seed=self.seed)
        sampler.set_epoch(epoch)
        batches = shard_batches(sampler.batches(), shard)
        rng = random.Random(self.seed * 7919 + epoch)
        return [collate([self.train_items[i] for i in batch], self.vocabs,
                        word_dropout=self.config.word_dropout, rng=rng) for batch in batches]

    def step(self, model, batch) -> StepOutput:
        loss, count = loss_fn(model, batch)
        return StepOutput(loss, count)

    def evaluate(self, model) -> dict[str, float]:
        pred = predict_tags(model, self.dev_items, self.vocabs, 2 * self.config.batch_size)
        total = correct = 0
        for gold_tags, pred_tags in zip(self.dev_gold, pred, strict=True):
            total += len(gold_tags)
            correct += sum(g == p for g, p in zip(gold_tags, pred_tags, strict=True))
        loss_sum = 0.0
        for start in range(0, len(self.dev_items), 64):
            batch = collate(self.dev_items[start : start + 64], self.vocabs)
            loss, count = loss_fn(model, batch)
            loss_sum += float(loss) * count
        return {"valid_loss": loss_sum / max(total, 1), "valid_accuracy": correct / total}

    def checkpoint_files(self) -> dict:
        data = {"format": self.train_format, "tag_column": self.config.tag_column}
        data["lowercase"] = self.vocabs.lowercase
        if self.vocabs.chars is not None:
            data["max_word_length"] = self.vocabs.chars.max_word_length
        return {ckpt.CONFIG: {"model": self.model_cfg.to_dict(), "data": data},
                **self.vocabs.files()}
