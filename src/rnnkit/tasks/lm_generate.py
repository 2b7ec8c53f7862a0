"""Sampling text from a language model: temperature, top-k, top-p (nucleus), greedy, seed.

``sample_text`` yields the text piece by piece as it samples (for streaming to stdout); the same
seed and options give the same text.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rnnkit.errors import RnnkitError

__all__ = ["SampleConfig", "sample_text", "pick_next", "unknown_symbols"]


@dataclass
class SampleConfig:
    """How to sample; ``temperature`` 0 or ``greedy`` takes the most likely token."""

    max_tokens: int = 200
    temperature: float = 0.8
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1: off
    greedy: bool = False
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_tokens <= 0:
            raise RnnkitError(f"--max-tokens: must be > 0, got {self.max_tokens}")
        if self.temperature < 0:
            raise RnnkitError(f"--temperature: must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise RnnkitError(f"--top-k: must be >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise RnnkitError(f"--top-p: must be in (0, 1], got {self.top_p}")


def pick_next(logits: Tensor, config: SampleConfig, generator: torch.Generator) -> int:
    """Next token id from ``logits`` ``(V,)``."""
    if config.greedy or config.temperature == 0:
        return int(logits.argmax())
    logits = logits.float() / config.temperature
    if config.top_k:
        kth = torch.topk(logits, min(config.top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if config.top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = sorted_logits.softmax(0).cumsum(0)
        drop = cumulative - sorted_logits.softmax(0) >= config.top_p  # keeps at least one
        logits = logits.masked_fill(drop.scatter(0, order, drop), float("-inf"))
    probs = logits.softmax(0).cpu()
    return int(torch.multinomial(probs, 1, generator=generator))


def _start_ids(tokenizer, prime: str) -> list[int]:
    ids = [int(i) for i in tokenizer.encode(prime)] if prime else []
    if not ids:
        ids = [int(i) for i in tokenizer.encode("\n")] or [len(getattr(tokenizer, "vocab", []))]
    if not ids:
        raise RnnkitError("--prime: the tokenizer turns it into no tokens; give other text")
    return ids


def unknown_symbols(tokenizer, text: str) -> list[str]:
    """The distinct characters (char tokenizer) or words (word tokenizer) of ``text`` that
    the vocabulary lacks (byte-level BPE lacks none)."""
    unk = getattr(getattr(tokenizer, "vocab", None), "unk_id", None)
    if unk is None or not text:
        return []
    pieces = list(dict.fromkeys(text if tokenizer.kind == "char" else text.split()))
    return [p for p in pieces if unk in [int(i) for i in tokenizer.encode(p)]]


def sample_text(model: nn.Module, tokenizer, prime: str, config: SampleConfig) -> Iterator[str]:
    """Yield the prime, then the sampled continuation, piece by piece."""
    generator = torch.Generator()
    if config.seed is not None:
        generator.manual_seed(config.seed)
    else:
        generator.seed()
    device = next(model.parameters()).device
    banned = getattr(getattr(tokenizer, "vocab", None), "unk_id", None)
    ids = _start_ids(tokenizer, prime)
    if prime:
        yield prime  # as typed: symbols the vocabulary lacks are read as <unk>, not shown so
    shown = len(tokenizer.decode(ids)) if prime else 0
    generated: list[int] = list(ids) if prime else []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            inputs = torch.tensor(ids, device=device).unsqueeze(1)  # (T, 1)
            hidden = None
            for _ in range(config.max_tokens):
                logits, hidden = model(inputs, hidden)  # (T, 1, V)
                last = logits[-1, 0]
                if banned is not None:
                    last = last.clone()
                    last[banned] = float("-inf")
                token = pick_next(last, config, generator)
                generated.append(token)
                text = tokenizer.decode(generated)
                if not text.endswith("\ufffd"):  # wait for the rest of a split UTF-8 byte run
                    yield text[shown:]
                    shown = len(text)
                inputs = torch.tensor([[token]], device=device)
    finally:
        model.train(was_training)
