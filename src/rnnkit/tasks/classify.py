"""Sequence classification: the pieces of the ``classify`` application
(:mod:`rnnkit.apps.classify`): text → :class:`~rnnkit.models.classifier.Classifier` → label.

Tokens are looked up in a vocabulary of the training tokens seen ``min_freq`` times or more
(others are ``<unk>``); while training, tokens seen once are replaced by ``<unk>`` with
probability ``word_dropout``. With ``chars`` (off by default) a character RNN also reads each
token's first ``max_word_length`` characters (always the token's own, also when word dropout
made it ``<unk>``), from a character vocabulary of the training text. A checkpoint directory
holds ``model.safetensors``, ``config.json`` and ``vocab.json``, ``labels.json`` and, with
chars, ``chars.json``. Several checkpoints with the same labels make an ensemble
(:func:`load_ensemble`, :func:`ensemble_probs`: the mean of their class probabilities; each
member keeps its own vocabularies).
"""

from __future__ import annotations

import json
import random

import torch
from torch import Tensor
from torch.nn import functional as nnf

from rnnkit.data.bucketing import BucketBatchSampler, pad_sequences
from rnnkit.data.classification import Example, guess_format, read_examples
from rnnkit.data.vocab import Vocabulary
from rnnkit.data.words import CharVocab, drop_words, pad_chars, singletons
from rnnkit.errors import RnnkitError
from rnnkit.models._config import renamed
from rnnkit.models.classifier import Classifier, ClassifierConfig
from rnnkit.tasks import metrics as M
from rnnkit.tasks._labels import (
    check_known,
    device_of,
    run_in_buckets,
    shard_batches,
)
from rnnkit.train import StepOutput
from rnnkit.train import checkpoint as ckpt

__all__ = ["ClassifyTask", "load", "load_ensemble", "read", "predict_probs",
           "ensemble_probs", "evaluate_examples", "format_predictions"]

DATA_KEYS = ("format", "text_column", "label_column", "header", "lowercase")


def read(path: str, options: dict, *, require_labels: bool = True,
         text: str | None = None) -> list[Example]:
    """A classification file read with the task's format and column options."""
    return read_examples(path, fmt=options["format"], text_column=options["text_column"],
                         label_column=options["label_column"], header=options["header"],
                         require_labels=require_labels, lowercase=options["lowercase"],
                         text=text)


def collate(token_ids: list[list[int]], labels: list[int] | None, vocab: Vocabulary,
            word_dropout: float = 0.0, singles: frozenset[int] = frozenset(),
            rng: random.Random | None = None, char_ids: list[list[list[int]]] | None = None,
            char_pad: int = 0) -> dict[str, Tensor]:
    """``tokens`` ``(B, T)``, ``lengths`` ``(B,)``; with labels, ``labels`` ``(B,)``; with
    ``char_ids`` (per text, per token), ``chars`` ``(B, T, C)`` and ``char_lengths`` ``(B, T)``
    (0 at padding). Word dropout changes ``tokens`` only, never the characters."""
    token_ids = drop_words(token_ids, singles, vocab.unk_id, word_dropout,
                           rng or random.Random())
    tokens, lengths = pad_sequences(token_ids, vocab.pad_id)
    batch = {"tokens": tokens, "lengths": lengths}
    if char_ids is not None:
        batch["chars"], batch["char_lengths"] = pad_chars(char_ids, tokens.shape[1], char_pad)
    if labels is not None:
        batch["labels"] = torch.tensor(labels, dtype=torch.long)
    return batch


def logits_of(model: Classifier, batch: dict[str, Tensor], noise: Tensor | None = None) -> Tensor:
    """Class scores ``(B, K)``; ``noise`` ``(B, T, E)`` is added to the word embeddings.
    ``model`` may be wrapped in DistributedDataParallel (training under torchrun)."""
    device = device_of(model)
    if getattr(model, "module", model).chars is None:
        return model(batch["tokens"].to(device), batch["lengths"], noise=noise)  # (B, K)
    if "chars" not in batch:
        raise RnnkitError("this classifier reads characters (trained with --chars); its "
                          "character vocabulary (chars.json) is needed to run it")
    return model(batch["tokens"].to(device), batch["lengths"], batch["chars"].to(device),
                 batch["char_lengths"].to(device), noise=noise)  # (B, K)


def predict_probs(model: Classifier, examples: list[Example], vocab: Vocabulary,
                  batch_size: int = 64, *, bucketed: bool = True,
                  chars: CharVocab | None = None) -> Tensor:
    """Class probabilities ``(N, K)``, in the order of ``examples`` (``chars``: the character
    vocabulary of a classifier with a char RNN)."""
    ids = [vocab.encode(example.tokens) for example in examples]
    char_ids = ([chars.encode(example.tokens) for example in examples]
                if chars is not None and model.chars is not None else None)

    def run(indices: list[int]) -> Tensor:
        batch = collate([ids[i] for i in indices], None, vocab,
                        char_ids=None if char_ids is None else [char_ids[i] for i in indices],
                        char_pad=chars.vocab.pad_id if chars is not None else 0)
        return torch.softmax(logits_of(model, batch).float(), dim=-1)

    rows = run_in_buckets(model, [len(x) for x in ids], batch_size, run, bucketed=bucketed)
    return torch.stack(rows)


