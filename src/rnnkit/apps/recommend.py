"""``rnnkit recommend``: session-based next-item recommendation (GRU4Rec-style).

A GRU (or LSTM) reads a user's item sequence and scores every item as the next one by a dot
product with the tied item embeddings (:mod:`rnnkit.models.recommender`); training, batches and
validation are in :mod:`rnnkit.apps.recommend_task`, the files and splits in
:mod:`rnnkit.data.interactions`, the ranking protocols in :mod:`rnnkit.data.rank_metrics`.

- ``train``: ``--train FILE`` split leave-one-out (SASRec) or by time; the checkpoint holds the
  item ids and their training counts (``items.json``).
- ``eval``: HR/NDCG/MRR at ``--cutoffs`` under ``--protocol sampled`` (100 uniform negatives) or
  ``full`` (Recall/NDCG/MRR over every item, seen items left out); ``--scorer popular`` or
  ``cooccurrence`` ranks the baselines with the same code.
- ``predict``: the top-k items after each history (``--history`` or ``--input``), seen items
  left out; unknown items are reported on stderr and skipped.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from rnnkit.apps.base import Application, Checkpoint, PrepareContext
from rnnkit.apps.recommend_task import (
    RecommendConfig,
    RecommendTask,
    ensemble_scorer,
)
from rnnkit.apps.registry import register
from rnnkit.data.interactions import ItemIndex, parse_history, read_log, split
from rnnkit.data.rank_metrics import PROTOCOLS, Protocol, evaluate_ranking
from rnnkit.errors import RnnkitError
from rnnkit.models.recommender import Recommender
from rnnkit.models.recommender_baselines import BASELINES, Cooccurrence, MostPopular
from rnnkit.train.config import option

__all__ = ["Recommend", "EvalOptions", "PredictOptions", "Loaded"]


@dataclass
class EvalOptions:
    data: str = option("", "interactions to evaluate, split as in training (default: the "
                           "training file)")
    part: str = option("test", "which held-out item of each user", ("test", "valid"))
    protocol: str = option("sampled", "sampled: target vs uniformly drawn negatives; full: vs "
                                      "every item", PROTOCOLS)
    negatives: int = option(100, "sampled: negatives per user")
    cutoffs: str = option("10,20", "K of HR/Recall@K, NDCG@K, MRR@K (comma-separated)")
    users: int = option(0, "rank a random sample of this many users (0: all)")
    seed: int = option(0, "seed of the negatives and the user sample")
    include_seen: bool = option(False, "full: rank the history's items too")
    scorer: str = option("model", "what scores the items: the model or a baseline fitted on "
                                  "the training part of --data", ("model", *BASELINES))
    batch_size: int = option(256, "users scored at once")


@dataclass
class PredictOptions:
    history: str = option("", "one history: item ids in time order, space-separated")
    input: str = option("", "a file of histories, one a line (- = stdin)")
    top_k: int = option(10, "items recommended per history")
    include_seen: bool = option(False, "also recommend items already in the history")
    scores: bool = option(False, "print item:score pairs")


@dataclass
class Loaded:
    """A trained recommender with its item ids and options; ``members``: every model of an
    ensemble (``--checkpoint`` repeated) with its ``max_length``, the first being ``model``."""

    model: Recommender
    index: ItemIndex
    config: RecommendConfig
    members: list[tuple[Recommender, int]] = field(default_factory=list)


@register("recommend")
class Recommend(Application):
    summary = "next-item recommendation from a user's item sequence (GRU4Rec-style)"
    description = ("A GRU/LSTM reads each user's items in time order and scores the next item "
                   "by a dot product with the tied item embeddings. Leave-one-out or time split; "
                   "sampled (100 negatives) or full-ranking HR/NDCG/MRR; top-k predictions.")
    examples = """
  rnnkit recommend train --train Video.txt --out runs/rec --max-minutes 15 --threads 2
  rnnkit recommend eval --checkpoint runs/rec --data Video.txt --protocol full --json
  rnnkit recommend eval --checkpoint runs/rec --scorer cooccurrence
  rnnkit recommend eval --checkpoint runs/rec1 --checkpoint runs/rec2   # an ensemble
  rnnkit recommend predict --checkpoint runs/rec --history "12 407 33" --top-k 10
