"""``rnnkit forecast``: multi-step forecasting of time series with prediction intervals.

Data: a CSV/TSV with a time column (``--time-column``; ISO dates or integers), the target
column(s) (``--target OT``, ``--target all``) and optional covariates; split chronologically
(``--split``), z-scored with the statistics of the training rows only, cut into windows of
``--input-length`` steps followed by ``--horizon`` steps. Models (``--architecture``): a seq2seq
encoder–decoder (point forecasts; intervals from the validation residuals, Gaussian) or DeepAR
(sampled paths; intervals from their quantiles), see :mod:`rnnkit.models.forecaster`.
``eval`` scores every window of a part (a rolling backtest) with MSE/MAE on the normalised and
the original scale, CRPS and interval coverage, and with ``--baselines`` scores repeat-last,
seasonal naive and a linear model on the same windows. ``predict`` forecasts the steps after
the end of a file: a CSV of point forecasts and quantiles, and with ``--plot`` a PNG.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as nnf

from rnnkit.apps import Application, Checkpoint, PrepareContext, register
from rnnkit.apps.forecast_eval import (
    Loaded,
    evaluate_windows,
    forecast_after,
    forecast_csv,
    point_forecast,
    write_plot,
)
from rnnkit.data.timeseries import (
    FILLS,
    Scaler,
    Series,
    future_times,
    gather_windows,
    read_header,
    read_series,
    split_bounds,
    time_features,
    window_starts,
)
from rnnkit.errors import RnnkitError
from rnnkit.models.forecaster import ForecastModelConfig, build_forecaster
from rnnkit.train import StepOutput
from rnnkit.train.config import option, section

__all__ = ["Forecast", "ForecastConfig", "ForecastEvalOptions", "ForecastPredictOptions"]


@dataclass
class ForecastConfig:
    """Data and model options of ``rnnkit forecast train``."""

    train: str = option("", "CSV/TSV file: a header, a time column, numeric columns")
    time_column: str = option("date", "the time column (ISO dates or integers; \"\" = row "
                              "number)")
    target: str = option("OT", "column(s) to forecast, comma-separated, or all")
    covariates: str = option("", "other columns read as inputs (seq2seq), comma-separated, "
                             "or all (every non-target column)")
    time_features: bool = option(True, "hour, weekday, day of month and of year as inputs")
    input_length: int = option(96, "steps of history each forecast reads")
    horizon: int = option(24, "steps forecast")
    split: str = option("0.7,0.1,0.2", "train,valid,test: fractions, row counts "
                        "(8640,2880,2880) or the first valid and test dates")
    stride: int = option(1, "steps between training windows")
    fill: str = option("none", "missing values: none (an error), ffill, interpolate, zero",
                       FILLS)
    sort: bool = option(False, "sort rows by time instead of refusing unsorted files")
    batch_size: int = option(64, "windows per batch")
    scheduled_sampling: float = option(0.25, "deepar: final probability of feeding the "
                                       "model's own sample in the horizon")
    sampling_epochs: int = option(4, "deepar: epochs over which that probability rises from 0")
    model: ForecastModelConfig = section(ForecastModelConfig, "model")

    def __post_init__(self) -> None:
        for name in ("input_length", "horizon", "stride", "batch_size", "sampling_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')}: expected an integer >= 1, "
                                 f"got {getattr(self, name)}")
        if self.input_length < 2:
            raise ValueError(f"--input-length: expected >= 2, got {self.input_length}")
        if not 0.0 <= self.scheduled_sampling <= 1.0:
            raise ValueError(f"--scheduled-sampling: expected a probability in [0, 1], got "
                             f"{self.scheduled_sampling}")


@dataclass
class ForecastEvalOptions:
    data: str = option("", "file to score (default: the training file)")
    part: str = option("test", "which rows the forecasts target: the --split part, or all",
                       ("valid", "test", "all"))
    stride: int = option(1, "steps between forecast origins of the backtest")
    samples: int = option(100, "deepar: sample paths per window")
    baselines: bool = option(False, "also score repeat-last, seasonal naive (24) and linear")
    seed: int = option(0, "random seed of the sampling")
    threads: int = option(0, "CPU threads for torch (0: torch's default)")


@dataclass
class ForecastPredictOptions:
    data: str = option("", "recent rows: the forecast starts after the last one (required)")
    quantiles: str = option("0.1,0.5,0.9", "quantile levels written beside the forecast")
    samples: int = option(200, "deepar: sample paths")
    plot: str = option("", "also write a PNG: history, forecast, 80% and 95% bands")
    history: int = option(0, "steps of history in the plot (0: the input length)")
    seed: int = option(0, "random seed of the sampling")


# ---------------------------------------------------------------------- data


@dataclass
class Prepared:
    """A series ready for windows: ``values`` (N, C_in) scaled, targets first; ``features``
    (N, F) time features; ``bounds`` the row ends of train, valid, test."""

    series: Series
    targets: list[str]
    covariates: list[str]
    scaler: Scaler
    values: np.ndarray
    features: np.ndarray
    bounds: tuple[int, int, int]


def _names(text: str, option_name: str) -> list[str] | str:
    if text.strip().lower() == "all":
        return "all"
    names = [n.strip() for n in text.split(",") if n.strip()]
    if len(set(names)) != len(names):
        raise RnnkitError(f"{option_name} {text!r}: a column is named twice")
    return names


def _columns(config: ForecastConfig, header_names: list[str]) -> tuple[list[str], list[str]]:
    """(targets, covariates) from ``--target`` and ``--covariates`` (``all`` expanded)."""
    targets, covariates = _names(config.target, "--target"), _names(config.covariates,
                                                                     "--covariates")
    if targets == "all" and covariates == "all":
        raise RnnkitError("--target all and --covariates all: one of them must name columns")
    if targets == "all":
        targets = [n for n in header_names if n not in covariates]
    if covariates == "all":
        covariates = [n for n in header_names if n not in targets]
    if not targets:
        raise RnnkitError("--target: no column to forecast")
    both = sorted(set(targets) & set(covariates))
    if both:
        raise RnnkitError(f"--covariates: {', '.join(both)} also in --target")
    if covariates and config.model.architecture == "deepar":
        raise RnnkitError("--covariates: deepar forecasts from the targets and time features "
                          "only (their future covariates are unknown); use seq2seq")
    return targets, covariates


def read_table(config: ForecastConfig, path: str, targets: list[str] | None = None,
               covariates: list[str] | None = None) -> tuple[Series, list[str], list[str]]:
    """The series of ``path`` with the columns of ``config`` (or the given ones)."""
    if targets is None:
        header = [n for n in read_header(path) if n != config.time_column]
        targets, covariates = _columns(config, header)
    series = read_series(path, config.time_column, targets + covariates, config.fill,
                         config.sort)
    if series.filled:
        print(f"rnnkit forecast: {path}: filled {series.filled} missing values ({config.fill})",
              file=sys.stderr)
    return series, targets, covariates


def _features(config: ForecastConfig, series: Series) -> np.ndarray:
    if not config.time_features:
        return np.zeros((len(series), 0))
    return time_features(series.times, len(series))


def prepare_series(config: ForecastConfig, scaler: Scaler | None = None,
                   path: str | None = None, names: tuple[list[str], list[str]] | None = None
                   ) -> Prepared:
    """Read, split and scale; the scaler is fitted on the training rows unless given."""
    series, targets, covariates = read_table(config, path or config.train,
                                             *(names or (None, None)))
    bounds = split_bounds(config.split, len(series), series.times)
    if scaler is None:
        scaler = Scaler.fit(series.names, series.values[: bounds[0]])
    return Prepared(series, targets, covariates, scaler, scaler.transform(series.values),
                    _features(config, series), bounds)


def _check_windows(config: ForecastConfig, data: Prepared) -> None:
    length, horizon = config.input_length, config.horizon
    train_end, valid_end, _ = data.bounds
    path = data.series.path
    if train_end < length + horizon:
        raise RnnkitError(f"{path}: the training part has {train_end} rows, too few for one "
                          f"window of --input-length {length} + --horizon {horizon} = "
                          f"{length + horizon} rows")
    if valid_end - train_end < horizon:
        raise RnnkitError(f"{path}: the validation part has {valid_end - train_end} rows, "
                          f"fewer than --horizon {horizon} (see --split)")


# ---------------------------------------------------------------------- training


class ForecastTask:
    """Windows of the training part in, MSE (seq2seq) or NLL (deepar) out; validated by the
    MSE of the point forecasts on the validation windows."""

    monitor, monitor_mode, unit = "valid_mse", "min", "win"

    def __init__(self, config: ForecastConfig, data: Prepared, seed: int) -> None:
        self.config, self.data, self.seed = config, data, seed
        train_end, valid_end, _ = data.bounds
        self.train_starts = window_starts(0, train_end, config.input_length, config.horizon,
                                          config.stride)
        self.valid_starts = window_starts(train_end, valid_end, config.input_length,
                                          config.horizon)
        self.residual_std: list[list[float]] | None = None

    def _tensors(self, starts: np.ndarray):
        arrays = gather_windows(self.data.values, self.data.features, starts,
                                self.config.input_length, self.config.horizon,
                                len(self.data.targets))
        return [torch.as_tensor(a, dtype=torch.float32) for a in arrays]

    def train_batches(self, epoch: int, shard):
        order = list(range(shard.rank, len(self.train_starts), shard.world_size))
        random.Random(self.seed + epoch).shuffle(order)
        size, ramp = self.config.batch_size, self.config.sampling_epochs
        probability = self.config.scheduled_sampling * min(1.0, epoch / ramp)
        return [(*self._tensors(self.train_starts[order[k:k + size]]), probability)
                for k in range(0, len(order), size)]

    def step(self, model, batch) -> StepOutput:
        inputs, past_time, future_time, future, probability = batch
        device = next(model.parameters()).device
        inputs, past_time, future_time, future = (t.to(device) for t in
                                                  (inputs, past_time, future_time, future))
        if self.config.model.architecture == "deepar":
            loss = model.loss(inputs, future, past_time, future_time, probability)
        else:
            loss = nnf.mse_loss(model(inputs, past_time, future_time), future)
        return StepOutput(loss, len(inputs))

    def evaluate(self, model) -> dict[str, float]:
        device = next(model.parameters()).device
        errors = []
        for k in range(0, len(self.valid_starts), 512):
            inputs, past_time, future_time, future = (
                t.to(device) for t in self._tensors(self.valid_starts[k:k + 512]))
            errors.append(point_forecast(model, inputs, past_time, future_time) - future)
        errors = torch.cat(errors)  # (B, H, C)
        self.residual_std = errors.pow(2).mean(0).sqrt().tolist()  # (H, C)
        return {"valid_mse": float(errors.pow(2).mean()), "valid_mae": float(errors.abs().mean())}

    def checkpoint_files(self) -> dict:
        return {"config.json": model_shape(self.data), "scaler.json": self.data.scaler.to_json(),
                "bands.json": {"residual_std": self.residual_std}}


def model_shape(data: Prepared) -> dict:
    return {"targets": data.targets, "covariates": data.covariates,
            "time_features": int(data.features.shape[1])}


# ---------------------------------------------------------------------- the application


@register("forecast")
class Forecast(Application):
    summary = "forecast time series (seq2seq or DeepAR) with prediction intervals"
    description = __doc__.split("\n\n", 1)[1]
    examples = """\
