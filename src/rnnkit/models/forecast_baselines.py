"""Baseline forecasters, plain functions on arrays, scored by the same code as the RNNs.

- :func:`repeat_last`: every future step equals the last observed value.
- :func:`seasonal_naive`: every future step equals the value one season (24 h) earlier.
- :class:`LinearForecaster`: one linear map from the L input values of a variable to its H
  future values, shared by all variables, fitted by least squares on the training windows.
  DLinear (Zeng et al. 2023) splits the window into trend (moving average) and remainder and
  maps each linearly; both parts are linear in the window, so its forecasts are a linear map of
  the window too: this is the same model class, fitted in closed form instead of by SGD.

Axis legend: B windows, L input length, H horizon, C variables.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["repeat_last", "seasonal_naive", "LinearForecaster"]


def repeat_last(inputs: np.ndarray, horizon: int) -> np.ndarray:
    """(B, L, C) → (B, H, C): the last value repeated."""
    return np.repeat(inputs[:, -1:], horizon, axis=1)


def seasonal_naive(inputs: np.ndarray, horizon: int, period: int = 24) -> np.ndarray:
    """(B, L, C) → (B, H, C): step h takes the value ``period`` steps before it (the last
    season of the window repeated); needs L ≥ period."""
    if inputs.shape[1] < period:
        raise ValueError(f"seasonal_naive: input length {inputs.shape[1]} < period {period}")
    season = inputs[:, -period:]
    repeats = -(-horizon // period)
    return np.tile(season, (1, repeats, 1))[:, :horizon]


@dataclass
class LinearForecaster:
    """``forecast = window @ weight + bias`` per variable; weight (L, H), bias (H,)."""

    weight: np.ndarray
    bias: np.ndarray

    @classmethod
    def fit(cls, inputs: np.ndarray, targets: np.ndarray, ridge: float = 1e-3) -> LinearForecaster:
        """Least squares (with a small ridge) on training windows: inputs (B, L, C),
        targets (B, H, C); the variables are pooled."""
        windows = inputs.transpose(0, 2, 1).reshape(-1, inputs.shape[1])  # (B*C, L)
        future = targets.transpose(0, 2, 1).reshape(-1, targets.shape[1])  # (B*C, H)
        design = np.concatenate([windows, np.ones((len(windows), 1))], 1)  # (B*C, L+1)
        gram = design.T @ design + ridge * len(design) * np.eye(design.shape[1])
        solution = np.linalg.solve(gram, design.T @ future)  # (L+1, H)
        return cls(solution[:-1], solution[-1])

    def __call__(self, inputs: np.ndarray, horizon: int | None = None) -> np.ndarray:
        """(B, L, C) → (B, H, C)."""
        forecast = np.einsum("blc,lh->bhc", inputs, self.weight)
        return forecast + self.bias[None, :, None]
