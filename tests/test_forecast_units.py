"""The pieces of ``rnnkit forecast`` against hand-computed values."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest
import torch

from rnnkit.apps.forecast_eval import Scores, _quantiles
from rnnkit.data.timeseries import (
    Scaler,
    gather_windows,
    read_series,
    split_bounds,
    time_features,
    window_starts,
)
from rnnkit.errors import RnnkitError
from rnnkit.models.forecast_baselines import LinearForecaster, repeat_last, seasonal_naive
from rnnkit.models.forecaster import DeepAR, ForecastModelConfig, Seq2SeqForecaster


def test_split_bounds_fractions_counts_and_dates():
    assert split_bounds("0.7,0.1,0.2", 100, None) == (70, 80, 100)
    assert split_bounds("8640,2880,2880", 17420, None) == (8640, 11520, 14400)
    times = [datetime(2020, 1, 1) + timedelta(days=k) for k in range(10)]
    assert split_bounds("2020-01-07,2020-01-09", 10, times) == (6, 8, 10)
    with pytest.raises(RnnkitError, match="do not fit the 10 rows"):
        split_bounds("8,8,8", 10, None)
    with pytest.raises(RnnkitError, match="dates need a date time column"):
        split_bounds("2020-01-07,2020-01-09", 10, None)


def test_window_starts_keep_targets_inside_the_part():
    # part [10, 20), L=4, H=3: origins 10 … 17, inputs may start before the part
    assert window_starts(10, 20, 4, 3).tolist() == list(range(10, 18))
    assert window_starts(0, 10, 4, 3).tolist() == [4, 5, 6, 7]  # inputs need 4 rows first
    assert window_starts(0, 10, 4, 3, stride=2).tolist() == [4, 6]
    values = np.arange(20.0)[:, None]
    inputs, past, future_time, future = gather_windows(values, np.zeros((20, 0)),
                                                       np.array([4]), 4, 3, 1)
    assert inputs[0, :, 0].tolist() == [0, 1, 2, 3]
    assert future[0, :, 0].tolist() == [4, 5, 6]
    assert past.shape == (1, 4, 0) and future_time.shape == (1, 3, 0)


def test_scaler_is_a_population_z_score():
    values = np.array([[1.0, 5.0], [3.0, 5.0]])
    scaler = Scaler.fit(["a", "b"], values)
    assert scaler.mean.tolist() == [2.0, 5.0]
    assert scaler.std.tolist() == [1.0, 1.0]  # ddof = 0; the constant column keeps std 1
    assert scaler.transform(values)[:, 0].tolist() == [-1.0, 1.0]
    again = Scaler.from_json(scaler.to_json())
    assert np.allclose(again.inverse(scaler.transform(values)), values)


@pytest.mark.parametrize(("fill", "expected"), [("ffill", [1.0, 1.0, 1.0, 4.0]),
                                                ("interpolate", [1.0, 2.0, 3.0, 4.0]),
                                                ("zero", [1.0, 0.0, 0.0, 4.0])])
def test_fill_methods(fill, expected, tmp_path):
    path = tmp_path / "gaps.tsv"
    path.write_text("t\tv\n0\t1\n1\tNA\n2\t\n3\t4\n")
    series = read_series(path, "t", ["v"], fill=fill)
    assert series.values[:, 0].tolist() == expected
    assert series.filled == 2 and series.times is None


def test_time_features_range():
    times = [datetime(2021, 1, 4, 0), datetime(2021, 1, 10, 23)]  # Monday 0h, Sunday 23h
    features = time_features(times, 2)
    assert features[0, :2].tolist() == [-0.5, -0.5]
    assert features[1, :2].tolist() == [0.5, 0.5]


def test_baselines_by_hand():
    window = np.arange(48.0).reshape(1, 48, 1)
    assert repeat_last(window, 3)[0, :, 0].tolist() == [47, 47, 47]
    assert seasonal_naive(window, 26)[0, :, 0].tolist() == list(range(24, 48)) + [24, 25]
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(300, 8, 2))
    weight = rng.normal(size=(8, 3))
    targets = np.einsum("blc,lh->bhc", inputs, weight) + 0.5
    fitted = LinearForecaster.fit(inputs, targets, ridge=0.0)
    assert np.allclose(fitted.weight, weight) and np.allclose(fitted.bias, 0.5)


def test_scores_by_hand():
    scores = Scores(Scaler(["y"], np.zeros(1), np.array([2.0])), 1)
    point, truth = np.array([[[1.0], [0.0]]]), np.array([[[0.0], [0.0]]])
    levels = sorted({*[round(0.05 * k, 2) for k in range(1, 20)], 0.025, 0.975})
    quantiles = np.stack([np.full((1, 2, 1), 0.5 if q < 0.5 else 2.0) for q in levels])
    scores.add(point, truth, quantiles, levels)
    result = scores.result()
    assert result["mse"] == 0.5 and result["mae"] == 0.5
    assert result["mse_original"] == 2.0 and result["mae_original"] == 1.0
    assert result["coverage_80"] == 0.0  # 0 lies below every lower bound 0.5
    assert result["interval_width_80"] == 1.5
    assert result["mse_by_step"] == [1.0, 0.0]


def test_sample_quantiles_interpolate():
    paths = torch.arange(5.0).view(5, 1)  # 0 1 2 3 4
    assert _quantiles(paths, [0.0, 0.5, 0.625, 1.0])[:, 0].tolist() == [0.0, 2.0, 2.5, 4.0]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_model_shapes_and_scheduled_sampling(cell):
    config = ForecastModelConfig(cell=cell, hidden_size=8, likelihood="student_t")
    inputs, past, future_time = torch.randn(3, 10, 2), torch.randn(3, 10, 4), torch.randn(3, 5, 4)
    assert Seq2SeqForecaster(2, 1, 4, 5, config)(inputs, past, future_time).shape == (3, 5, 1)
    model = DeepAR(2, 4, config)
    future = torch.randn(3, 5, 2)
    teacher = model.loss(inputs, future, past, future_time, 0.0)
    torch.manual_seed(0)
    fed_own = model.loss(inputs, future, past, future_time, 1.0)
    assert teacher.isfinite() and fed_own.isfinite() and teacher != fed_own
    fed_own.backward()
    assert model.rnn.weight_hh_l0.grad.abs().sum() > 0
    assert model.sample(inputs, past, future_time, 7).shape == (7, 3, 5, 2)
    assert model.mean_path(inputs, past, future_time).shape == (3, 5, 2)


def test_model_config_is_checked():
    with pytest.raises(ValueError, match="cell: expected one of"):
        ForecastModelConfig(cell="transformer")


@pytest.mark.parametrize("architecture", ["seq2seq", "deepar"])
def test_channel_independent_forecasts_read_only_their_own_series(architecture):
    torch.manual_seed(0)
    config = ForecastModelConfig(architecture=architecture, channel_independent=True,
                                 hidden_size=8)
    model = (DeepAR(3, 2, config) if architecture == "deepar"
             else Seq2SeqForecaster(3, 3, 2, 5, config))
    forecast = model.mean_path if architecture == "deepar" else model
    inputs, past, future_time = torch.randn(2, 10, 3), torch.randn(2, 10, 2), torch.randn(2, 5, 2)
    changed = inputs.clone()
    changed[..., 1] += torch.randn(2, 10)
    moved = (forecast(changed, past, future_time) - forecast(inputs, past, future_time)).abs()
    assert moved[..., 1].amax() > 1e-3
    assert moved[..., [0, 2]].amax() < 1e-6
