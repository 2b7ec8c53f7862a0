"""The music application's corpora and Trainer tasks (piano roll and ABC tokens).

A corpus path is read by *role* (``train``, ``valid``, ``test``): a JSB-layout JSON file gives
the pieces under that key, a directory of ABC files holding a ``split.txt`` gives the tunes that
file assigns to the role; MIDI files and other ABC files are taken whole.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as nnf

from rnnkit.data.bucketing import pad_sequences
from rnnkit.data.music import (
    MIDI_SUFFIXES,
    Piece,
    check_range,
    piano_roll,
    piece_files,
    read_jsb,
    read_midi,
)
from rnnkit.data.music_abc import AbcTune, read_abc, read_split
from rnnkit.data.vocab import Vocabulary
from rnnkit.errors import RnnkitError
from rnnkit.train import StepOutput

__all__ = ["FORMATS", "detect_format", "read_rolls", "read_tunes", "RollTask", "AbcTask",
           "roll_batch", "roll_nll", "token_batch", "token_nll", "characters"]

FORMATS = ("auto", "jsb", "midi", "abc")
ABC_SUFFIXES = (".abc",)


def detect_format(path: str, given: str, option: str) -> str:
    """``given`` unless ``auto``; else from the suffix of ``path`` or of the files in it."""
    if given != "auto":
        return given
    target = Path(path)
    suffixes = ({p.suffix.lower() for p in target.iterdir()} if target.is_dir()
                else {target.suffix.lower()})
    if ".json" in suffixes:
        return "jsb"
    if suffixes & set(MIDI_SUFFIXES):
        return "midi"
    if ".abc" in suffixes:
        return "abc"
    if not target.exists():
        raise RnnkitError(f"{option} {path}: file not found")
    raise RnnkitError(f"{option} {path}: cannot tell the format (expected .json, .mid or .abc); "
                      "give --format jsb|midi|abc")


# ---------------------------------------------------------------------- piano rolls


def read_rolls(path: str, fmt: str, role: str | None, steps_per_quarter: int,
               pitch_range: tuple[int, int]) -> list[Piece]:
    """The pieces of ``path`` for ``role``, every pitch checked against ``pitch_range``."""
    if fmt == "jsb":
        pieces = read_jsb(path, role)
        check_range(pieces, *pitch_range, where=str(path))
        return pieces
    pieces = []
    for file in piece_files(path, MIDI_SUFFIXES):
        piece, tracks = read_midi(file, steps_per_quarter)
        check_range([piece], *pitch_range, where=str(file), tracks=tracks)
        pieces.append(piece)
    return pieces


def roll_batch(pieces: list[Piece], low: int, high: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded rolls ``(B, T, P)`` and lengths ``(B,)``."""
    rolls = [piano_roll(piece, low, high) for piece in pieces]
    lengths = torch.tensor([len(roll) for roll in rolls])
    return torch.nn.utils.rnn.pad_sequence(rolls, batch_first=True), lengths


def roll_nll(model, pieces: list[Piece], low: int, high: int, batch_size: int = 64,
             device: torch.device | None = None) -> tuple[float, int, list[torch.Tensor]]:
    """Total NLL (nats), number of steps, and each piece's per-step NLL ``(T,)``."""
    total, steps, per_piece = 0.0, 0, []
    for start in range(0, len(pieces), batch_size):
        rolls, lengths = roll_batch(pieces[start : start + batch_size], low, high)
        nll = model(rolls.to(device), lengths.to(device)).cpu()  # (B, T)
        total += float(nll.double().sum())
        steps += int(lengths.sum())
        per_piece.extend(row[:length] for row, length in zip(nll, lengths.tolist(), strict=True))
    return total, steps, per_piece


