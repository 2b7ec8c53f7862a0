"""Language modelling: the pieces of the ``lm`` application (:mod:`rnnkit.apps.lm`).

:func:`prepare_data` builds the tokenizer on the training files (or takes the one of the run being
resumed) and caches the token ids next to the checkpoint; :class:`LanguageModelTask` trains a
:class:`~rnnkit.models.lm.LanguageModel` with truncated BPTT through the shared
:class:`~rnnkit.train.Trainer`; :func:`stream_loss` scores a text; generation is in
:mod:`rnnkit.tasks.lm_generate`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from rnnkit.data.corpus import encode_corpus, find_files, read_chunks
from rnnkit.data.streams import TBPTTBatch, TokenStreams
from rnnkit.data.tokenizers import Tokenizer, build_tokenizer, tokenizer_from_json
from rnnkit.errors import RnnkitError
from rnnkit.models.lm import LanguageModel, LMConfig, detach_hidden
from rnnkit.train import Shard, StepOutput
from rnnkit.train import checkpoint as ckpt

__all__ = ["Prepared", "LanguageModelTask", "prepare_data", "stream_loss", "read_tokenizer",
           "model_from"]

TOKENIZER_FILE = "tokenizer.json"


@dataclass
class Prepared:
    """The tokenizer, the training and validation token ids, and characters per token."""

    tokenizer: Tokenizer
    train_tokens: np.ndarray
    valid_tokens: np.ndarray
    chars_per_token: float


class LanguageModelTask:
    """The :class:`~rnnkit.train.Task` of language modelling, with the TBPTT state carried."""

    name, monitor, monitor_mode, unit, perplexity = "lm", "valid_loss", "min", "tok", True

    def __init__(self, config, model_config: LMConfig, data: Prepared, seed: int) -> None:
        self.config, self.model_config, self.tokenizer = config, model_config, data.tokenizer
        self.train_tokens, self.valid_tokens = data.train_tokens, data.valid_tokens
        self.chars_per_token, self.seed = data.chars_per_token, seed
        self.hidden = None  # carried across chunks, detached
        self._streams: dict[Shard, TokenStreams] = {}

    def train_batches(self, epoch: int, shard: Shard):
        if shard not in self._streams:
            self._streams[shard] = _streams(self.train_tokens, self.config.batch_size,
                                            self.config.bptt, self.config.random_bptt,
                                            self.seed, shard)
        return self._streams[shard].epoch(epoch)

    def step(self, model: nn.Module, batch: TBPTTBatch) -> StepOutput:
        device = next(model.parameters()).device
        hidden = None if batch.reset else self.hidden
        if _summed_loss(self.model_config):  # adaptive softmax, bidirectional: the model's loss
            targets = batch.targets.to(device)
            total, hidden = model(batch.inputs.to(device), hidden, targets=targets)
            self.hidden = detach_hidden(hidden)
            directions = 2 if self.model_config.bidirectional else 1
            return StepOutput(total / (targets.numel() * directions), count=targets.numel())
        logits, hidden = model(batch.inputs.to(device), hidden)  # (T, B, V)
        self.hidden = detach_hidden(hidden)
        targets = batch.targets.to(device)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        return StepOutput(loss, count=targets.numel())

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        loss = stream_loss(model, self.valid_tokens, self.config.batch_size, self.config.bptt,
                           self.config.max_valid_tokens)
        return {"valid_loss": loss, "valid_ppl": math.exp(min(loss, 50.0)),
                "valid_bpc": loss / self.chars_per_token / math.log(2)}

    def checkpoint_files(self) -> dict[str, Any]:
        return {
            ckpt.CONFIG: {"model": self.model_config.to_json(),
                          "chars_per_token": self.chars_per_token},
            TOKENIZER_FILE: self.tokenizer.to_json(),
        }

    def state_dict(self) -> dict[str, Any]:
        hidden = self.hidden
        if isinstance(hidden, tuple):
            hidden = [h.cpu() for h in hidden]
        elif hidden is not None:
            hidden = [hidden.cpu()]
        return {"hidden": hidden, "lstm": isinstance(self.hidden, tuple)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        hidden = state["hidden"]
        if hidden is not None:
            hidden = tuple(hidden) if state["lstm"] else hidden[0]
        self.hidden = hidden


def _streams(tokens, batch_size, bptt, random_bptt, seed, shard: Shard) -> TokenStreams:
    try:
        return TokenStreams(tokens, batch_size, bptt, random_bptt=random_bptt, seed=seed,
                            rank=shard.rank, world_size=shard.world_size)
    except ValueError as err:
        raise RnnkitError(str(err)) from None


def stream_loss(model: nn.Module, tokens: np.ndarray, batch_size: int, bptt: int,
                max_tokens: int | None = None) -> float:
    """Mean next-token loss (nats) over ``tokens``, in streams of ``batch_size`` with the state
    carried. Uses fewer streams if the text is short. With ``max_tokens``, only the first
    steps of every stream are scored: a sample spread over the whole text."""
    batch_size = max(1, min(batch_size, (len(tokens) - 1) // max(bptt, 1)))
    streams = _streams(tokens, batch_size, bptt, False, 0, Shard())
    device = next(model.parameters()).device
    summed = _summed_loss(getattr(model, "config", None))
    total, count, hidden = 0.0, 0, None
    for batch in streams.epoch(0):
        if max_tokens is not None and count >= max_tokens:
            break
        targets = batch.targets.to(device)
        if summed:  # the forward LM's loss, without the (T·B, V) scores of an adaptive softmax
            loss, hidden = model(batch.inputs.to(device), hidden, targets=targets,
                                 backward=False)
            total += loss.item()
            count += targets.numel()
            continue
        logits, hidden = model(batch.inputs.to(device), hidden)
        total += nn.functional.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(),
                                             reduction="sum").item()
        count += targets.numel()
    return total / count


def _summed_loss(config) -> bool:
    """Whether the model computes its own loss (adaptive softmax, bidirectional LM)."""
    return (getattr(config, "softmax", "full") != "full"
            or bool(getattr(config, "bidirectional", False)))


# ---------------------------------------------------------------------- data preparation


def prepare_data(config, tokenizer: Tokenizer | None, cache_dir: Path) -> Prepared:
    """The tokenizer (built on ``config.train`` unless given), the token ids of the training and
    validation text (cached in ``cache_dir``), and characters per token."""
    if not config.train:
        raise RnnkitError("--train: required (a file, a directory, a glob, or several)")
    train_files = find_files(config.train, config.glob)
    if tokenizer is None:
        tokenizer = build_tokenizer(config.tokenizer, read_chunks(train_files, config.errors),
                                    vocab_size=config.vocab_size, min_freq=config.min_freq)
    train = encode_corpus(train_files, tokenizer, cache_dir, "train", config.errors)
    chars_per_token = train.chars / len(train.tokens)
    if config.valid:
        valid = encode_corpus(find_files(config.valid, config.glob), tokenizer, cache_dir,
                              "valid", config.errors)
        return Prepared(tokenizer, train.tokens, valid.tokens, chars_per_token)
    held_out = int(len(train.tokens) * config.valid_fraction)
    if held_out < 2 or len(train.tokens) - held_out < 2:
        raise RnnkitError(f"--train {config.train}: {len(train.tokens)} tokens are too few to "
                          "hold out a validation part; give more text or --valid")
    split = len(train.tokens) - held_out
    return Prepared(tokenizer, train.tokens[:split], train.tokens[split:], chars_per_token)


# ---------------------------------------------------------------------- checkpoints


def read_tokenizer(directory: Path) -> Tokenizer:
    path = directory / TOKENIZER_FILE
    return tokenizer_from_json(ckpt.read_json(path), source=str(path))


def model_from(directory: Path, saved: dict[str, Any], tokenizer: Tokenizer) -> LanguageModel:
    """The (untrained) language model a checkpoint's ``config.json`` describes, checked against
    its tokenizer."""
    sizes = {"vocab_size": (TOKENIZER_FILE, tokenizer.vocab_size)}
    return LanguageModel(ckpt.saved_model(LMConfig, directory, saved, sizes))
