"""The tagger on batches: tag scores, the most likely tags, a tagged document written out."""

from __future__ import annotations

from torch import Tensor

from rnnkit.data.conll import TaggedDocument, write_tagged
from rnnkit.models.tagger import Tagger
from rnnkit.tasks._labels import device_of, run_in_buckets
from rnnkit.tasks.tag.encoding import Encoded, TagVocabs, collate, encode

__all__ = ["forward", "predict_tags", "predict_document"]


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


def predict_tags(model: Tagger, encoded: list[Encoded], vocabs: TagVocabs,
                 batch_size: int = 64, *, bucketed: bool = True) -> list[list[str]]:
    """The most likely tag of every word, sentence by sentence."""
    def run(indices: list[int]) -> Tensor:
        batch = collate([encoded[i] for i in indices], vocabs)
        return forward(model, batch).argmax(-1)  # (B, T)

    lengths = [len(item.words) for item in encoded]
    best = run_in_buckets(model, lengths, batch_size, run, bucketed=bucketed)
    return [vocabs.tags.decode(ids[:n].tolist()) for ids, n in zip(best, lengths, strict=True)]


def predict_document(model: Tagger, doc: TaggedDocument, vocabs: TagVocabs, output: str | None,
                     batch_size: int = 64) -> str:
    """Tag ``doc`` and write it with the tag column filled (atomically, unless ``output`` is
    None); returns the text."""
    pred = predict_tags(model, encode(doc, vocabs), vocabs, batch_size)
    return write_tagged(doc, pred, output)
