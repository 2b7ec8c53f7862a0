"""Scoring and output of ``rnnkit forecast``: backtests, intervals, the CSV and the plot.

Every forecaster — the trained model and the baselines — is scored by :class:`Scores` on the
same windows. Metrics: MSE and MAE on the normalised scale (z-scored with the training
statistics, as in the literature) and on the original scale, averaged over every window,
step and variable; for interval forecasts the coverage of the central 80 % and 95 % intervals
and the CRPS, approximated as twice the mean pinball loss over the quantile levels
0.05, 0.10, …, 0.95 (the GluonTS approximation; on the normalised scale).

Intervals: DeepAR samples paths and takes their quantiles; seq2seq, which gives point
forecasts, uses a Gaussian around them whose standard deviation per step and variable is the
root mean squared error on the validation windows (saved in ``bands.json`` at training).

Axis legend: B windows, L input length, H horizon, C targets, Q quantile levels, S samples.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rnnkit.data.timeseries import Scaler, gather_windows, window_starts
from rnnkit.errors import RnnkitError
from rnnkit.models.forecast_baselines import LinearForecaster, repeat_last, seasonal_naive
from rnnkit.models.forecaster import DeepAR

__all__ = ["Loaded", "Scores", "point_forecast", "forecast_quantiles", "forecast_after",
           "evaluate_windows", "forecast_csv", "write_plot", "CRPS_LEVELS"]

CRPS_LEVELS = tuple(round(0.05 * k, 2) for k in range(1, 20))
_PATHS_PER_CHUNK = 20000


@dataclass
class Loaded:
    """A trained forecaster: model, training options, columns, scaler and band widths."""

    model: torch.nn.Module
    config: Any
    targets: list[str]
    covariates: list[str]
    scaler: Scaler
    residual_std: np.ndarray | None  # (H, C), normalised scale; seq2seq intervals
    device: torch.device


def point_forecast(model, inputs: Tensor, past_time: Tensor, future_time: Tensor) -> Tensor:
    """(B, H, C) point forecasts (DeepAR: the path fed with its own means)."""
    if isinstance(model, DeepAR):
        return model.mean_path(inputs, past_time, future_time)
    return model(inputs, past_time, future_time)


def _quantiles(paths: Tensor, levels: list[float]) -> Tensor:
    """(Q, …) linear-interpolated quantiles of ``paths`` (S, …) along S."""
    ordered = paths.sort(0).values
    position = torch.tensor(levels, dtype=paths.dtype) * (len(paths) - 1)
    low = position.floor().long()
    high = (low + 1).clamp(max=len(paths) - 1)
    weight = (position - low).view(-1, *[1] * (paths.dim() - 1))
    return ordered[low] * (1 - weight) + ordered[high] * weight


def forecast_quantiles(loaded: Loaded, inputs: Tensor, past_time: Tensor, future_time: Tensor,
                       levels: list[float], samples: int) -> tuple[Tensor, Tensor]:
    """Point forecasts (B, H, C) and quantiles (Q, B, H, C), normalised scale."""
    model = loaded.model
    with torch.no_grad():
        if isinstance(model, DeepAR):
            paths = model.sample(inputs, past_time, future_time, samples)  # (S, B, H, C)
            return paths.mean(0), _quantiles(paths, levels)
        point = model(inputs, past_time, future_time)
    if loaded.residual_std is None:
        raise RnnkitError("the checkpoint has no bands.json (trained before its first "
                          "evaluation); intervals are unknown")
    normal = torch.distributions.Normal(0.0, 1.0)
    z = normal.icdf(torch.tensor(levels, dtype=torch.float64)).float()  # (Q,)
    std = torch.as_tensor(loaded.residual_std, dtype=point.dtype)  # (H, C)
    return point, point + z.view(-1, 1, 1, 1) * std


def _windows(loaded: Loaded, data, starts: np.ndarray) -> list[Tensor]:
    config = loaded.config
    arrays = gather_windows(data.values, data.features, starts, config.input_length,
                            config.horizon, len(loaded.targets))
    return [torch.as_tensor(a, dtype=torch.float32, device=loaded.device) for a in arrays]


def forecast_after(loaded: Loaded, history: np.ndarray, past: np.ndarray, future: np.ndarray,
                   levels: list[float], samples: int) -> tuple[np.ndarray, dict[float, np.ndarray]]:
    """One forecast after ``history`` (L, C_in) on the original scale: point (H, C) and
    ``{level: (H, C)}``."""
    tensors = [torch.as_tensor(a[None], dtype=torch.float32, device=loaded.device)
               for a in (history, past, future)]
    point, quantiles = forecast_quantiles(loaded, *tensors, levels, samples)
    columns = list(range(len(loaded.targets)))
    point = loaded.scaler.inverse(point[0].cpu().numpy(), columns)
    return point, {q: loaded.scaler.inverse(quantiles[k, 0].cpu().numpy(), columns)
                   for k, q in enumerate(levels)}


# ---------------------------------------------------------------------- scores


class Scores:
    """Running sums of the errors of one forecaster over many windows."""

    def __init__(self, scaler: Scaler, targets: int) -> None:
        self.std, self.count = scaler.std[:targets], 0
        self.sums: dict[str, float] = {}
        self.by_step: np.ndarray | None = None

    def _add(self, name: str, value: float) -> None:
        self.sums[name] = self.sums.get(name, 0.0) + float(value)

    def add(self, point: np.ndarray, truth: np.ndarray, quantiles: np.ndarray | None = None,
            levels: list[float] | None = None) -> None:
        """point, truth (B, H, C) normalised; quantiles (Q, B, H, C) at ``levels``."""
        error = point - truth
        self.count += error.size
        self._add("mse", (error ** 2).sum())
        self._add("mae", np.abs(error).sum())
        self._add("mse_original", ((error * self.std) ** 2).sum())
        self._add("mae_original", np.abs(error * self.std).sum())
        step = (error ** 2).sum(axis=(0, 2))  # (H,)
        self.by_step = step if self.by_step is None else self.by_step + step
        if quantiles is not None:
            self._add_intervals(quantiles, truth, levels)

    def _add_intervals(self, quantiles: np.ndarray, truth: np.ndarray, levels: list[float]):
        at = {round(q, 4): k for k, q in enumerate(levels)}
        for name, low, high in (("80", 0.1, 0.9), ("95", 0.025, 0.975)):
            lower, upper = quantiles[at[low]], quantiles[at[high]]
            self._add(f"coverage_{name}", ((truth >= lower) & (truth <= upper)).sum())
            self._add(f"interval_width_{name}", (upper - lower).sum())
        pinball = 0.0
        for q in CRPS_LEVELS:
            below = truth - quantiles[at[q]]
            pinball += np.maximum(q * below, (q - 1) * below).sum()
        self._add("crps", 2 * pinball / len(CRPS_LEVELS))

    def result(self, prefix: str = "") -> dict[str, Any]:
        metrics = {prefix + name: value / self.count for name, value in self.sums.items()}
        if not prefix and self.by_step is not None:
            steps = len(self.by_step)
            metrics["mse_by_step"] = (self.by_step * steps / self.count).round(5).tolist()
        return metrics


def evaluate_windows(loaded: Loaded, data, starts: np.ndarray, options,
                     linear_data=None) -> dict[str, Any]:
    """Scores of the model (and with ``linear_data`` of the baselines) on the windows at
    ``starts``: a rolling backtest, one forecast per origin."""
    config, targets = loaded.config, len(loaded.targets)
    levels = sorted({*CRPS_LEVELS, 0.025, 0.975})
    scores = Scores(loaded.scaler, targets)
    baselines = _baselines(loaded, linear_data, config) if linear_data is not None else {}
    baseline_scores = {name: Scores(loaded.scaler, targets) for name in baselines}
    samples = options.samples if isinstance(loaded.model, DeepAR) else 1
    chunk = max(1, min(512, _PATHS_PER_CHUNK // samples))
    for k in range(0, len(starts), chunk):
        inputs, past_time, future_time, future = _windows(loaded, data, starts[k:k + chunk])
        point, quantiles = forecast_quantiles(loaded, inputs, past_time, future_time, levels,
                                              options.samples)
        truth = future.cpu().numpy()
        scores.add(point.cpu().numpy(), truth, quantiles.cpu().numpy(), levels)
        window = inputs[..., :targets].cpu().numpy()
        for name, forecaster in baselines.items():
            baseline_scores[name].add(forecaster(window, config.horizon), truth)
    metrics: dict[str, Any] = {"windows": len(starts), "horizon": config.horizon,
                               **scores.result()}
    for name, baseline in baseline_scores.items():
        metrics.update(baseline.result(f"{name}_"))
    return metrics


def _baselines(loaded: Loaded, data, config) -> dict[str, Any]:
    """The baselines scored beside the model; the linear one fitted on the training windows."""
    found = {"repeat_last": repeat_last}
    if config.input_length >= 24:
        found["seasonal_naive"] = seasonal_naive
    starts = window_starts(0, data.bounds[0], config.input_length, config.horizon)
    inputs, _, _, future = gather_windows(data.values, data.features, starts,
                                          config.input_length, config.horizon,
                                          len(loaded.targets))
    found["linear"] = LinearForecaster.fit(inputs[..., : len(loaded.targets)], future)
    return found


# ---------------------------------------------------------------------- output


def forecast_csv(loaded: Loaded, labels: list[str], point: np.ndarray,
                 quantiles: dict[float, np.ndarray], levels: list[float]) -> str:
    """``time,variable,forecast,q0.1,…`` — one row per future step and target, original
    scale."""
    header = ["time", "variable", "forecast"] + [f"q{q:g}" for q in levels]
    rows = [",".join(header)]
    for h, label in enumerate(labels):
        for c, name in enumerate(loaded.targets):
            cells = [point[h, c]] + [quantiles[q][h, c] for q in levels]
            rows.append(",".join([label, name] + [f"{v:.6g}" for v in cells]))
    return "\n".join(rows) + "\n"


def write_plot(path: str, loaded: Loaded, series, history: int, future_x: list,
               point: np.ndarray, quantiles: dict[float, np.ndarray]) -> None:
    """PNG: the last ``history`` observed steps, the forecast and its 80 % and 95 % bands,
    one panel per target (at most 8)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    from rnnkit._io import atomic_write_bytes

    shown = loaded.targets[:8]
    past_x = (series.times or list(series.index))[-history:]
    figure = Figure(figsize=(9, 2.4 * len(shown) + 0.6), dpi=100)
    for c, name in enumerate(shown):
        axes = figure.add_subplot(len(shown), 1, c + 1)
        axes.plot(past_x, series.values[-history:, c], color="black", lw=1, label="history")
        axes.fill_between(future_x, quantiles[0.025][:, c], quantiles[0.975][:, c],
                          color="tab:blue", alpha=0.2, lw=0, label="95% interval")
        axes.fill_between(future_x, quantiles[0.1][:, c], quantiles[0.9][:, c],
                          color="tab:blue", alpha=0.4, lw=0, label="80% interval")
        axes.plot(future_x, point[:, c], color="tab:blue", lw=1.5, label="forecast")
        axes.set_ylabel(name)
        axes.grid(alpha=0.3)
    figure.axes[0].legend(loc="upper left", fontsize="small", ncols=4)
    figure.autofmt_xdate()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    try:
        atomic_write_bytes(Path(path), buffer.getvalue())
    except OSError as err:
        raise RnnkitError(f"--plot {path}: cannot write: {err.strerror}") from None
