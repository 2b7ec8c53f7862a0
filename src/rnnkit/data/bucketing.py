"""Length-bucketed batching: batches of sequences of similar length, so little padding is run.

Generic over tasks: it sees only the length of each example. :class:`BucketBatchSampler` yields
lists of example indices and works as a ``batch_sampler`` for ``torch.utils.data.DataLoader``;
:func:`pad_sequences` turns a batch of id lists into a padded ``(B, T)`` tensor plus lengths,
for the layers' ``lengths=`` argument.

How batches are formed, per epoch: the examples are shuffled (seeded by ``seed`` and the epoch),
cut into pools of ``pool_batches × batch_size`` examples, each pool is sorted by length and cut
into batches, and the batches are shuffled. Without shuffling, the whole data set is sorted by
length (stable), which is the best packing for evaluation. A batch holds at most ``batch_size``
examples and, with ``max_tokens``, at most that many padded tokens (``B × longest``).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

__all__ = ["BucketBatchSampler", "pad_sequences", "padding_fraction"]


class BucketBatchSampler:
    """Yields lists of indices into a data set, grouped by similar ``lengths``."""

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        shuffle: bool = True,
        max_tokens: int | None = None,
        pool_batches: int = 50,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size: expected an integer >= 1, got {batch_size}")
        if max_tokens is not None and max_tokens < 1:
            raise ValueError(f"max_tokens: expected None or an integer >= 1, got {max_tokens}")
        if pool_batches < 1:
            raise ValueError(f"pool_batches: expected an integer >= 1, got {pool_batches}")
        self.lengths = [int(n) for n in lengths]
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.max_tokens = max_tokens
        self.pool_batches = pool_batches
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Reseed the shuffle (as ``DistributedSampler.set_epoch``)."""
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        """This epoch's batches, in the order they are yielded."""
        order = list(range(len(self.lengths)))
        if not self.shuffle:
            order.sort(key=self.lengths.__getitem__)
            return self._cut(order)
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        rng.shuffle(order)
        pool_size = self.pool_batches * self.batch_size
        batches = []
        for start in range(0, len(order), pool_size):
            pool = sorted(order[start : start + pool_size], key=self.lengths.__getitem__)
            batches.extend(self._cut(pool))
        rng.shuffle(batches)
        return batches

    def _cut(self, ordered: list[int]) -> list[list[int]]:
        batches, batch, longest = [], [], 0
        for index in ordered:
            length = self.lengths[index]
            grown = max(longest, length) * (len(batch) + 1)
            too_many = self.max_tokens is not None and batch and grown > self.max_tokens
            if batch and (len(batch) == self.batch_size or too_many):
                batches.append(batch)
                batch, longest = [], 0
            batch.append(index)
            longest = max(longest, length)
        if batch and not (self.drop_last and len(batch) < self.batch_size):
            batches.append(batch)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())


def pad_sequences(
    sequences: Sequence[Sequence[int]], pad_id: int = 0
) -> tuple[Tensor, Tensor]:
    """Id lists → ``ids`` ``(B, T)`` (int64, padded with ``pad_id``) and ``lengths`` ``(B,)``."""
    lengths = torch.tensor([len(seq) for seq in sequences], dtype=torch.long)
    longest = int(lengths.max()) if len(sequences) else 0
    ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
    return ids, lengths


def padding_fraction(batches: Sequence[Sequence[int]], lengths: Sequence[int]) -> float:
    """Share of padded positions in ``batches`` (0 = no padding run)."""
    real = sum(lengths[i] for batch in batches for i in batch)
    total = sum(max(lengths[i] for i in batch) * len(batch) for batch in batches if batch)
    return 0.0 if total == 0 else 1.0 - real / total
