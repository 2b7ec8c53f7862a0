"""The Trainer side of ``rnnkit recommend``: options, training batches, loss, validation.

Training sequences longer than ``max_length + 1`` items are cut into windows (overlapping by
one item, so every transition is a target once); each window's items 1…T-1 are the input and
2…T the targets, every step scored (padded batches with ``lengths=``, bucketed by length).
Validation ranks each validation user's held-out item against ``valid_negatives`` uniformly
drawn items (the sampled protocol, fixed draws) and monitors NDCG@10.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rnnkit.data.bucketing import BucketBatchSampler, pad_sequences
from rnnkit.data.interactions import FORMATS, SPLITS, Case, ItemIndex
from rnnkit.data.rank_metrics import Protocol, Scorer, evaluate_ranking
from rnnkit.models.recommender import (
    LOSSES,
    Recommender,
    RecommenderConfig,
    ranking_loss,
    sample_items,
)
from rnnkit.train import StepOutput
from rnnkit.train.config import option, section
from rnnkit.train.distributed import Shard

__all__ = ["RecommendConfig", "RecommendTask", "training_windows", "model_scorer"]


@dataclass
class RecommendConfig:
    """Data, loss and model options of ``rnnkit recommend train``."""

    train: str = option("", "interactions (user item [timestamp] a line; TSV/CSV/spaces, "
                            "header optional) or, with --format sequences, one history a line")
    valid: str = option("", "a separate validation file (each line/user's last item is the "
                            "target); default: the validation part of --split", aliases=("dev",))
    format: str = option("interactions", "file format", FORMATS)
    split: str = option("leave-one-out", "how --train splits into training and held-out "
                        "items", SPLITS)
    valid_fraction: float = option(0.1, "--split time: share of the latest actions for "
                                        "validation and test")
    test_fraction: float = option(0.1, "--split time: share of the latest actions for test")
    max_length: int = option(50, "most recent items a history keeps (longer training "
                                 "sequences are cut into windows)")
    batch_size: int = option(512, "sequences per batch")
    loss: str = option("ce", "ranking loss", LOSSES)
    negatives: int = option(2048, "negatives sampled per batch by popularity (0: ce over "
                                  "every item)")
    sample_alpha: float = option(0.75, "negatives drawn with probability count ** alpha")
    logq: bool = option(True, "ce: correct the sampled logits by log(M q_j)")
    bpreg: float = option(1.0, "bpr-max: weight of the score regularisation")
    valid_users: int = option(5000, "validation users ranked at each evaluation (0: all)")
    valid_negatives: int = option(100, "sampled negatives per validation user")
    model: RecommenderConfig = section(RecommenderConfig, "model")

    def __post_init__(self) -> None:
        for name in ("max_length", "batch_size", "valid_negatives"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')}: expected an integer >= 1, "
                                 f"got {getattr(self, name)}")
        for name in ("negatives", "valid_users"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')}: expected an integer >= 0, "
                                 f"got {getattr(self, name)}")
        if self.negatives == 0 and self.loss != "ce":
            raise ValueError(f"--loss {self.loss}: needs sampled negatives (--negatives > 0)")
        if not (0 < self.valid_fraction and 0 < self.test_fraction
                and self.valid_fraction + self.test_fraction < 1):
            raise ValueError("--valid-fraction, --test-fraction: expected positive shares "
                             f"summing to < 1, got {self.valid_fraction}, {self.test_fraction}")
        if self.sample_alpha < 0:
            raise ValueError(f"--sample-alpha: expected a value >= 0, got {self.sample_alpha}")


def training_windows(sequences: Sequence[list[int]], max_length: int) -> list[list[int]]:
    """Windows of at most ``max_length + 1`` items covering each sequence's transitions once."""
    windows = []
    for sequence in sequences:
        end = len(sequence)
        while end >= 2:
            start = max(0, end - max_length - 1)
            windows.append(sequence[start:end])
            end = start + 1
    return windows


