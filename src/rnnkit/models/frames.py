"""Models of ``rnnkit frames``: next-frame prediction and clip classification.

Next frames (``--task next-frame``), the setting of the ConvLSTM paper's Moving-MNIST experiment
(Shi et al. 2015): read ``input_frames`` frames, predict the following ``future_frames``; each
pixel is a Bernoulli probability (a logit here), trained with per-pixel binary cross-entropy.

- :class:`ConvForecaster` (``--architecture convlstm``): the paper's encoder–forecaster. An
  encoder stack of ConvLSTM (or ConvGRU, ``--cell gru``) layers reads the frames; a forecaster
  stack of the same shape starts from the encoder's final states, layer by layer, and runs
  ``future_frames`` steps without input (a zero frame); a 1×1 convolution of its last layer's
  states gives each predicted frame's logits.
- :class:`FCForecaster` (``fc-lstm``): the paper's FC-LSTM baseline, the same encoder–forecaster
  with ``rnnkit.LSTM`` over flattened frames (no spatial structure) and a linear read-out.
- :class:`FrameCNN` (``cnn``): frame-independent: a stack of 3×3 convolutions (ReLU) reads the
  last input frame alone and outputs the ``future_frames`` frames as channels; no memory of the
  frames before it.

Clip classification (``--task classify``): :class:`ClipClassifier`, a ConvLSTM/ConvGRU stack
reads the whole clip (``lengths=`` for clips of different lengths); the last layer's final state
is pooled (mean and max over the frame) and two linear heads give the digit classes shown
(10 independent logits, multi-label) and the direction of motion (8 classes).

Initialisation (all next-frame models alike): the LSTMs' forget-gate biases start at +1
(Gers et al. 2000; Jozefowicz et al. 2015), and the read-out's bias at the logit of the mean
pixel value of the training frames, so training starts from "predict the average frame"
instead of from p = 0.5. On the moving square of ``tests/test_frames.py`` (64 AdamW steps, lr
0.05, 8 or 16 channels, 3 seeds each), 3 of the 6 runs without the two stayed at the average
(BCE 0.303); with them all 6 reached BCE ≤ 0.001.

Axes: B clips, T frames, H hidden channels, Y × X pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rnnkit._options import option
from rnnkit.nn import LSTM, ConvGRU, ConvLSTM

__all__ = ["FramesModelConfig", "ConvForecaster", "FCForecaster", "FrameCNN", "ClipClassifier",
           "build_forecaster", "ARCHITECTURES"]

ARCHITECTURES = ("convlstm", "fc-lstm", "cnn")


@dataclass
class FramesModelConfig:
    """Model options of ``rnnkit frames train``."""

    architecture: str = option("convlstm", "next-frame model: convlstm (encoder-forecaster), "
                               "fc-lstm (LSTM over flattened frames) or cnn (last frame alone)",
                               ARCHITECTURES)
    cell: str = option("lstm", "convolutional cell: lstm (ConvLSTM) or gru (ConvGRU)",
                       ("lstm", "gru"))
    hidden_size: int = option(32, "hidden channels per layer (fc-lstm: hidden units)",
                              bounds="[1, inf)")
    num_layers: int = option(2, "stacked recurrent (cnn: convolution) layers", bounds="[1, inf)")
    kernel_size: int = option(3, "convolution kernel size (odd)", bounds="[1, inf)")
    dropout: float = option(0.0, "dropout between layers", bounds="[0, 1)")

    def __post_init__(self) -> None:
        if self.kernel_size % 2 == 0:
            raise ValueError(f"--kernel-size: expected an odd size (padding k // 2 keeps the "
                             f"frame's size), got {self.kernel_size}")


def _conv_layer(config: FramesModelConfig, channels: int):
    layer = ConvLSTM if config.cell == "lstm" else ConvGRU
    module = layer(channels, config.hidden_size, config.kernel_size, config.num_layers,
                   dropout=config.dropout, batch_first=True)
    if config.cell == "lstm":
        _forget_bias(module, "bias_l", config.hidden_size, config.num_layers)
    return module


def _forget_bias(module: nn.Module, prefix: str, size: int, layers: int) -> None:
    """Add 1 to the forget-gate block (the second of i, f, g, o) of each layer's bias."""
    with torch.no_grad():
        for layer in range(layers):
            getattr(module, f"{prefix}{layer}")[size : 2 * size] += 1.0


