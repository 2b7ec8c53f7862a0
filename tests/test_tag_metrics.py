"""Metrics: accuracy, per-label P/R/F1, macro-F1, conlleval-style span F1, confusion matrix."""

from __future__ import annotations

import pytest

from rnnkit.tasks import metrics as M


def test_accuracy_and_per_label():
    gold = ["A", "A", "B", "C"]
    pred = ["A", "B", "B", "B"]
    assert M.accuracy(gold, pred) == 0.5
    scores = M.per_label_prf(gold, pred)
    assert scores["A"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3,
                                         "support": 2})
    assert scores["B"]["precision"] == pytest.approx(1 / 3) and scores["B"]["recall"] == 1.0
    assert scores["C"]["f1"] == 0.0
    assert M.macro_f1(gold, pred) == pytest.approx((2 / 3 + 0.5 + 0) / 3)


@pytest.mark.parametrize("tags, expected", [
    (["B-PER", "I-PER", "O", "B-LOC"], {("PER", 0, 2), ("LOC", 3, 4)}),
    (["I-PER", "I-PER", "B-PER", "I-LOC"], {("PER", 0, 2), ("PER", 2, 3), ("LOC", 3, 4)}),
    (["B-PER", "E-PER", "S-LOC", "B-ORG", "I-ORG", "E-ORG"],
     {("PER", 0, 2), ("LOC", 2, 3), ("ORG", 3, 6)}),
    (["S-PER", "S-PER"], {("PER", 0, 1), ("PER", 1, 2)}),
    (["E-PER", "I-PER"], {("PER", 0, 1), ("PER", 1, 2)}),
    (["U-PER", "B-LOC", "L-LOC"], {("PER", 0, 1), ("LOC", 1, 3)}),
    (["O", "O"], set()),
])
def test_spans(tags, expected):
    assert M.spans(tags) == expected


def test_span_prf():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG"]]
    pred = [["B-PER", "I-PER", "O", "O"], ["B-LOC"]]
    scores = M.span_prf(gold, pred)
    assert scores["precision"] == 0.5 and scores["recall"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx(0.4)


def test_scheme_detection():
    assert M.is_span_scheme(["O", "B-PER", "I-PER", "E-X", "S-Y"])
    assert not M.is_span_scheme(["NOUN", "VERB"])
    assert not M.is_span_scheme(["O", "O"])


def test_confusion(tmp_path):
    matrix = M.confusion_matrix(["a", "a", "b"], ["a", "b", "b"], ["a", "b"])
    assert matrix == [[1, 1], [0, 1]]
    text = M.format_confusion(matrix, ["a", "b"])
    assert text.splitlines()[1].split() == ["a", "1", "1"]
    path = tmp_path / "cm.png"
    M.plot_confusion(matrix, ["a", "b"], path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
