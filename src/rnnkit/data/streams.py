"""Truncated-BPTT batching: a token stream cut into B parallel streams and chunks of bptt steps.

For a stream of N tokens and batch size B, stream b is the contiguous slice
``tokens[b·L : (b+1)·L + 1]`` with L = (N − 1) // B. Chunk k covers steps
``[p_k, p_k + T_k)`` of every stream at once, so the hidden state after chunk k is the right
starting state for chunk k+1 (the model carries it and detaches it). Inputs are the tokens at
those steps, targets the tokens one step later::

    inputs  (T, B)  tokens[b·L + p + t]
    targets (T, B)  tokens[b·L + p + t + 1]

With ``random_bptt`` the chunk length varies (AWD-LSTM's scheme: bptt, or bptt/2 with
probability 0.05, plus Gaussian noise of σ=5, at least 8), drawn from a generator seeded by
``seed`` and the epoch, so an epoch is the same every time it is replayed (exact resume).
Under torchrun each process takes its own contiguous part of the stream (``shard``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["TBPTTBatch", "TokenStreams"]


@dataclass
class TBPTTBatch:
    """One chunk: ``inputs`` and ``targets`` ``(T, B)`` int64; ``reset`` marks an epoch's first
    chunk, where the carried hidden state starts from zero."""

    inputs: Tensor
    targets: Tensor
    reset: bool


class TokenStreams:
    """The TBPTT chunks of one token array; ``epoch(k)`` is a sized, replayable iterable."""

    def __init__(self, tokens: np.ndarray, batch_size: int, bptt: int, *,
                 random_bptt: bool = False, seed: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        if batch_size <= 0:
            raise ValueError(f"--batch-size: must be > 0, got {batch_size}")
        if bptt <= 0:
            raise ValueError(f"--bptt: must be > 0, got {bptt}")
        part = (len(tokens) - 1) // world_size
        self.stream_length = part // batch_size  # L, steps per stream
        if self.stream_length < 1:
            raise ValueError(
                f"--batch-size: {len(tokens)} tokens are too few for {batch_size} streams"
                + (f" on each of {world_size} processes" if world_size > 1 else "")
            )
        self.tokens = tokens
        self.batch_size, self.bptt = batch_size, bptt
        self.random_bptt, self.seed = random_bptt, seed
        # first token of each stream: (B,)
        self.starts = rank * part + np.arange(batch_size) * self.stream_length

    def chunk_lengths(self, epoch: int) -> list[int]:
        """T_k of every chunk of ``epoch`` (their sum is the stream length L)."""
        if not self.random_bptt:
            full, rest = divmod(self.stream_length, self.bptt)
            return [self.bptt] * full + ([rest] if rest else [])
        gen = np.random.default_rng([self.seed, epoch])
        lengths, done = [], 0
        while done < self.stream_length:
            base = self.bptt if gen.random() < 0.95 else self.bptt / 2
            length = max(8, int(gen.normal(base, 5)))
            length = min(length, self.stream_length - done)
            lengths.append(length)
            done += length
        return lengths

    def epoch(self, epoch: int = 0) -> _Epoch:
        return _Epoch(self, self.chunk_lengths(epoch))

    def chunk(self, position: int, length: int, reset: bool) -> TBPTTBatch:
        """The chunk of ``length`` steps starting at step ``position`` of every stream."""
        index = self.starts[None, :] + np.arange(position, position + length + 1)[:, None]
        window = torch.from_numpy(np.asarray(self.tokens[index], dtype=np.int64))  # (T+1, B)
        return TBPTTBatch(window[:-1], window[1:], reset)


class _Epoch:
    def __init__(self, streams: TokenStreams, lengths: list[int]) -> None:
        self.streams, self.lengths = streams, lengths

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[TBPTTBatch]:
        position = 0
        for k, length in enumerate(self.lengths):
            yield self.streams.chunk(position, length, reset=k == 0)
            position += length
