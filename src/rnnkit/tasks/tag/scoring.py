"""Scores of predicted tags against gold ones: token accuracy, per-tag and span P/R/F1."""

from __future__ import annotations

from rnnkit.data.conll import TaggedDocument
from rnnkit.models.tagger import Tagger
from rnnkit.tasks import metrics as M
from rnnkit.tasks._labels import check_known
from rnnkit.tasks.tag.encoding import TagVocabs, encode
from rnnkit.tasks.tag.inference import predict_tags

__all__ = ["score", "evaluate_document"]


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
