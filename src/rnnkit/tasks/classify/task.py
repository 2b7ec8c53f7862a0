"""The classification task as the :class:`~rnnkit.train.Trainer` sees it: batches, the step
(cross-entropy, optionally adversarial), validation and the checkpoint's JSON files."""

from __future__ import annotations

import random

import torch
from torch.nn import functional as nnf

from rnnkit.data.bucketing import BucketBatchSampler
from rnnkit.data.classification import Example, guess_format
from rnnkit.data.vocab import Vocabulary
from rnnkit.data.words import CharVocab, singletons
from rnnkit.models.classifier import ClassifierConfig
from rnnkit.tasks import metrics as M
from rnnkit.tasks._labels import device_of, shard_batches
from rnnkit.tasks.classify.encoding import DATA_KEYS, collate, logits_of
from rnnkit.tasks.classify.inference import predict_probs
from rnnkit.train import StepOutput
from rnnkit.train import checkpoint as ckpt

__all__ = ["ClassifyTask"]


class ClassifyTask:
    """The classification task as the :class:`~rnnkit.train.Trainer` sees it."""

    name = "classify"
    monitor = "valid_accuracy"
    monitor_mode = "max"
    unit = "ex"

    def __init__(self, config, train_examples: list[Example],
                 dev_examples: list[Example], vocab: Vocabulary, labels: Vocabulary,
                 model_cfg: ClassifierConfig, seed: int = 0,
                 chars: CharVocab | None = None) -> None:
        self.config, self.vocab, self.labels, self.model_cfg = config, vocab, labels, model_cfg
        self.seed, self.chars = seed, chars
        self.train_ids = [vocab.encode(e.tokens) for e in train_examples]
        self.train_chars = ([chars.encode(e.tokens) for e in train_examples]
                            if chars is not None else None)
        self.train_labels = [labels.id_of(e.label) for e in train_examples]
        self.singles = singletons(self.train_ids, vocab.unk_id)
        self.dev = dev_examples

    def train_batches(self, epoch: int, shard):
        sampler = BucketBatchSampler([len(x) for x in self.train_ids], self.config.batch_size,
                                     seed=self.seed)
        sampler.set_epoch(epoch)
        rng = random.Random(self.seed * 7919 + epoch)
        def char_ids(batch: list[int]) -> list[list[list[int]]] | None:
            return None if self.train_chars is None else [self.train_chars[i] for i in batch]

        return [collate([self.train_ids[i] for i in batch], [self.train_labels[i] for i in batch],
                        self.vocab, self.config.word_dropout, self.singles, rng,
                        char_ids(batch), self.chars.vocab.pad_id if self.chars else 0)
                for batch in shard_batches(sampler.batches(), shard)]

    def step(self, model, batch) -> StepOutput:
        """The cross-entropy of the batch; with ``adversarial`` ε > 0, plus that of the same
        batch with each text's word embeddings moved by ε (L2 norm over the text) along the
        gradient of its loss (Miyato, Dai & Goodfellow 2017, the fast-gradient version). The
        logged training loss is then the sum of the two."""
        eps = self.config.adversarial
        labels = batch["labels"]
        noise = None
        if eps > 0.0:
            tokens = batch["tokens"]
            dim = self.model_cfg.embedding_size
            noise = torch.zeros(*tokens.shape, dim, device=device_of(model), requires_grad=True)
        logits = logits_of(model, batch, noise)
        loss = nnf.cross_entropy(logits, labels.to(logits.device),
                                 label_smoothing=self.config.label_smoothing)
        if eps > 0.0:
            (grad,) = torch.autograd.grad(loss, noise, retain_graph=True)
            norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1)
            adversarial = logits_of(model, batch, (eps * grad / norm).detach())
            loss = loss + nnf.cross_entropy(adversarial, labels.to(logits.device),
                                            label_smoothing=self.config.label_smoothing)
        return StepOutput(loss, len(labels))

    def evaluate(self, model) -> dict[str, float]:
        probs = predict_probs(model, self.dev, self.vocab, 2 * self.config.batch_size,
                              chars=self.chars)
        targets = torch.tensor([self.labels.id_of(e.label) if e.label in self.labels else -100
                                for e in self.dev])
        loss = nnf.nll_loss(probs.clamp_min(1e-12).log(), targets, ignore_index=-100)
        pred = self.labels.decode(probs.argmax(-1).tolist())
        gold = [e.label for e in self.dev]
        return {"valid_loss": float(loss), "valid_accuracy": M.accuracy(gold, pred),
                "valid_macro_f1": M.macro_f1(gold, pred, sorted(set(gold) | set(pred)))}

    def checkpoint_files(self) -> dict:
        data = {key: getattr(self.config, key) for key in DATA_KEYS}
        data["format"] = guess_format(self.config.train, self.config.format)
        files = {"vocab.json": self.vocab.to_json(), "labels.json": self.labels.to_json()}
        if self.chars is not None:
            data["max_word_length"] = self.chars.max_word_length
            files["chars.json"] = self.chars.vocab.to_json()
        return {ckpt.CONFIG: {"model": self.model_cfg.to_dict(), "data": data}, **files}
