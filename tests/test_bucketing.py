"""Length-bucketed batching."""

from __future__ import annotations

import random

import pytest
import torch

from rnnkit.data.bucketing import BucketBatchSampler, pad_sequences, padding_fraction


def lengths_of(n=500, seed=0):
    rng = random.Random(seed)
    return [rng.randint(1, 60) for _ in range(n)]


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("max_tokens", [None, 200])
def test_every_index_once_and_batch_limits(shuffle, max_tokens):
    lengths = lengths_of()
    sampler = BucketBatchSampler(lengths, 16, shuffle=shuffle, max_tokens=max_tokens)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(1 <= len(b) <= 16 for b in batches)
    if max_tokens:
        assert all(len(b) == 1 or max(lengths[i] for i in b) * len(b) <= max_tokens
                   for b in batches)
    assert len(sampler) == len(batches)


def test_bucketing_cuts_padding():
    lengths = lengths_of()
    bucketed = BucketBatchSampler(lengths, 16, shuffle=True).batches()
    plain = [list(range(i, min(i + 16, len(lengths)))) for i in range(0, len(lengths), 16)]
    assert padding_fraction(bucketed, lengths) < 0.1 < padding_fraction(plain, lengths)
    assert padding_fraction(BucketBatchSampler(lengths, 16, shuffle=False).batches(),
                            lengths) < 0.05


def test_shuffle_is_seeded_by_seed_and_epoch():
    lengths = lengths_of()
    a = BucketBatchSampler(lengths, 8, seed=3)
    b = BucketBatchSampler(lengths, 8, seed=3)
    assert a.batches() == b.batches()
    b.set_epoch(1)
    assert a.batches() != b.batches()


def test_drop_last_and_bad_arguments():
    assert all(len(b) == 4 for b in BucketBatchSampler([3] * 10, 4, drop_last=True))
    with pytest.raises(ValueError, match="batch_size"):
        BucketBatchSampler([1], 0)
    with pytest.raises(ValueError, match="max_tokens"):
        BucketBatchSampler([1], 2, max_tokens=0)


def test_pad_sequences():
    ids, lengths = pad_sequences([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert lengths.tolist() == [3, 1] and lengths.dtype == torch.long