class RollTask:
    """Trainer task of the piano-roll model: mean NLL per time step."""

    monitor, monitor_mode, unit, perplexity = "valid_nll", "min", "step", False

    def __init__(self, config, data: dict[str, Any], seed: int) -> None:
        self.config, self.seed = config, seed
        self.train, self.valid = data["train"], data["valid"]
        self.range = (config.low_pitch, config.high_pitch)

    def train_batches(self, epoch: int, shard):
        order = list(range(shard.rank, len(self.train), shard.world_size))
        random.Random(self.seed + epoch).shuffle(order)
        size = self.config.batch_size
        return [roll_batch([self.train[i] for i in order[k : k + size]], *self.range)
                for k in range(0, len(order), size)]

    def step(self, model, batch) -> StepOutput:
        device = next(model.parameters()).device
        rolls, lengths = batch[0].to(device), batch[1].to(device)
        steps = int(lengths.sum())
        return StepOutput(model(rolls, lengths).sum() / steps, steps)

    def evaluate(self, model) -> dict[str, float]:
        device = next(model.parameters()).device
        total, steps, _ = roll_nll(model, self.valid, *self.range, device=device)
        return {"valid_nll": total / steps, "valid_bits": total / steps / math.log(2)}

    def checkpoint_files(self) -> dict[str, Any]:
        return {"config.json": {"kind": "roll", "pitches": self.range[1] - self.range[0] + 1}}


# ---------------------------------------------------------------------- ABC tokens


def read_tunes(path: str, role: str | None) -> list[AbcTune]:
    """The tunes of ``path`` (a file or a directory of ``.abc`` files) for ``role``: those
    that ``split.txt`` in the directory assigns to it, or all of them."""
    target = Path(path)
    tunes = [tune for file in piece_files(target, ABC_SUFFIXES) for tune in read_abc(file)]
    split_file = target / "split.txt" if target.is_dir() else None
    if split_file is not None and split_file.exists() and role is not None:
        split = read_split(split_file)
        tunes = [t for t in tunes if split.get((Path(t.file).name, t.number)) == role]
        if not tunes:
            raise RnnkitError(f"{split_file}: no tunes for the split {role!r}")
    return tunes


def characters(tune: AbcTune) -> int:
    """Characters of a tune's normalised text (its tokens, plus the end of the tune)."""
    return sum(len(token) for token in tune.tokens) + 1


def token_batch(vocab: Vocabulary, tunes: list[AbcTune]) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``(T, B)`` (``<bos>`` tune) and targets ``(T, B)`` (tune ``<eos>``, -100 past
    the end)."""
    ids = [vocab.encode(t.tokens, bos=True, eos=True) for t in tunes]
    inputs, _ = pad_sequences([i[:-1] for i in ids], vocab.pad_id)
    targets, _ = pad_sequences([i[1:] for i in ids], -100)
    return inputs.t().contiguous(), targets.t().contiguous()


def token_nll(model, vocab: Vocabulary, tunes: list[AbcTune], batch_size: int = 32,
              device: torch.device | None = None) -> tuple[float, int]:
    """Total NLL (nats) of the tunes and their number of predicted tokens."""
    total, count = 0.0, 0
    for start in range(0, len(tunes), batch_size):
        inputs, targets = token_batch(vocab, tunes[start : start + batch_size])
        logits, _ = model(inputs.to(device))
        total += float(nnf.cross_entropy(logits.flatten(0, 1).double(),
                                         targets.flatten().to(device), ignore_index=-100,
                                         reduction="sum"))
        count += int((targets != -100).sum())
    return total, count


class AbcTask:
    """Trainer task of the ABC token model: cross-entropy per token."""

    monitor, monitor_mode, unit, perplexity = "valid_loss", "min", "tok", True

    def __init__(self, config, data: dict[str, Any], seed: int) -> None:
        self.config, self.seed = config, seed
        self.vocab, self.train, self.valid = data["vocab"], data["train"], data["valid"]

    def train_batches(self, epoch: int, shard):
        order = list(range(shard.rank, len(self.train), shard.world_size))
        random.Random(self.seed + epoch).shuffle(order)
        size = self.config.batch_size
        return [token_batch(self.vocab, [self.train[i] for i in order[k : k + size]])
                for k in range(0, len(order), size)]

    def step(self, model, batch) -> StepOutput:
        device = next(model.parameters()).device
        inputs, targets = batch[0].to(device), batch[1].to(device)
        logits, _ = model(inputs)
        loss = nnf.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
        return StepOutput(loss, int((targets != -100).sum()))

    def evaluate(self, model) -> dict[str, float]:
        device = next(model.parameters()).device
        total, count = token_nll(model, self.vocab, self.valid, device=device)
        chars = sum(characters(t) for t in self.valid)
        return {"valid_loss": total / count, "valid_bits_per_char": total / chars / math.log(2)}

    def checkpoint_files(self) -> dict[str, Any]:
        return {"config.json": {"kind": "abc", "vocab_size": len(self.vocab)},
                "vocab.json": self.vocab.to_json()}
