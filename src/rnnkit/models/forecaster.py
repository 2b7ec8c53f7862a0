"""Forecasters built from rnnkit's recurrent layers: a seq2seq encoder–decoder and DeepAR.

Both read a window of L past steps of C_in scaled variables (the C targets first, then the
covariates) with F time features, and forecast the C targets over the next H steps.

- :class:`Seq2SeqForecaster` (direct multi-step): an encoder RNN reads the window; a decoder RNN
  started from its final state reads, for each future step, that step's time features and a
  learned position embedding; dot-product attention over the encoder states (LSTMa-style, as
  in Bahdanau et al.) joins each decoder state with the input window; a linear layer gives the
  C point forecasts. Trained with the mean squared error.
- :class:`DeepAR` (autoregressive, Salinas et al. 2020): one RNN reads ``[z_{t-1}, time_t]`` and
  gives the parameters of p(z_t) (Gaussian or Student-t, independent across variables); it is
  trained by the negative log-likelihood of every step with teacher forcing, or with scheduled
  sampling (Bengio et al. 2015) over the horizon; forecasts are sample paths, fed back step by
  step, whose quantiles make the prediction intervals.

With ``window_norm`` each window is standardised by its own mean and standard deviation before
the RNN and the forecast is mapped back (reversible instance normalisation, RevIN without the
affine part): the level of a series moves between the training and the test months.

Axis legend: B batch (windows), L input length, H horizon, C targets, C_in inputs, F time
features, S sample paths, Hd hidden units.
"""

from __future__ import annotations

import math
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

__all__ = ["ForecastModelConfig", "Seq2SeqForecaster", "DeepAR", "build_forecaster"]

_EPS = 1e-5


@dataclass
class ForecastModelConfig(CellOptions):
    """Options of the forecasting model (``[model]`` in TOML)."""

    architecture: str = option("seq2seq", "seq2seq (encoder-decoder, point forecasts) or deepar "
                               "(autoregressive, sampled quantiles)", ("seq2seq", "deepar"))
    cell: str = option("lstm", "recurrent cell", tuple(CELLS))
    hidden_size: int = option(64, "hidden units")
    num_layers: int = option(1, "stacked recurrent layers")
    dropout: float = option(0.0, "dropout between layers")
    attention: bool = option(True, "seq2seq: attention over the encoder states")
    window_norm: bool = option(True, "standardise each window by its own mean and std")
    channel_independent: bool = option(False, "read and forecast each target as a series of "
                                       "its own, with shared weights (covariates beside each)")
    likelihood: str = option("gaussian", "deepar: distribution of each step",
                             ("gaussian", "student_t"))

    def __post_init__(self) -> None:
        check_model_config(self, ("hidden_size", "num_layers"))
        if self.architecture not in ("seq2seq", "deepar"):
            raise ValueError(f"architecture: expected seq2seq or deepar, got "
                             f"{self.architecture!r}")
        if self.likelihood not in ("gaussian", "student_t"):
            raise ValueError(f"likelihood: expected gaussian or student_t, got "
                             f"{self.likelihood!r}")


def _rnn(config: ForecastModelConfig, input_size: int) -> nn.Module:
    return recurrent_stack(config, input_size)


def _window_stats(inputs: Tensor, enabled: bool) -> tuple[Tensor, Tensor]:
    """Mean and std over time of each window, (B, 1, C_in); zeros and ones when disabled."""
    if not enabled:
        return torch.zeros_like(inputs[:, :1]), torch.ones_like(inputs[:, :1])
    return inputs.mean(1, keepdim=True), inputs.std(1, unbiased=False, keepdim=True) + _EPS


def _split_channels(values: Tensor, targets: int) -> Tensor:
    """(B, T, C + K) → (B*C, T, 1 + K): each target with the K covariates beside it."""
    own = values[..., :targets].transpose(1, 2).flatten(0, 1).unsqueeze(-1)  # (B*C, T, 1)
    return torch.cat([own, values[..., targets:].repeat_interleave(targets, 0)], -1)


def _join_channels(values: Tensor, targets: int) -> Tensor:
    """(…, B*C, T, 1) → (…, B, T, C)."""
    values = values.squeeze(-1).unflatten(-2, (-1, targets))  # (…, B, C, T)
    return values.transpose(-1, -2)


