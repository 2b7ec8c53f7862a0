"""Metrics for tagging and classification: accuracy, per-label P/R/F1, macro-F1, span F1 for
BIO/BIOES tags, and confusion matrices (as text and as a PNG).

Span F1 follows conlleval (the CoNLL-2000/2003 scorer, and seqeval's default mode): a span starts
at ``B-X`` or ``S-X``, or at ``I-X``/``E-X`` after a tag of another type or after ``O``/``E``/
``S``; it ends before ``B``, ``S``, ``O`` or a change of type, and after ``E``/``S``. ``L-``
and ``U-`` (BILOU) are read as ``E-`` and ``S-``. A span counts as correct when its type, start
and end all match.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence

from rnnkit.errors import RnnkitError

__all__ = [
    "prf_table",
    "accuracy",
    "per_label_prf",
    "macro_f1",
    "spans",
    "span_prf",
    "is_span_scheme",
    "confusion_matrix",
    "format_confusion",
    "plot_confusion",
]

_PREFIXES = {"B": "B", "I": "I", "E": "E", "S": "S", "L": "E", "U": "S"}


def accuracy(gold: Sequence[str], pred: Sequence[str]) -> float:
    """Share of positions where ``pred`` equals ``gold``."""
    _check(gold, pred)
    return sum(g == p for g, p in zip(gold, pred, strict=True)) / len(gold) if gold else 0.0


def per_label_prf(
    gold: Sequence[str], pred: Sequence[str], labels: Sequence[str] | None = None
) -> dict[str, dict[str, float]]:
    """``{label: {"precision", "recall", "f1", "support"}}`` for each label of ``labels``
    (default: every label in gold or pred)."""
    _check(gold, pred)
    true_pos, gold_count, pred_count = Counter(), Counter(gold), Counter(pred)
    for g, p in zip(gold, pred, strict=True):
        if g == p:
            true_pos[g] += 1
    labels = sorted(set(gold) | set(pred)) if labels is None else labels
    return {
        label: _prf(true_pos[label], pred_count[label], gold_count[label]) for label in labels
    }


def macro_f1(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str] | None = None):
    """Unweighted mean F1 over ``labels`` (default: every label in gold or pred)."""
    scores = per_label_prf(gold, pred, labels)
    return sum(s["f1"] for s in scores.values()) / len(scores) if scores else 0.0


def is_span_scheme(tags: Sequence[str]) -> bool:
    """True when every tag is ``O`` or ``P-TYPE`` with P one of B, I, E, S, L, U (and some tag
    is not ``O``)."""
    seen_span = False
    for tag in tags:
        if tag == "O":
            continue
        prefix, sep, kind = tag.partition("-")
        if not sep or prefix not in _PREFIXES or not kind:
            return False
        seen_span = True
    return seen_span


def spans(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """The ``(type, start, end)`` spans of one sentence's BIO/BIOES tags (end exclusive)."""
    found, start, kind = set(), None, ""
    prev_prefix, prev_kind = "O", ""
    for index, tag in enumerate([*tags, "O"]):
        prefix, this_kind = _split(tag)
        if start is not None and _ends(prev_prefix, prefix, prev_kind, this_kind):
            found.add((kind, start, index))
            start = None
        if _starts(prev_prefix, prefix, prev_kind, this_kind):
            start, kind = index, this_kind
        prev_prefix, prev_kind = prefix, this_kind
    return found


def span_prf(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, float]:
    """Micro-averaged span precision, recall and F1 over sentences (lists of tags)."""
    if len(gold) != len(pred):
        raise ValueError(f"pred: expected {len(gold)} sentences, got {len(pred)}")
    correct = gold_total = pred_total = 0
    for gold_tags, pred_tags in zip(gold, pred, strict=True):
        _check(gold_tags, pred_tags)
        gold_spans, pred_spans = spans(gold_tags), spans(pred_tags)
        correct += len(gold_spans & pred_spans)
        gold_total += len(gold_spans)
        pred_total += len(pred_spans)
    return _prf(correct, pred_total, gold_total)