def ensemble_probs(members: list[tuple], examples: list[Example],
                   batch_size: int = 64) -> Tensor:
    """The mean of the members' class probabilities ``(N, K)``; members are ``(model, vocab)``
    or ``(model, vocab, chars)`` (each with its own vocabularies; the label vocabularies must
    agree, see :func:`load_ensemble`)."""
    if not members:
        raise ValueError("ensemble_probs: no members")
    total = sum(predict_probs(model, examples, vocab, batch_size,
                              chars=rest[0] if rest else None)
                for model, vocab, *rest in members)
    return total / len(members)


def score(gold: list[str], pred: list[str], labels: list[str]) -> dict:
    """Accuracy, macro-F1 over ``labels`` ∪ gold, per-label P/R/F1, confusion matrix."""
    names = sorted(set(labels) | set(gold))
    return {
        "examples": len(gold),
        "accuracy": M.accuracy(gold, pred),
        "macro_f1": M.macro_f1(gold, pred, names),
        "per_label": M.per_label_prf(gold, pred, names),
        "labels": names,
        "confusion": M.confusion_matrix(gold, pred, names),
    }


def evaluate_examples(model: Classifier, examples: list[Example], vocab: Vocabulary,
                      labels: Vocabulary, path: str, *, unknown_labels: str = "error",
                      batch_size: int = 64, chars: CharVocab | None = None) -> dict:
    """Score ``model`` on labelled examples read from ``path``."""
    return score_probs(predict_probs(model, examples, vocab, batch_size, chars=chars), examples,
                       labels, path, unknown_labels=unknown_labels)


def score_probs(probs: Tensor, examples: list[Example], labels: Vocabulary, path: str, *,
                unknown_labels: str = "error") -> dict:
    """Score class probabilities ``(N, K)`` (one model's or an ensemble's) against the labels
    of ``examples`` read from ``path``."""
    gold = [example.label for example in examples]
    check_known(gold, [f"{path}:{e.line}" for e in examples], labels, unknown_labels, "label")
    return score(gold, labels.decode(probs.argmax(-1).tolist()), labels.tokens)


def format_predictions(examples: list[Example], probs: Tensor, labels: Vocabulary,
                       output_format: str) -> str:
    """``tsv``: ``label<TAB>probability<TAB>text`` lines; ``jsonl``: objects with ``label``,
    ``probability``, ``probabilities`` (every label) and ``text``."""
    lines = []
    for example, row in zip(examples, probs.tolist(), strict=True):
        best = max(range(len(row)), key=row.__getitem__)
        label = labels.token_of(best)
        if output_format == "jsonl":
            lines.append(json.dumps({
                "label": label, "probability": round(row[best], 6),
                "probabilities": {labels.token_of(i): round(p, 6) for i, p in enumerate(row)},
                "text": example.text,
            }, ensure_ascii=False))
        else:
            lines.append(f"{label}\t{row[best]:.4f}\t{example.text}")
    return "".join(line + "\n" for line in lines)


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


def load(checkpoint: str) -> tuple[Classifier, Vocabulary, Vocabulary, dict]:
    """Model, token and label vocabularies, and the data options of a checkpoint; under
    ``data["chars"]`` the :class:`CharVocab` of a classifier with a char RNN, else None."""
    directory = ckpt.resolve_checkpoint(checkpoint)
    config = ckpt.read_config(directory, "classify")
    vocab = Vocabulary.from_json(ckpt.read_json(directory / "vocab.json"), source=str(directory))
    labels = Vocabulary.from_json(ckpt.read_json(directory / "labels.json"),
                                  source=str(directory))
    sizes = {"vocab_size": ("vocab.json", len(vocab)), "num_classes": ("labels.json", len(labels))}
    model = Classifier(ckpt.saved_model(ClassifierConfig, directory, config, sizes, renamed))
    ckpt.load_weights(directory, model)
    model.eval()
    saved = config.get("data", {})
    data = {key: saved.get(key) for key in DATA_KEYS}
    data["lowercase"] = bool(data["lowercase"])
    data["chars"] = None
    if model.chars is not None:
        if not (directory / "chars.json").exists():
            raise RnnkitError(f"checkpoint {directory}: the model reads characters but "
                              "chars.json is missing")
        data["chars"] = CharVocab(
            Vocabulary.from_json(ckpt.read_json(directory / "chars.json"), source=str(directory)),
            int(saved.get("max_word_length") or 30))
    return model, vocab, labels, data


def load_ensemble(checkpoints: list[str]) -> tuple[
        list[tuple[Classifier, Vocabulary, CharVocab | None]], Vocabulary, dict]:
    """Members ``(model, vocab, chars)`` (each its own vocabularies; ``chars`` None without a
    char RNN), the shared label vocabulary and the first checkpoint's data options; the
    checkpoints must have the same labels, in the same order."""
    members, labels, data = [], None, None
    for checkpoint in checkpoints:
        model, vocab, its_labels, its_data = load(checkpoint)
        if labels is None:
            labels, data = its_labels, its_data
        elif its_labels.tokens != labels.tokens:
            raise RnnkitError(f"--checkpoint {checkpoint}: its labels "
                              f"({', '.join(its_labels.tokens)}) differ from those of "
                              f"{checkpoints[0]} ({', '.join(labels.tokens)}); an ensemble "
                              "needs the same labels")
        members.append((model, vocab, its_data["chars"]))
    if labels is None:
        raise RnnkitError("--checkpoint: at least one checkpoint is required")
    return members, labels, data
