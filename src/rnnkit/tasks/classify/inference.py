"""Class probabilities of one classifier or an ensemble, and predictions written out."""

from __future__ import annotations

import json

import torch
from torch import Tensor

from rnnkit.data.classification import Example
from rnnkit.data.vocab import Vocabulary
from rnnkit.data.words import CharVocab
from rnnkit.models.classifier import Classifier
from rnnkit.tasks._labels import run_in_buckets
from rnnkit.tasks.classify.encoding import collate, logits_of

__all__ = ["predict_probs", "ensemble_probs", "format_predictions"]


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
