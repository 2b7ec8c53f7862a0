"""Classification data as tensors: reading a file with the task's options, batches of token
(and character) ids, and the classifier's forward on such a batch."""

from __future__ import annotations

import random

import torch
from torch import Tensor

from rnnkit.data.bucketing import pad_sequences
from rnnkit.data.classification import Example, read_examples
from rnnkit.data.vocab import Vocabulary
from rnnkit.data.words import drop_words, pad_chars
from rnnkit.errors import RnnkitError
from rnnkit.models.classifier import Classifier
from rnnkit.tasks._labels import device_of

__all__ = ["DATA_KEYS", "read", "collate", "logits_of"]

# The reading options of the training file, saved with a checkpoint and reused by eval/predict.
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