def confusion_matrix(
    gold: Sequence[str], pred: Sequence[str], labels: Sequence[str]
) -> list[list[int]]:
    """``matrix[i][j]``: how often gold label ``labels[i]`` was predicted as ``labels[j]``."""
    _check(gold, pred)
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for g, p in zip(gold, pred, strict=True):
        matrix[index[g]][index[p]] += 1
    return matrix


def format_confusion(matrix: list[list[int]], labels: Sequence[str]) -> str:
    """The matrix as an aligned text table (rows: gold, columns: predicted)."""
    names = [str(label) for label in labels]
    width = max([len("gold\\pred"), *map(len, names), *(len(str(n)) for r in matrix for n in r)])
    lines = [" ".join(cell.rjust(width) for cell in ["gold\\pred", *names])]
    for name, row in zip(names, matrix, strict=True):
        lines.append(" ".join(cell.rjust(width) for cell in [name, *map(str, row)]))
    return "\n".join(lines)


def plot_confusion(
    matrix: list[list[int]], labels: Sequence[str], path: str | os.PathLike, title: str = ""
) -> None:
    """Save the matrix as a PNG heat map, atomically."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from rnnkit._io import atomic_write_bytes

    size = max(4.0, 0.45 * len(labels) + 2.0)
    figure, axes = plt.subplots(figsize=(size, size))
    image = axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(labels)), [str(label) for label in labels], rotation=90)
    axes.set_yticks(range(len(labels)), [str(label) for label in labels])
    axes.set_xlabel("predicted")
    axes.set_ylabel("gold")
    if len(labels) <= 20:
        peak = max((max(row) for row in matrix), default=0)
        for i, row in enumerate(matrix):
            for j, count in enumerate(row):
                color = "white" if count > peak / 2 else "black"
                axes.text(j, i, str(count), ha="center", va="center", color=color, fontsize=7)
    axes.set_title(title or "confusion matrix")
    figure.colorbar(image, ax=axes, fraction=0.046)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as err:
        raise RnnkitError(f"--confusion-png {path}: cannot write: {err.strerror}") from None


def _split(tag: str) -> tuple[str, str]:
    if tag == "O":
        return "O", ""
    prefix, sep, kind = tag.partition("-")
    if sep and prefix in _PREFIXES:
        return _PREFIXES[prefix], kind
    return "I", tag  # a bare type (IO scheme): inside a span of that type


def _ends(prev: str, tag: str, prev_kind: str, kind: str) -> bool:
    """A span ends between ``prev`` and ``tag`` (conlleval's endOfChunk)."""
    return prev in ("E", "S") or (
        prev in ("B", "I") and (tag in ("B", "S", "O") or kind != prev_kind))


def _starts(prev: str, tag: str, prev_kind: str, kind: str) -> bool:
    """A span starts at ``tag`` after ``prev`` (conlleval's startOfChunk)."""
    return tag in ("B", "S") or (
        tag in ("I", "E") and (prev in ("E", "S", "O") or kind != prev_kind))


def _prf(true_pos: int, predicted: int, actual: int) -> dict[str, float]:
    precision = true_pos / predicted if predicted else 0.0
    recall = true_pos / actual if actual else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "support": actual}


def _check(gold: Sequence, pred: Sequence) -> None:
    if len(gold) != len(pred):
        raise ValueError(f"pred: expected {len(gold)} labels like gold, got {len(pred)}")


def prf_table(what: str, per_label: dict[str, dict]) -> list[str]:
    """Lines of a per-label precision / recall / F1 / support table (percentages)."""
    lines = [f"{what:>12} {'precision':>9} {'recall':>9} {'F1':>9} {'support':>8}"]
    lines += [f"{name:>12} {100 * s['precision']:9.2f} {100 * s['recall']:9.2f} "
              f"{100 * s['f1']:9.2f} {s['support']:8d}" for name, s in per_label.items()]
    return lines