class Seq2SeqForecaster(nn.Module):
    """Encoder–decoder forecaster: ``forward(inputs, past_time, future_time)`` → (B, H, C)."""

    def __init__(self, inputs: int, targets: int, time_features: int, horizon: int,
                 config: ForecastModelConfig) -> None:
        super().__init__()
        self.targets, self.config = targets, config
        per_series = inputs - targets + 1 if config.channel_independent else inputs
        self.position = nn.Embedding(horizon, 16)
        self.encoder = _rnn(config, per_series + time_features)
        self.decoder = _rnn(config, time_features + 16)
        width = config.hidden_size * (2 if config.attention else 1)
        self.output = nn.Linear(width, 1 if config.channel_independent else targets)

    def forward(self, inputs: Tensor, past_time: Tensor, future_time: Tensor) -> Tensor:
        mean, std = _window_stats(inputs, self.config.window_norm)  # (B, 1, C_in)
        normalised = (inputs - mean) / std
        if self.config.channel_independent:
            normalised = _split_channels(normalised, self.targets)  # (B*C, L, 1+K)
            past_time = past_time.repeat_interleave(self.targets, 0)
            future_time = future_time.repeat_interleave(self.targets, 0)
        forecast = self._decode(normalised, past_time, future_time)
        if self.config.channel_independent:
            forecast = _join_channels(forecast, self.targets)
        return forecast * std[..., : self.targets] + mean[..., : self.targets]

    def _decode(self, normalised: Tensor, past_time: Tensor, future_time: Tensor) -> Tensor:
        encoded, state = self.encoder(torch.cat([normalised, past_time], -1))  # (B, L, Hd)
        steps = torch.arange(future_time.shape[1], device=normalised.device)
        position = self.position(steps).expand(normalised.shape[0], -1, -1)  # (B, H, 16)
        decoded, _ = self.decoder(torch.cat([future_time, position], -1), state)  # (B, H, Hd)
        if self.config.attention:
            scores = decoded @ encoded.transpose(1, 2) / math.sqrt(decoded.shape[-1])  # (B,H,L)
            decoded = torch.cat([decoded, scores.softmax(-1) @ encoded], -1)  # (B, H, 2Hd)
        return self.output(decoded)  # (B, H, C), or (B*C, H, 1) channel-independent