rnnkit forecast train --train ETTh1.csv --time-column date --target OT --horizon 24 --out run
rnnkit forecast train --train ETTh1.csv --target all --split 8640,2880,2880 --out run
rnnkit forecast eval --checkpoint run --data ETTh1.csv --baselines --json
rnnkit forecast predict --checkpoint run --data recent.csv --plot forecast.png --output f.csv
"""
    Config = ForecastConfig
    EvalOptions = ForecastEvalOptions
    PredictOptions = ForecastPredictOptions
    # rnnkit serve: the recent rows are sent as a CSV file with the request
    serve_uploads = {"predict": {"data": ".csv"}}

    def prepare(self, config: ForecastConfig, context: PrepareContext) -> Prepared:
        if not config.train:
            raise RnnkitError("--train: required (a CSV/TSV file with a time column)")
        scaler = None
        if context.resume is not None:
            scaler = Scaler.from_json(context.resume.read_json("scaler.json"))
        data = prepare_series(config, scaler)
        _check_windows(config, data)
        return data

    def build_model(self, config: ForecastConfig, data: Prepared):
        return build_forecaster(config.model, data.values.shape[1], len(data.targets),
                                data.features.shape[1], config.horizon)

    def task(self, config: ForecastConfig, data: Prepared, seed: int) -> ForecastTask:
        return ForecastTask(config, data, seed)

    def load(self, checkpoint: Checkpoint) -> Loaded:
        config, saved = checkpoint.options, checkpoint.saved
        targets, covariates = saved["targets"], saved["covariates"]
        model = build_forecaster(config.model, len(targets) + len(covariates), len(targets),
                                 saved["time_features"], config.horizon)
        bands = checkpoint.read_json("bands.json") if checkpoint.has("bands.json") else {}
        std = bands.get("residual_std")
        return Loaded(checkpoint.load_weights(model), config, targets, covariates,
                      Scaler.from_json(checkpoint.read_json("scaler.json")),
                      None if std is None else np.asarray(std), checkpoint.device)

    def evaluate(self, loaded: Loaded, options: ForecastEvalOptions) -> dict:
        _settle(options.seed, getattr(options, "threads", 0))
        if options.stride < 1 or options.samples < 1:
            raise RnnkitError("--stride and --samples: expected integers >= 1")
        config = loaded.config
        data = prepare_series(config, loaded.scaler, options.data or config.train,
                              (loaded.targets, loaded.covariates))
        train_end, valid_end, test_end = data.bounds
        start, end = {"valid": (train_end, valid_end), "test": (valid_end, test_end),
                      "all": (0, len(data.values))}[options.part]
        starts = window_starts(start, end, config.input_length, config.horizon, options.stride)
        if len(starts) == 0:
            raise RnnkitError(f"{data.series.path}: no window of --input-length "
                              f"{config.input_length} + --horizon {config.horizon} ends in the "
                              f"{options.part} part ({end - start} rows)")
        linear_data = None
        if options.baselines:
            linear_data = data if not options.data else prepare_series(
                config, loaded.scaler, config.train, (loaded.targets, loaded.covariates))
        return evaluate_windows(loaded, data, starts, options, linear_data)

    def predict(self, loaded: Loaded, options: ForecastPredictOptions):
        _settle(options.seed, 0)
        if not options.data:
            raise RnnkitError("--data: required (the recent rows the forecast continues)")
        levels = _levels(options.quantiles)
        config = loaded.config
        series, _, _ = read_table(config, options.data, loaded.targets, loaded.covariates)
        if len(series) < config.input_length:
            raise RnnkitError(f"{options.data}: {len(series)} rows, fewer than --input-length "
                              f"{config.input_length} (the history one forecast reads)")
        labels, times = future_times(series, config.horizon)
        history = loaded.scaler.transform(series.values[-config.input_length:])
        past = _features(config, series)[-config.input_length:]
        future = (time_features(times, config.horizon) if config.time_features
                  else np.zeros((config.horizon, 0)))
        point, quantiles = forecast_after(loaded, history, past, future,
                                          sorted({*levels, 0.025, 0.1, 0.9, 0.975}),
                                          options.samples)
        if options.plot:
            write_plot(options.plot, loaded, series, options.history or config.input_length,
                       times or labels, point, quantiles)
        yield forecast_csv(loaded, labels, point, quantiles, levels)

    def export_graphs(self, loaded: Loaded):
        """inputs ``(B, L, C_in)`` scaled, past_time ``(B, L, F)``, future_time ``(B, H, F)`` →
        the point forecast ``(B, H, C)`` (scaled): seq2seq's output, DeepAR's mean path. DeepAR
        sampling stays out: its draws come from torch's generator, which no exported graph
        reproduces, so its quantiles could not be checked against rnnkit's."""
        from rnnkit.apps.base import ExportGraph
        from rnnkit.models.exportable import MethodGraph
        from rnnkit.models.forecaster import DeepAR
        from rnnkit.nn.exportable import to_torch

        model, config = loaded.model.cpu().eval(), loaded.config
        if isinstance(model, DeepAR):
            graph = MethodGraph(model, "mean_path", rnn=to_torch(model.rnn))
            reference, width = model.mean_path, len(loaded.targets)
            features = model.rnn.input_size - model.width
        else:
            graph = MethodGraph(model, encoder=to_torch(model.encoder),
                                decoder=to_torch(model.decoder))
            reference, width = model, len(loaded.targets) + len(loaded.covariates)
            features = model.decoder.input_size - model.position.embedding_dim
        generator = torch.Generator().manual_seed(0)
        length, horizon = config.input_length, config.horizon
        inputs = tuple(torch.randn(2, steps, size, generator=generator) for steps, size in
                       ((length, width), (length, features), (horizon, features)))
        return [ExportGraph("forecaster", graph.eval(), inputs,
                            ["inputs", "past_time", "future_time"], ["forecast"],
                            {"inputs": {0: "batch", 1: "length"},
                             "past_time": {0: "batch", 1: "length"},
                             "future_time": {0: "batch"}, "forecast": {0: "batch"}},
                            reference, "inputs: the targets then the covariates, scaled by "
                            "scaler.json; time features as rnnkit.data.timeseries.time_features; "
                            f"horizon fixed at {horizon}; forecast in the scaled units")]


def _levels(text: str) -> list[float]:
    try:
        levels = sorted({float(p) for p in text.split(",") if p.strip()})
    except ValueError:
        raise RnnkitError(f"--quantiles {text!r}: expected numbers like 0.1,0.5,0.9") from None
    if not levels or not all(0 < q < 1 for q in levels):
        raise RnnkitError(f"--quantiles {text!r}: expected levels strictly between 0 and 1")
    return levels


def _settle(seed: int, threads: int) -> None:
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