def model_scorer(model: Recommender, max_length: int) -> Scorer:
    """The scorer (histories → (B, N) scores) of a trained model, histories cut to
    ``max_length``."""
    device = next(model.parameters()).device

    def score(histories: list[list[int]]) -> torch.Tensor:
        items, lengths = pad_sequences([h[-max_length:] for h in histories])
        with torch.no_grad():
            return model.score_all(items.to(device), lengths.to(device)).cpu()

    return score


def ensemble_scorer(members: Sequence[tuple[Recommender, int]]) -> Scorer:
    """The scorer of one model (its raw scores), or of several ``(model, max_length)``: the mean
    of their log-softmax over the items."""
    if len(members) == 1:
        return model_scorer(*members[0])
    scorers = [model_scorer(model, max_length) for model, max_length in members]

    def score(histories: list[list[int]]) -> torch.Tensor:
        total = sum(torch.log_softmax(scorer(histories), dim=-1) for scorer in scorers)
        return total / len(scorers)

    return score


class RecommendTask:
    """The Trainer's task: batches of windows, the ranking loss, sampled-protocol validation."""

    monitor, monitor_mode, unit = "valid_ndcg@10", "max", "seq"

    def __init__(self, config: RecommendConfig, index: ItemIndex, train: list[list[int]],
                 valid: list[Case], seed: int) -> None:
        self.config, self.index, self.seed = config, index, seed
        self.windows = training_windows(train, config.max_length)
        weights = torch.tensor(index.counts, dtype=torch.float64) ** config.sample_alpha
        weights = torch.cat([torch.zeros(1, dtype=torch.float64), weights])
        self.probabilities = (weights / weights.sum()).float()  # (N,)
        if config.valid_users and len(valid) > config.valid_users:
            valid = random.Random(seed).sample(valid, config.valid_users)
        self.valid = valid

    def train_batches(self, epoch: int, shard: Shard) -> list:
        mine = self.windows[shard.rank::shard.world_size]
        sampler = BucketBatchSampler([len(w) for w in mine], self.config.batch_size,
                                     seed=self.seed)
        sampler.set_epoch(epoch)
        return [_pad_window_batch([mine[i] for i in batch]) for batch in sampler.batches()]

    def step(self, model, batch) -> StepOutput:
        device = next(model.parameters()).device
        inputs, lengths, targets = (t.to(device) for t in batch)
        queries = model(inputs, lengths)  # (B, T, E)
        scored = targets > 0  # (B, T)
        inner = model.module if hasattr(model, "module") else model  # under DDP
        negatives = log_q = None
        count = self.config.negatives
        if count:
            negatives = sample_items(self.probabilities.to(device), count)
            if self.config.logq:
                log_q = torch.log(self.probabilities.to(device)[negatives] * count)
        loss = ranking_loss(queries[scored], targets[scored], inner.item_weights(),
                            self.config.loss, negatives, log_q, self.config.bpreg,
                            inner.item_bias())
        return StepOutput(loss, len(lengths))

    def evaluate(self, model) -> dict[str, float]:
        if not self.valid:
            return {self.monitor: 0.0}
        protocol = Protocol("sampled", self.config.valid_negatives, (10,), seed=self.seed)
        metrics = evaluate_ranking(model_scorer(model, self.config.max_length), self.valid,
                                   len(self.index) - 1, protocol)
        return {"valid_hr@10": metrics["hr@10"], "valid_ndcg@10": metrics["ndcg@10"]}

    def checkpoint_files(self) -> dict:
        return {"config.json": {"num_items": len(self.index)}, "items.json": self.index.to_json()}


def _pad_window_batch(windows: list[list[int]]):
    """(inputs (B, T), lengths (B,), targets (B, T), 0 = padding) of windows."""
    inputs, lengths = pad_sequences([w[:-1] for w in windows])
    targets, _ = pad_sequences([w[1:] for w in windows])
    return inputs, lengths, targets