"""
    Config = RecommendConfig
    EvalOptions = EvalOptions
    PredictOptions = PredictOptions

    # ------------------------------------------------------------------ training

    def prepare(self, config: RecommendConfig, context: PrepareContext) -> dict:
        if not config.train:
            raise RnnkitError("--train: required (a file of interactions or sequences)")
        log = read_log(config.train, config.format)
        if context.resume is not None:
            index = ItemIndex.from_json(context.resume.read_json("items.json"))
        else:
            index = ItemIndex.build(log)
        parts = split(log, index, config.split, valid_fraction=config.valid_fraction,
                      test_fraction=config.test_fraction)
        if sum(max(len(s) - 1, 0) for s in parts.train) == 0:
            raise RnnkitError(f"{config.train}: no user has two training actions; nothing to "
                              "learn from")
        if context.resume is None:
            index.count(parts.train)
        if context.shard.rank == 0:
            print(f"{config.train}: {len(log.users)} users, {len(index) - 1} items, "
                  f"{log.actions} actions; {len(parts.test)} users held out, {parts.skipped} "
                  f"too short for --split {config.split} (training only)")
        valid = parts.valid
        if config.valid:
            valid = split(read_log(config.valid, config.format), index, "last").test
        return {"index": index, "train": parts.train, "valid": valid}

    def build_model(self, config: RecommendConfig, data: dict) -> Recommender:
        return Recommender(len(data["index"]), config.model)

    def task(self, config: RecommendConfig, data: dict, seed: int) -> RecommendTask:
        return RecommendTask(config, data["index"], data["train"], data["valid"], seed)

    # ------------------------------------------------------------------ after training

    def load(self, checkpoint: Checkpoint) -> Loaded:
        index = ItemIndex.from_json(checkpoint.read_json("items.json"))
        model = checkpoint.load_weights(Recommender(len(index), checkpoint.options.model))
        return Loaded(model, index, checkpoint.options, [(model, checkpoint.options.max_length)])

    def load_ensemble(self, checkpoints: list[Checkpoint]) -> Loaded:
        """Models trained on the same items: each ranks by its log-softmax over the items, the
        ensemble by their mean (the geometric mean of the members' next-item distributions)."""
        first, *others = self.load_members(checkpoints, {
            "its item ids (items.json)": lambda m: m.index.to_json()})
        for other in others:
            first.members.extend(other.members)
        return first

    def evaluate(self, loaded: Loaded, options: EvalOptions) -> dict:
        config = loaded.config
        path = options.data or config.train
        parts = split(read_log(path, config.format), loaded.index, config.split,
                      valid_fraction=config.valid_fraction, test_fraction=config.test_fraction)
        cases = parts.test if options.part == "test" else parts.valid
        if not cases:
            raise RnnkitError(f"{path}: no user has a held-out {options.part} item "
                              f"({parts.skipped} users too short for --split {config.split})")
        if options.users and len(cases) > options.users:
            cases = random.Random(options.seed).sample(cases, options.users)
        protocol = Protocol(options.protocol, options.negatives, _cutoffs(options.cutoffs),
                            not options.include_seen, options.batch_size, options.seed)
        scorer = _scorer(loaded, options.scorer, parts.train)
        metrics = evaluate_ranking(scorer, cases, len(loaded.index) - 1, protocol)
        return {**metrics, "users_skipped": parts.skipped, "unknown_items": parts.unknown_items,
                "unknown_cases": parts.unknown_cases}

    def predict(self, loaded: Loaded, options: PredictOptions) -> Iterator[str]:
        if options.top_k < 1:
            raise RnnkitError(f"--top-k: expected an integer >= 1, got {options.top_k}")
        if bool(options.history) == bool(options.input):
            raise RnnkitError("--history or --input: give exactly one")
        popular = MostPopular(loaded.index.counts)
        scorer = ensemble_scorer(loaded.members)
        for where, text in _histories(options):
            known, unknown = loaded.index.encode(parse_history(text))
            if unknown:
                _warn(f"{where}: unknown item(s) skipped: {' '.join(unknown[:10])}"
                      + (" …" if len(unknown) > 10 else ""))
            if not known:
                _warn(f"{where}: no known item in the history; the most popular items follow")
            scores = (scorer([known]) if known else popular([known]))[0]
            yield _top_line(loaded.index, scores, known, options) + "\n"

    def export_graphs(self, loaded: Loaded):
        """items ``(B, T)``, lengths ``(B,)`` → scores ``(B, N)`` of every item as the next one
        (the model's ``score_all``; column 0, the padding id, is -inf)."""
        from rnnkit.apps.base import ExportGraph
        from rnnkit.models.exportable import RecommenderGraph, padded_example

        model = loaded.model.cpu().eval()
        inputs = padded_example(len(loaded.index), 0, [5, 3])
        return [ExportGraph("scorer", RecommenderGraph(model).eval(), inputs,
                            ["items", "lengths"], ["scores"],
                            {"items": {0: "batch", 1: "length"}, "lengths": {0: "batch"},
                             "scores": {0: "batch"}}, model.score_all,
                            "items: ids of items.json (id 0 = padding, past each length), the "
                            f"last {loaded.config.max_length} items of a history (max_length); "
                            "scores over every id: leave out seen items, take the top k")]


def _scorer(loaded: Loaded, name: str, train: list[list[int]]):
    if name == "popular":
        counts = [0] * (len(loaded.index) - 1)
        for sequence in train:
            for item in sequence:
                counts[item - 1] += 1
        return MostPopular(counts)
    if name == "cooccurrence":
        return Cooccurrence(train, loaded.index.counts)
    return ensemble_scorer(loaded.members)


def _cutoffs(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise RnnkitError(f"--cutoffs: expected integers like 10,20, got {text!r}") from None
    if not values or min(values) < 1:
        raise RnnkitError(f"--cutoffs: expected integers >= 1, got {text!r}")
    return values


def _histories(options: PredictOptions) -> Iterator[tuple[str, str]]:
    """(where, history text) of ``--history`` or each line of ``--input``."""
    if options.history:
        yield "--history", options.history
        return
    name = "<stdin>" if options.input == "-" else options.input
    try:
        handle = sys.stdin if options.input == "-" else open(options.input, encoding="utf-8")
    except OSError as err:
        raise RnnkitError(f"--input {options.input}: cannot read: {err.strerror}") from None
    with handle:
        for number, line in enumerate(handle, 1):
            yield f"{name}:{number}", line


def _top_line(index: ItemIndex, scores: torch.Tensor, history: list[int],
              options: PredictOptions) -> str:
    scores = scores.double().clone()  # (N,)
    scores[0] = float("-inf")
    if not options.include_seen and history:
        scores[history] = float("-inf")
    k = min(options.top_k, int(torch.isfinite(scores).sum()))
    values, items = scores.topk(k)
    names = index.decode(items.tolist())
    if options.scores:
        return " ".join(f"{n}:{v:.4f}" for n, v in zip(names, values.tolist(), strict=True))
    return " ".join(names)


def _warn(message: str) -> None:
    print(f"rnnkit: warning: {message}", file=sys.stderr)

