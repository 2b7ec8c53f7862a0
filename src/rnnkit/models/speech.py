r"""The speech recogniser: strided convolutions, a bidirectional RNN stack, a CTC output layer.

Frames ``x`` ``(B, T, F)`` (log-mel or MFCC, normalised per utterance) go through

1. an optional front end of ``log2(subsample)`` 1-D convolutions over time (kernel 5, stride 2,
   ReLU), each halving the frame rate (``subsample`` 1: none; 2; 4);
2. a bidirectional LSTM/GRU/RNN stack from :mod:`rnnkit.nn`, run with ``lengths=`` so that
   padding never changes an utterance's result;
3. a linear layer to the ``V`` CTC symbols (id 0 the blank, then the characters) and a
   log-softmax: ``log p_t(k | x)`` ``(B, T', V)``.

Training minimises the CTC loss (:func:`ctc_loss`, ``torch.nn.functional.ctc_loss``): minus the
log of the sum, over every frame-level path that collapses to the transcript (repeats merged,
blanks removed), of the product of the per-frame probabilities.

Axes: B utterances, T frames in, T' frames out, F features, H hidden units, V symbols.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as nnf

from rnnkit._options import option
from rnnkit.models._config import (
    CELLS,
    CellOptions,
    check_model_config,
    recurrent_stack,
)

__all__ = ["SpeechModelConfig", "SpeechRecognizer", "ctc_loss", "output_lengths"]

_KERNEL, _STRIDE = 5, 2


@dataclass
class SpeechModelConfig(CellOptions):
    """Model options (``--cell``, ``--hidden-size``, …; see the module docstring)."""

    cell: str = option("gru", "recurrent cell", tuple(CELLS))
    hidden_size: int = option(128, "hidden units per direction")
    num_layers: int = option(2, "bidirectional recurrent layers")
    dropout: float = option(0.1, "dropout between layers and before the output layer")
    subsample: int = option(2, "time subsampling by the strided convolution front end "
                               "(1: no front end, 2 or 4)")
    conv_channels: int = option(128, "channels of each convolution of the front end")

    def __post_init__(self) -> None:
        if self.subsample not in (1, 2, 4):
            raise ValueError(f"subsample: expected 1, 2 or 4, got {self.subsample}")
        check_model_config(self, ("hidden_size", "num_layers", "conv_channels"))


def output_lengths(lengths: Tensor, subsample: int) -> Tensor:
    """Frames out of the front end for ``lengths`` ``(B,)`` frames in."""
    for _ in range(subsample.bit_length() - 1):
        lengths = (lengths + 2 * (_KERNEL // 2) - _KERNEL) // _STRIDE + 1
    return lengths


class SpeechRecognizer(nn.Module):
    """Frames ``(B, T, F)`` and their ``lengths`` → CTC log-probabilities ``(B, T', V)`` and the
    output lengths ``(B,)``."""

    def __init__(self, num_features: int, num_symbols: int, config: SpeechModelConfig) -> None:
        super().__init__()
        self.config = config
        self.front = nn.ModuleList()
        size = num_features
        for _ in range(config.subsample.bit_length() - 1):
            self.front.append(nn.Conv1d(size, config.conv_channels, _KERNEL, _STRIDE,
                                        _KERNEL // 2))
            size = config.conv_channels
        self.rnn = recurrent_stack(config, size, bidirectional=True)
        self.dropout = nn.Dropout(config.dropout)
        self.output = nn.Linear(2 * config.hidden_size, num_symbols)

    def forward(self, frames: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        lengths = lengths.cpu()
        hidden = _mask(frames.transpose(1, 2), lengths)  # (B, F, T)
        for conv in self.front:
            lengths = output_lengths(lengths, 2)
            hidden = _mask(torch.relu(conv(hidden)), lengths)  # (B, C, T / 2)
        states, _ = self.rnn(hidden.transpose(1, 2), lengths=lengths)  # (B, T', 2H)
        logits = self.output(self.dropout(states))  # (B, T', V)
        return logits.log_softmax(-1), lengths


def _mask(hidden: Tensor, lengths: Tensor) -> Tensor:
    """``hidden`` ``(B, C, T)`` with the steps at and after each ``lengths`` set to 0, so that
    the next convolution sees the same zeros at an utterance's end, padded or not."""
    steps = torch.arange(hidden.shape[2], device=hidden.device)
    keep = steps[None, :] < lengths.to(hidden.device)[:, None]  # (B, T)
    return hidden * keep[:, None, :].to(hidden.dtype)


def ctc_loss(log_probs: Tensor, out_lengths: Tensor, targets: list[list[int]]) -> Tensor:
    """Mean over the batch of the CTC loss per target symbol; ``log_probs`` ``(B, T', V)``,
    ``targets`` symbol ids (no blanks)."""
    flat = torch.tensor([s for target in targets for s in target], dtype=torch.long)
    target_lengths = torch.tensor([len(t) for t in targets], dtype=torch.long)
    return nnf.ctc_loss(log_probs.transpose(0, 1), flat, out_lengths, target_lengths,
                        blank=0, reduction="mean", zero_infinity=True)