class DeepAR(nn.Module):
    """Autoregressive forecaster with a likelihood head.

    ``loss(...)`` gives the training loss; ``sample(...)`` the forecast paths (S, B, H, C);
    ``mean_path(...)`` one deterministic path fed with the predicted means (B, H, C).
    """

    def __init__(self, targets: int, time_features: int, config: ForecastModelConfig) -> None:
        super().__init__()
        self.targets, self.config = targets, config
        self.width = 1 if config.channel_independent else targets  # variables per series
        self.rnn = _rnn(config, self.width + time_features)
        per_variable = 3 if config.likelihood == "student_t" else 2
        self.head = nn.Linear(config.hidden_size, per_variable * self.width)

    def _series(self, *tensors: Tensor) -> list[Tensor]:
        """Channel-independent: values (B, T, C) → (B*C, T, 1), time features repeated
        (the values come first, then the time features)."""
        if not self.config.channel_independent:
            return list(tensors)
        return [_split_channels(t, self.targets) if k < len(tensors) - 2
                else t.repeat_interleave(self.targets, 0) for k, t in enumerate(tensors)]

    def _joined(self, values: Tensor) -> Tensor:
        if not self.config.channel_independent:
            return values
        return _join_channels(values, self.targets)

    def distribution(self, hidden: Tensor) -> torch.distributions.Distribution:
        """p(z_t) from the RNN output (…, Hd), independent across the C variables."""
        raw = self.head(hidden).unflatten(-1, (-1, self.width))  # (…, 2 or 3, C)
        loc, scale = raw[..., 0, :], nnf.softplus(raw[..., 1, :]) + 1e-3
        if self.config.likelihood == "student_t":
            df = 2.0 + nnf.softplus(raw[..., 2, :])
            return torch.distributions.StudentT(df, loc, scale)
        return torch.distributions.Normal(loc, scale)

    def _normalised(self, inputs: Tensor, future: Tensor | None):
        mean, std = _window_stats(inputs, self.config.window_norm)  # (B, 1, C)
        values = inputs if future is None else torch.cat([inputs, future], 1)
        return (values - mean) / std, mean, std

    def loss(self, inputs: Tensor, future: Tensor, past_time: Tensor, future_time: Tensor,
             sample_probability: float = 0.0) -> Tensor:
        """Mean negative log-likelihood (normalised scale) of steps 1 … L+H-1 of the window.

        inputs (B, L, C), future (B, H, C) the true continuation; with ``sample_probability``
        p > 0, each horizon step is fed the model's own sample instead of the truth with
        probability p (scheduled sampling).
        """
        inputs, future, past_time, future_time = self._series(inputs, future, past_time,
                                                              future_time)
        values, _, _ = self._normalised(inputs, future)  # (B, L+H, C)
        times = torch.cat([past_time, future_time], 1)[:, 1:]  # time of each predicted step
        if sample_probability <= 0:
            hidden, _ = self.rnn(torch.cat([values[:, :-1], times], -1))  # (B, L+H-1, Hd)
            return -self.distribution(hidden).log_prob(values[:, 1:]).mean()
        length = inputs.shape[1]
        hidden, state = self.rnn(torch.cat([values[:, : length - 1], times[:, : length - 1]], -1))
        outputs, previous = [hidden], hidden[:, -1:]
        for t in range(length, values.shape[1]):
            with torch.no_grad():
                sampled = self.distribution(previous).sample()  # (B, 1, C)
            use_own = torch.rand(len(values), 1, 1, device=values.device) < sample_probability
            fed = torch.where(use_own, sampled, values[:, t - 1: t])
            previous, state = self.rnn(torch.cat([fed, times[:, t - 1: t]], -1), state)
            outputs.append(previous)
        hidden = torch.cat(outputs, 1)  # (B, L+H-1, Hd)
        return -self.distribution(hidden).log_prob(values[:, 1:]).mean()

    def _context(self, inputs: Tensor, past_time: Tensor, future_time: Tensor):
        """State after the window and p(z_L); returns (state, last output, mean, std, times)."""
        values, mean, std = self._normalised(inputs, None)
        times = torch.cat([past_time, future_time], 1)[:, 1:]
        length = inputs.shape[1]
        hidden, state = self.rnn(torch.cat([values, times[:, :length]], -1))
        return state, hidden[:, -1:], mean, std, times[:, length - 1:]

    def sample(self, inputs: Tensor, past_time: Tensor, future_time: Tensor,
               samples: int) -> Tensor:
        """Forecast sample paths (S, B, H, C) on the inputs' scale."""
        inputs, past_time, future_time = self._series(inputs, past_time, future_time)
        state, last, mean, std, times = self._context(inputs, past_time, future_time)
        state = _repeat_state(state, samples)  # (layers, S*B, Hd)
        last, times = last.repeat(samples, 1, 1), times.repeat(samples, 1, 1)
        paths = []
        for t in range(future_time.shape[1]):
            value = self.distribution(last).sample()  # (S*B, 1, C)
            paths.append(value)
            if t + 1 < future_time.shape[1]:
                last, state = self.rnn(torch.cat([value, times[:, t + 1: t + 2]], -1), state)
        paths = torch.cat(paths, 1).unflatten(0, (samples, -1))  # (S, B, H, C)
        return self._joined(paths * std + mean)

    def mean_path(self, inputs: Tensor, past_time: Tensor, future_time: Tensor) -> Tensor:
        """One path fed with the predicted means (B, H, C): a cheap point forecast."""
        inputs, past_time, future_time = self._series(inputs, past_time, future_time)
        state, last, mean, std, times = self._context(inputs, past_time, future_time)
        path = []
        for t in range(future_time.shape[1]):
            value = self.distribution(last).mean  # (B, 1, C)
            path.append(value)
            if t + 1 < future_time.shape[1]:
                last, state = self.rnn(torch.cat([value, times[:, t + 1: t + 2]], -1), state)
        return self._joined(torch.cat(path, 1) * std + mean)


def _repeat_state(state, samples: int):
    if isinstance(state, tuple):
        return tuple(s.repeat(1, samples, 1) for s in state)
    return state.repeat(1, samples, 1)


def build_forecaster(config: ForecastModelConfig, inputs: int, targets: int,
                     time_features: int, horizon: int) -> nn.Module:
    """The model ``config.architecture`` names, for these input and output sizes."""
    if config.architecture == "deepar":
        return DeepAR(targets, time_features, config)
    return Seq2SeqForecaster(inputs, targets, time_features, horizon, config)
