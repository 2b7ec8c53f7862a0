"""Language modelling: train on text, evaluate perplexity / bits per character, generate text.

``train_lm`` builds the tokenizer on the training files (or takes it from the checkpoint being
resumed), caches the token ids next to the checkpoint, and trains a
:class:`~rnnkit.models.lm.LanguageModel` with truncated BPTT through the shared
:class:`~rnnkit.train.Trainer`. ``evaluate_lm`` and ``load_lm`` read a checkpoint directory;
generation is in :mod:`rnnkit.tasks.lm_generate`.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rnnkit.data.corpus import ERRORS, encode_corpus, find_files, read_chunks
from rnnkit.data.streams import TBPTTBatch, TokenStreams
from rnnkit.data.tokenizers import TOKENIZERS, Tokenizer, build_tokenizer, tokenizer_from_json
from rnnkit.errors import RnnkitError
from rnnkit.models.lm import CELLS, LanguageModel, LMConfig, detach_hidden
from rnnkit.train import Callback, Shard, StepOutput, TrainConfig, Trainer, TrainResult
from rnnkit.train import checkpoint as ckpt
from rnnkit.train.config import option as _opt
from rnnkit.train.distributed import init_distributed
from rnnkit.train.rng import seed_everything
from rnnkit.train.trainer import resolve_device

__all__ = ["LMTaskConfig", "LanguageModelTask", "train_lm", "evaluate_lm", "load_lm",
           "saved_options"]

TOKENIZER_FILE = "tokenizer.json"


@dataclass
class LMTaskConfig:
    """Data and model options of ``rnnkit lm train``."""

    data: str = _opt("", "training text: a file, a directory, a glob, or several (comma-separated)")
    valid: str | None = _opt(None, "validation text (default: the last --valid-fraction of --data)")
    valid_fraction: float = _opt(0.1, "share of --data held out for validation without --valid")
    glob: str = _opt("*.txt", "file pattern for directories given as --data / --valid")
    errors: str = _opt("strict", "invalid UTF-8: stop with an error, or replace it", ERRORS)
    tokenizer: str = _opt("char", "token unit", TOKENIZERS)
    vocab_size: int = _opt(8000, "word / bpe: vocabulary size")
    min_freq: int = _opt(1, "rarer symbols become <unk> (char, word)")
    bptt: int = _opt(128, "steps per truncated-BPTT chunk")
    random_bptt: bool = _opt(False, "vary the chunk length around --bptt")
    batch_size: int = _opt(32, "parallel streams per process")
    max_valid_tokens: int | None = _opt(None, "score about this many validation tokens, spread "
                                              "over the whole validation text")
    cell: str = _opt("lstm", "recurrent cell", CELLS)
    embedding_size: int = _opt(128, "embedding size")
    hidden_size: int = _opt(512, "hidden units per layer")
    num_layers: int = _opt(2, "recurrent layers")
    dropout: float = _opt(0.2, "dropout on embeddings, between layers and before the output")
    tie_weights: bool = _opt(False, "share the embedding matrix with the output layer")

    def __post_init__(self) -> None:
        for name in ("bptt", "batch_size", "vocab_size", "min_freq"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name.replace('_', '-')}: must be > 0, "
                                 f"got {getattr(self, name)}")
        if not 0 < self.valid_fraction < 1:
            raise ValueError(f"--valid-fraction: must be in (0, 1), got {self.valid_fraction}")
        if self.max_valid_tokens is not None and self.max_valid_tokens < 2:
            raise ValueError(f"--max-valid-tokens: must be >= 2, got {self.max_valid_tokens}")

    def model_config(self, vocab_size: int) -> LMConfig:
        try:
            return LMConfig(vocab_size, self.cell, self.embedding_size, self.hidden_size,
                            self.num_layers, self.dropout, self.tie_weights)
        except ValueError as err:
            raise RnnkitError(str(err)) from None


class LanguageModelTask:
    """The :class:`~rnnkit.train.Task` of language modelling, with the TBPTT state carried."""

    name, monitor, monitor_mode, unit, perplexity = "lm", "valid_loss", "min", "tok", True

    def __init__(self, config: LMTaskConfig, model_config: LMConfig, tokenizer: Tokenizer,
                 train_tokens: np.ndarray, valid_tokens: np.ndarray, chars_per_token: float,
                 seed: int) -> None:
        self.config, self.model_config, self.tokenizer = config, model_config, tokenizer
        self.train_tokens, self.valid_tokens = train_tokens, valid_tokens
        self.chars_per_token, self.seed = chars_per_token, seed
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
            ckpt.CONFIG: {"model": self.model_config.to_json(), "lm": asdict(self.config),
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
    total, count, hidden = 0.0, 0, None
    for batch in streams.epoch(0):
        if max_tokens is not None and count >= max_tokens:
            break
        logits, hidden = model(batch.inputs.to(device), hidden)
        targets = batch.targets.to(device)
        total += nn.functional.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(),
                                             reduction="sum").item()
        count += targets.numel()
    return total / count


# ---------------------------------------------------------------------- data preparation


def _prepare_data(config: LMTaskConfig, tokenizer: Tokenizer | None, cache_dir: Path):
    """(tokenizer, train tokens, valid tokens, chars per token) for ``config``."""
    if not config.data:
        raise RnnkitError("--data: required (a file, a directory, a glob, or several)")
    train_files = find_files(config.data, config.glob)
    if tokenizer is None:
        tokenizer = build_tokenizer(config.tokenizer, read_chunks(train_files, config.errors),
                                    vocab_size=config.vocab_size, min_freq=config.min_freq)
    train = encode_corpus(train_files, tokenizer, cache_dir, "train", config.errors)
    chars_per_token = train.chars / len(train.tokens)
    if config.valid:
        valid = encode_corpus(find_files(config.valid, config.glob), tokenizer, cache_dir,
                              "valid", config.errors)
        return tokenizer, train.tokens, valid.tokens, chars_per_token
    held_out = int(len(train.tokens) * config.valid_fraction)
    if held_out < 2 or len(train.tokens) - held_out < 2:
        raise RnnkitError(f"--data {config.data}: {len(train.tokens)} tokens are too few to "
                          "hold out a validation part; give more text or --valid")
    split = len(train.tokens) - held_out
    return tokenizer, train.tokens[:split], train.tokens[split:], chars_per_token


def train_lm(config: LMTaskConfig, train_config: TrainConfig, out_dir: str | Path,
             resume: str | Path | None = None,
             callbacks: Sequence[Callback] = ()) -> TrainResult:
    """Train a language model into ``out_dir`` (``best/``, ``last/``, metrics, ``loss.png``)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise RnnkitError(f"--out {out_dir}: exists and is not a directory")
    shard = init_distributed(resolve_device(train_config.device))
    tokenizer, model_config = None, None
    if resume is not None:
        directory = ckpt.resolve_checkpoint(resume, prefer="last")
        saved = ckpt.read_config(directory, "lm")
        tokenizer = _read_tokenizer(directory)
        model_config = _model_config(directory, saved)
        if not config.data:  # resuming without data options: those of the run
            config = _saved_task_config(directory, saved)
    prepared = _prepare_in_order(config, tokenizer, out_dir / "cache", shard)
    tokenizer, train_tokens, valid_tokens, chars_per_token = prepared
    model_config = model_config or config.model_config(tokenizer.vocab_size)
    seed_everything(train_config.seed)
    model = LanguageModel(model_config)
    task = LanguageModelTask(config, model_config, tokenizer, train_tokens, valid_tokens,
                             chars_per_token, train_config.seed)
    return Trainer(model, task, train_config, out_dir, callbacks).fit(resume=resume)


