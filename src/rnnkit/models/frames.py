"""Models of ``rnnkit frames``: next-frame prediction and clip classification.

Next frames (``--task next-frame``), the setting of the ConvLSTM paper's Moving-MNIST experiment
(Shi et al. 2015): read ``input_frames`` frames, predict the following ``future_frames``; each
pixel is a Bernoulli probability (a logit here), trained with per-pixel binary cross-entropy.

- :class:`ConvForecaster` (``--architecture convlstm``): the paper's encoder–forecaster over
  p × p patches of pixels stacked as channels (``--patch-size``, default 4: the paper cut its
  64×64 frames into 4×4 patches). An encoder stack of ConvLSTM (or ConvGRU, ``--cell gru``)
  layers reads the frames; a forecaster stack of the same shape starts from the encoder's final
  states, layer by layer, and runs ``future_frames`` steps without input (a zero frame); a 1×1
  convolution of the states of all its layers (``--head all``, the paper's; ``last``: its last
  layer) gives each patch's pixel logits.
- :class:`FCForecaster` (``fc-lstm``): the paper's FC-LSTM baseline, the same encoder–forecaster
  with ``rnnkit.LSTM`` over flattened frames (no spatial structure) and a linear read-out.
- :class:`FrameCNN` (``cnn``): frame-independent: a stack of 3×3 convolutions (ReLU) reads the
  last input frame alone and outputs the ``future_frames`` frames as channels; no memory of the
  frames before it.

Clip classification (``--task classify``): :class:`ClipClassifier`. A per-frame convolutional
stem (``--stem`` channels; 0: raw p × p patches) brings each frame to the patch grid, a
ConvLSTM/ConvGRU stack reads the clip (``lengths=`` for clips of different lengths); the last
layer's final state is pooled (mean and max over the positions), with ``--stem-skip`` beside the
stem's features pooled over every frame and position, and two linear heads give the digit
classes shown (10 independent logits, multi-label) and the direction of motion (8 classes).
Without the skip the digit stayed at chance for 600 steps on the moving digits (the ConvLSTM's
pooled state learns the motion first, the shape much later; ``docs/frames.md``).

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
from torch.nn import functional as nnf

from rnnkit._options import option
from rnnkit.nn import LSTM, ConvGRU, ConvLSTM

__all__ = ["FramesModelConfig", "ConvForecaster", "FCForecaster", "FrameCNN", "ClipClassifier",
           "build_forecaster", "ARCHITECTURES", "LEGACY_DEFAULTS", "to_patches", "from_patches",
           "frame_stem"]

ARCHITECTURES = ("convlstm", "fc-lstm", "cnn")

# what a checkpoint saved before the option existed was trained with (``rnnkit frames`` of the
# first session: single pixels, the last layer read out)
LEGACY_DEFAULTS = {"patch_size": 1, "head": "last", "pool": "final", "stem": 0,
                   "stem_skip": False}


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
    patch_size: int = option(4, "convlstm and classify: cut each frame into patches of N x N "
                             "pixels stacked as channels (Shi et al.'s 4x4 patches; 1: single "
                             "pixels); frames are zero-padded to a multiple of N",
                             bounds="[1, inf)")
    head: str = option("all", "convlstm read-out: a 1x1 convolution of all the forecaster's "
                       "layers (all, as Shi et al.) or of its last layer only (last)",
                       ("all", "last"))
    pool: str = option("final", "classify: pool the last layer's final state over the "
                       "positions (final) or its states over every frame and position (steps)",
                       ("final", "steps"))
    stem: int = option(32, "classify: channels of a per-frame convolutional stem (3x3 "
                       "convolutions, ReLU, 2x2 max-pooling down to the --patch-size grid) "
                       "that reads each frame's pixels instead of its raw patches; 0: none",
                       bounds="[0, inf)")
    stem_skip: bool = option(True, "classify (with --stem): the two heads also read the "
                             "stem's features pooled (mean and max) over every frame and "
                             "position, past the ConvLSTM")

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


def to_patches(frames: Tensor, patch: int) -> Tensor:
    """``(B, T, Y, X)`` frames → ``(B, T, p², ⌈Y/p⌉, ⌈X/p⌉)``: each p × p patch of pixels
    becomes one position with p² channels (space-to-depth, ``pixel_unshuffle``), the frame
    zero-padded at the bottom and right to a multiple of p."""
    batch, steps, height, width = frames.shape
    pad_y, pad_x = -height % patch, -width % patch
    if pad_y or pad_x:
        frames = nnf.pad(frames, (0, pad_x, 0, pad_y))
    flat = frames.reshape(batch * steps, 1, *frames.shape[2:])
    cells = nnf.pixel_unshuffle(flat, patch) if patch > 1 else flat
    return cells.view(batch, steps, *cells.shape[1:])


def from_patches(cells: Tensor, patch: int, size: tuple[int, int]) -> Tensor:
    """Inverse of :func:`to_patches` for ``(N, p², Y', X')`` → ``(N, Y, X)`` (the padding cut
    off)."""
    pixels = nnf.pixel_shuffle(cells, patch) if patch > 1 else cells
    return pixels[:, 0, : size[0], : size[1]]


class ConvForecaster(nn.Module):
    """Encoder–forecaster of ConvLSTM (ConvGRU) stacks over p × p patches. ``forward(frames
    (B, T, Y, X), future)`` → logits ``(B, future, Y, X)``."""

    def __init__(self, config: FramesModelConfig) -> None:
        super().__init__()
        self.patch = config.patch_size
        channels = self.patch * self.patch
        self.encoder = _conv_layer(config, channels)
        self.forecaster = _conv_layer(config, channels)
        self.head = config.head
        read = config.hidden_size * (config.num_layers if config.head == "all" else 1)
        self.output = nn.Conv2d(read, channels, 1)

    def forward(self, frames: Tensor, future: int) -> Tensor:
        batch, _, height, width = frames.shape
        cells = to_patches(frames, self.patch)
        _, state = self.encoder(cells)
        blank = cells.new_zeros(batch, future, *cells.shape[2:])
        if self.head == "all":
            outputs, _ = self.forecaster.forward_layers(blank, state)
            out = torch.cat(outputs, dim=2)  # (B, future, L·H, Y', X')
        else:
            out, _ = self.forecaster(blank, state)  # (B, future, H, Y', X')
        logits = self.output(out.flatten(0, 1))
        return from_patches(logits, self.patch, (height, width)).view(batch, future, height,
                                                                      width)


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


def _pool_steps(maps: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
    """Mean and maximum of ``(B, T, C, Y, X)`` over the frames up to each clip's length and
    every position: two ``(B, C)``."""
    batch, steps = maps.shape[:2]
    if lengths is None:
        lengths = torch.full((batch,), steps)
    valid = (torch.arange(steps, device=maps.device)[None, :]
             < torch.as_tensor(lengths, device=maps.device)[:, None])  # (B, T)
    valid = valid[:, :, None, None, None]
    count = valid.sum(1).to(maps.dtype) * maps.shape[3] * maps.shape[4]  # (B, 1, 1, 1)
    mean = (maps * valid).sum((1, 3, 4)) / count.view(batch, 1)
    peak = maps.masked_fill(~valid, float("-inf")).amax((1, 3, 4))
    return mean, peak


def frame_stem(channels: int, patch: int) -> nn.Sequential:
    """Per-frame convolutional stem of the classifier: a 3×3 convolution (1 → ``channels``,
    ReLU) over the pixels, then for each halving of ``patch`` (a power of 2) a 2×2 max-pooling
    and another 3×3 convolution (ReLU): ``(N, 1, Y, X)`` → ``(N, channels, ⌈Y/p⌉, ⌈X/p⌉)``, the
    grid of :func:`to_patches`. Unlike raw p × p patches, its features (strokes, then parts of a
    digit) do not depend on where a digit falls against the patch grid."""
    layers: list[nn.Module] = [nn.Conv2d(1, channels, 3, padding=1), nn.ReLU()]
    for _ in range(patch.bit_length() - 1):
        layers += [nn.MaxPool2d(2, ceil_mode=True), nn.Conv2d(channels, channels, 3, padding=1),
                   nn.ReLU()]
    return nn.Sequential(*layers)


class ClipClassifier(nn.Module):
    """Which digits a clip shows and which way they move. ``forward(frames (B, T, Y, X),
    lengths)`` → (digit logits ``(B, 10)``, direction logits ``(B, 8)``).

    ``pool="steps"`` takes the mean and the maximum of the last layer's states over every frame
    of the clip (up to its length) and every position; ``"final"`` over the positions of its
    final state only. A ConvLSTM's cell is a decaying sum of what it saw along the way, so its
    final state holds the digit smeared along its path: the motion is plain in it, the shape
    much less (see ``docs/frames.md``). With ``stem_skip`` the heads also read the per-frame
    stem's features pooled over every frame and position: the shape, wherever the digit is."""

    def __init__(self, config: FramesModelConfig, classes: int = 10, directions: int = 8
                 ) -> None:
        super().__init__()
        self.patch = config.patch_size
        self.pool = config.pool
        self.stem = frame_stem(config.stem, config.patch_size) if config.stem else None
        self.encoder = _conv_layer(config, config.stem or self.patch * self.patch)
        self.stem_skip = bool(config.stem_skip and config.stem)
        read = 2 * config.hidden_size + (2 * config.stem if self.stem_skip else 0)
        self.digits = nn.Linear(read, classes)
        self.direction = nn.Linear(read, directions)

    def _cells(self, frames: Tensor) -> Tensor:
        """``(B, T, Y, X)`` → what the ConvLSTM reads, ``(B, T, C, ⌈Y/p⌉, ⌈X/p⌉)``."""
        if self.stem is None:
            return to_patches(frames, self.patch)
        batch, steps = frames.shape[:2]
        maps = self.stem(frames.reshape(batch * steps, 1, *frames.shape[2:]))
        return maps.view(batch, steps, *maps.shape[1:])

    def forward(self, frames: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        cells = self._cells(frames)
        out, state = self.encoder(cells, lengths=lengths)
        if self.pool == "final":
            last = (state[0] if isinstance(state, tuple) else state)[-1]  # (B, H, Y', X')
            pooled = torch.cat([last.mean((2, 3)), last.amax((2, 3))], dim=1)
        else:
            pooled = torch.cat(_pool_steps(out, lengths), dim=1)
        if self.stem_skip:
            pooled = torch.cat([pooled, *_pool_steps(cells, lengths)], dim=1)
        return self.digits(pooled), self.direction(pooled)
