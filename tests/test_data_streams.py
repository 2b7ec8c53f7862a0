"""TBPTT streams: layout, coverage, random lengths replayable, shards, bad sizes."""

from __future__ import annotations

import numpy as np
import pytest

from rnnkit.data.streams import TokenStreams


def test_layout_inputs_targets_and_reset():
    tokens = np.arange(41)
    streams = TokenStreams(tokens, batch_size=4, bptt=3)  # L = 10 steps per stream
    chunks = list(streams.epoch(0))
    assert [c.inputs.shape[0] for c in chunks] == [3, 3, 3, 1]
    assert [c.reset for c in chunks] == [True, False, False, False]
    assert chunks[0].inputs[:, 1].tolist() == [10, 11, 12]
    assert chunks[1].inputs[:, 1].tolist() == [13, 14, 15]  # stream 1 continues
    for c in chunks:
        assert (c.targets == c.inputs + 1).all()
    covered = np.concatenate([c.inputs.numpy() for c in chunks]).T.ravel()
    assert covered.tolist() == list(range(40))


def test_random_bptt_replays_per_epoch():
    streams = TokenStreams(np.arange(5000), batch_size=2, bptt=40, random_bptt=True, seed=3)
    first, again = streams.chunk_lengths(0), streams.chunk_lengths(0)
    assert first == again and sum(first) == streams.stream_length
    assert len(set(first)) > 1 and first != streams.chunk_lengths(1)


def test_shards_take_disjoint_parts():
    tokens = np.arange(101)
    parts = [TokenStreams(tokens, 2, 5, rank=r, world_size=2).starts.tolist() for r in (0, 1)]
    assert parts == [[0, 25], [50, 75]]


@pytest.mark.parametrize("kwargs, message", [
    (dict(batch_size=0, bptt=4), "--batch-size"), (dict(batch_size=2, bptt=0), "--bptt"),
    (dict(batch_size=50, bptt=4), "too few"),
])
def test_bad_sizes(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TokenStreams(np.arange(20), **kwargs)