def _prepare_in_order(config, tokenizer, cache_dir: Path, shard: Shard):
    """Rank 0 builds the token cache first; the other ranks then read it."""
    if shard.world_size == 1:
        return _prepare_data(config, tokenizer, cache_dir)
    import torch.distributed as dist

    if shard.rank != 0:
        dist.barrier()
    prepared = _prepare_data(config, tokenizer, cache_dir)
    if shard.rank == 0:
        dist.barrier()
    return prepared


# ---------------------------------------------------------------------- checkpoints


def _read_tokenizer(directory: Path) -> Tokenizer:
    path = directory / TOKENIZER_FILE
    return tokenizer_from_json(ckpt.read_json(path), source=str(path))


def _model_config(directory: Path, saved: dict[str, Any]) -> LMConfig:
    try:
        return LMConfig(**saved["model"])
    except (KeyError, TypeError, ValueError) as err:
        raise RnnkitError(f"checkpoint {directory}: {ckpt.CONFIG} has no valid model "
                          f"description: {err}") from None


def saved_options(checkpoint: str | Path) -> dict[str, Any]:
    """Data, model and training options a run was started with (from its ``last/`` or given
    checkpoint), as one flat mapping: the base that flags override when resuming."""
    directory = ckpt.resolve_checkpoint(checkpoint, prefer="last")
    saved = ckpt.read_config(directory, "lm")
    options = {**saved.get("lm", {}), **saved.get("train", {})}
    return {"__source__": str(directory / ckpt.CONFIG), **options}


def _saved_task_config(directory: Path, saved: dict[str, Any]) -> LMTaskConfig:
    try:
        return LMTaskConfig(**saved["lm"])
    except (KeyError, TypeError, ValueError) as err:
        raise RnnkitError(f"checkpoint {directory}: {ckpt.CONFIG} has no valid data options "
                          f"({err}); give --data") from None


def load_lm(checkpoint: str | Path, device: str = "auto"):
    """(model in eval mode, tokenizer, config.json) of a language-model checkpoint."""
    directory = ckpt.resolve_checkpoint(checkpoint, prefer="best")
    saved = ckpt.read_config(directory, "lm")
    tokenizer = _read_tokenizer(directory)
    model = LanguageModel(_model_config(directory, saved))
    ckpt.load_weights(directory, model)
    return model.to(resolve_device(device)).eval(), tokenizer, saved


def evaluate_lm(checkpoint: str | Path, data: str, *, glob: str = "*.txt",
                errors: str = "strict", batch_size: int = 32, bptt: int | None = None,
                device: str = "auto") -> dict[str, float]:
    """Loss (nats/token), perplexity and bits per character of a checkpoint on ``data``."""
    if batch_size <= 0:
        raise RnnkitError(f"--batch-size: must be > 0, got {batch_size}")
    if bptt is not None and bptt <= 0:
        raise RnnkitError(f"--bptt: must be > 0, got {bptt}")
    model, tokenizer, saved = load_lm(checkpoint, device)
    bptt = bptt or saved.get("lm", {}).get("bptt", 128)
    files = find_files(data, glob)
    with tempfile.TemporaryDirectory(prefix="rnnkit-eval-") as cache_dir:
        corpus = encode_corpus(files, tokenizer, Path(cache_dir), "eval", errors)
        if len(corpus.tokens) < 2:
            raise RnnkitError(f"--data {data}: too short to evaluate (fewer than 2 tokens)")
        with torch.no_grad():
            loss = stream_loss(model, corpus.tokens, batch_size, bptt)
        tokens, chars = len(corpus.tokens), corpus.chars
        del corpus  # release the memmap before the directory goes
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)),
            "bpc": loss * tokens / chars / math.log(2), "tokens": tokens, "chars": chars}
