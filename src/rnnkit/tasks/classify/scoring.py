"""Scores of class predictions against gold labels: accuracy, macro-F1, per-label P/R/F1 and
the confusion matrix."""

from __future__ import annotations

from torch import Tensor

from rnnkit.data.classification import Example
from rnnkit.data.vocab import Vocabulary
from rnnkit.data.words import CharVocab
from rnnkit.models.classifier import Classifier
from rnnkit.tasks import metrics as M
from rnnkit.tasks._labels import check_known
from rnnkit.tasks.classify.inference import predict_probs

__all__ = ["score", "score_probs", "evaluate_examples"]


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


def score_probs(probs: Tensor, examples: list[Example], labels: Vocabulary, path: str, *,
                unknown_labels: str = "error") -> dict:
    """Score class probabilities ``(N, K)`` (one model's or an ensemble's) against the labels
    of ``examples`` read from ``path``."""
    gold = [example.label for example in examples]
    check_known(gold, [f"{path}:{e.line}" for e in examples], labels, unknown_labels, "label")
    return score(gold, labels.decode(probs.argmax(-1).tolist()), labels.tokens)


def evaluate_examples(model: Classifier, examples: list[Example], vocab: Vocabulary,
                      labels: Vocabulary, path: str, *, unknown_labels: str = "error",
                      batch_size: int = 64, chars: CharVocab | None = None) -> dict:
    """Score ``model`` on labelled examples read from ``path``."""
    return score_probs(predict_probs(model, examples, vocab, batch_size, chars=chars), examples,
                       labels, path, unknown_labels=unknown_labels)
