"""Pieces the tagging and classification tasks share: label vocabularies, the unknown-label
policy, bucketed inference and the metrics report."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from rnnkit.data.bucketing import BucketBatchSampler
from rnnkit.data.vocab import Vocabulary
from rnnkit.errors import RnnkitError

__all__ = ["UNKNOWN_LABELS", "label_vocabulary", "check_known", "run_in_buckets", "shard_batches",
           "device_of"]

# How eval treats a gold label the model never saw in training:
#   "error": stop with a message naming the file and line (default);
#   "wrong": score it (the model cannot predict it, so it counts as an error).
UNKNOWN_LABELS = ("error", "wrong")


def label_vocabulary(labels: Sequence[str]) -> Vocabulary:
    """Labels → ids, no specials, sorted so the ids do not depend on file order."""
    return Vocabulary(sorted(set(labels)), specials=())


def check_known(
    labels: Sequence[str | None], where: Sequence[str], vocab: Vocabulary, policy: str, what: str
) -> None:
    """Under ``policy == "error"``, raise for the first label not in ``vocab``."""
    if policy not in UNKNOWN_LABELS:
        raise RnnkitError(f"--unknown-labels: expected one of {', '.join(UNKNOWN_LABELS)}, "
                          f"got {policy!r}")
    if policy != "error":
        return
    for label, place in zip(labels, where, strict=True):
        if label not in vocab:
            known = ", ".join(vocab.tokens[:30]) + (" …" if len(vocab) > 30 else "")
            raise RnnkitError(
                f"{place}: {what} {label!r} was never seen in training, so the model cannot "
                f"predict it (known: {known}); use --unknown-labels wrong to score it as an error"
            )


@torch.no_grad()
def run_in_buckets(
    model: torch.nn.Module,
    lengths: Sequence[int],
    batch_size: int,
    forward: Callable[[list[int]], Tensor],
    *,
    bucketed: bool = True,
) -> list[Tensor]:
    """``forward(indices)`` over batches of similar length (or in file order without
    ``bucketed``); the per-example results (first axis of each output) in the input order."""
    was_training = model.training
    model.eval()
    try:
        if bucketed:
            batches = BucketBatchSampler(lengths, batch_size, shuffle=False).batches()
        else:
            batches = [list(range(i, min(i + batch_size, len(lengths))))
                       for i in range(0, len(lengths), batch_size)]
        results: list[Tensor | None] = [None] * len(lengths)
        for batch in batches:
            output = forward(batch).cpu()
            for row, index in enumerate(batch):
                results[index] = output[row]
    finally:
        model.train(was_training)
    return results  # type: ignore[return-value]


def shard_batches(batches: list, shard) -> list:
    """This rank's batches under torchrun; every rank gets as many (DDP steps in lockstep)."""
    usable = len(batches) - len(batches) % shard.world_size
    return batches[:usable][shard.rank :: shard.world_size]


def device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device

