"""The tagging task as the :class:`~rnnkit.train.Trainer` sees it: batches, the loss, validation
and the checkpoint's JSON files."""

from __future__ import annotations

import random

from torch import Tensor
from torch.nn import functional as nnf

from rnnkit.data.bucketing import BucketBatchSampler
from rnnkit.data.conll import TaggedDocument
from rnnkit.models.tagger import Tagger, TaggerConfig
from rnnkit.tasks._labels import shard_batches
from rnnkit.tasks.tag.encoding import IGNORE, TagVocabs, collate, encode
from rnnkit.tasks.tag.inference import forward, predict_tags
from rnnkit.train import StepOutput
from rnnkit.train import checkpoint as ckpt

__all__ = ["TagTask", "loss_fn"]


def loss_fn(model: Tagger, batch: dict[str, Tensor]) -> tuple[Tensor, int]:
    """Mean cross-entropy over the real tokens of a batch, and their number."""
    logits = forward(model, batch)  # (B, T, K)
    targets = batch["tags"].to(logits.device)  # (B, T)
    loss = nnf.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)
    return loss, int((targets != IGNORE).sum())


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