def _start_at_mean(bias: Tensor, mean: float) -> None:
    """The read-out's bias = logit(mean pixel value)."""
    mean = min(max(mean, 1e-3), 1 - 1e-3)
    with torch.no_grad():
        bias.fill_(math.log(mean / (1 - mean)))


class ConvForecaster(nn.Module):
    """Encoder–forecaster of ConvLSTM (ConvGRU) stacks. ``forward(frames (B, T, Y, X),
    future)`` → logits ``(B, future, Y, X)``."""

    def __init__(self, config: FramesModelConfig) -> None:
        super().__init__()
        self.encoder = _conv_layer(config, 1)
        self.forecaster = _conv_layer(config, 1)
        self.output = nn.Conv2d(config.hidden_size, 1, 1)

    def forward(self, frames: Tensor, future: int) -> Tensor:
        batch, _, height, width = frames.shape
        _, state = self.encoder(frames.unsqueeze(2))
        blank = frames.new_zeros(batch, future, 1, height, width)
        out, _ = self.forecaster(blank, state)  # (B, future, H, Y, X)
        return self.output(out.flatten(0, 1)).view(batch, future, height, width)


class FCForecaster(nn.Module):
    """The FC-LSTM baseline: frames flattened to vectors, ``rnnkit.LSTM`` encoder and
    forecaster, a linear read-out per frame."""

    def __init__(self, config: FramesModelConfig, size: tuple[int, int]) -> None:
        super().__init__()
        pixels = size[0] * size[1]
        self.encoder = LSTM(pixels, config.hidden_size, config.num_layers,
                                   batch_first=True, dropout=config.dropout)
        self.forecaster = LSTM(1, config.hidden_size, config.num_layers,
                                      batch_first=True, dropout=config.dropout)
        for lstm in (self.encoder, self.forecaster):
            _forget_bias(lstm, "bias_ih_l", config.hidden_size, config.num_layers)
        self.output = nn.Linear(config.hidden_size, pixels)

    def forward(self, frames: Tensor, future: int) -> Tensor:
        batch, _, height, width = frames.shape
        _, state = self.encoder(frames.flatten(2))
        out, _ = self.forecaster(frames.new_zeros(batch, future, 1), state)
        return self.output(out).view(batch, future, height, width)


class FrameCNN(nn.Module):
    """Frame-independent baseline: convolutions over the last input frame only."""

    def __init__(self, config: FramesModelConfig, future: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for _ in range(config.num_layers):
            layers += [nn.Conv2d(channels, config.hidden_size, config.kernel_size,
                                 padding=config.kernel_size // 2), nn.ReLU()]
            channels = config.hidden_size
        layers.append(nn.Conv2d(channels, future, 1))
        self.net = nn.Sequential(*layers)
        self.future = future
        self.output = layers[-1]

    def forward(self, frames: Tensor, future: int) -> Tensor:
        if future != self.future:
            raise ValueError(f"future: this model predicts {self.future} frames, asked {future}")
        return self.net(frames[:, -1:])


def build_forecaster(config: FramesModelConfig, size: tuple[int, int], future: int,
                     pixel_mean: float = 0.1) -> nn.Module:
    """The next-frame model of ``config.architecture``; its read-out starts at
    ``pixel_mean`` (the training frames' mean pixel value)."""
    if config.architecture == "convlstm":
        model = ConvForecaster(config)
    elif config.architecture == "fc-lstm":
        model = FCForecaster(config, size)
    else:
        model = FrameCNN(config, future)
    _start_at_mean(model.output.bias, pixel_mean)
    return model


class ClipClassifier(nn.Module):
    """Which digits a clip shows and which way they move. ``forward(frames (B, T, Y, X),
    lengths)`` → (digit logits ``(B, 10)``, direction logits ``(B, 8)``)."""

    def __init__(self, config: FramesModelConfig, classes: int = 10, directions: int = 8
                 ) -> None:
        super().__init__()
        self.encoder = _conv_layer(config, 1)
        self.digits = nn.Linear(2 * config.hidden_size, classes)
        self.direction = nn.Linear(2 * config.hidden_size, directions)

    def forward(self, frames: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        _, state = self.encoder(frames.unsqueeze(2), lengths=lengths)
        last = (state[0] if isinstance(state, tuple) else state)[-1]  # (B, H, Y, X)
        pooled = torch.cat([last.mean((2, 3)), last.amax((2, 3))], dim=1)
        return self.digits(pooled), self.direction(pooled)
