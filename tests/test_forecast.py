"""``rnnkit forecast`` end to end on generated series: learning, leakage, coverage, bad input."""

from __future__ import annotations

import csv
import json
import math
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

import rnnkit.apps.forecast  # noqa: F401  (registers the application)
from rnnkit.apps.forecast import ForecastConfig, prepare_series
from rnnkit.cli.main import main

QUIET = ["--no-progress", "--no-tensorboard", "--no-plot", "--threads", "1"]
START = datetime(2021, 3, 1)


def _write(path: Path, values: np.ndarray, names=("y",), times=None) -> Path:
    """A CSV with a ``date`` column (hourly from START, or ``times``) and ``names``."""
    times = times or [START + timedelta(hours=k) for k in range(len(values))]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["date", *names])
        for time, row in zip(times, values.reshape(len(values), -1), strict=True):
            stamp = time if isinstance(time, str) else time.isoformat(sep=" ")
            writer.writerow([stamp, *[f"{v:.6f}" for v in row]])
    return path


def _sine(rows: int, seed: int = 0) -> np.ndarray:
    """A daily sine with a trend and noise (hourly rows)."""
    t = np.arange(rows)
    noise = np.random.default_rng(seed).normal(0, 0.1, rows)
    return np.sin(2 * math.pi * t / 24) + 0.002 * t + noise


def _train(data: Path, out: Path, *extra: str) -> int:
    return main(["forecast", "train", "--train", str(data), "--target", "y", "--out", str(out),
                 "--input-length", "48", "--horizon", "12", "--split", "0.7,0.15,0.15",
                 "--hidden-size", "24", "--batch-size", "32", "--lr", "1e-2",
                 "--eval-every", "0", *QUIET, *extra])


def _eval(out: Path, capsys, *extra: str) -> dict:
    capsys.readouterr()
    assert main(["forecast", "eval", "--checkpoint", str(out), "--json", "--threads", "1",
                 *extra]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def sine_run(tmp_path_factory):
    directory = tmp_path_factory.mktemp("sine")
    data = _write(directory / "sine.csv", _sine(1200))
    out = directory / "run"
    assert _train(data, out, "--max-epochs", "6") == 0
    return directory, data, out


def test_seq2seq_learns_a_noisy_sine_with_trend(sine_run, capsys):
    _, _, out = sine_run
    metrics = _eval(out, capsys, "--baselines")
    assert metrics["windows"] == 180 - 12 + 1  # every origin of the 180 test rows
    assert metrics["mse"] < 0.05  # the noise alone is 0.1**2 / std**2 ≈ 0.01
    assert metrics["mse"] < 0.25 * metrics["repeat_last_mse"]
    assert set(metrics) >= {"mae", "mse_original", "crps", "coverage_80", "linear_mse",
                            "seasonal_naive_mse"}


def test_scaler_uses_training_rows_only(sine_run, tmp_path):
    directory, data, out = sine_run
    values = _sine(1200)
    saved = json.loads((out / "best" / "scaler.json").read_text())
    train_rows = values[:840]  # 0.7 of 1200
    assert saved["mean"][0] == pytest.approx(train_rows.mean(), abs=1e-5)
    assert saved["std"][0] == pytest.approx(train_rows.std(), abs=1e-5)
    assert abs(saved["mean"][0] - values.mean()) > 0.1  # the trend: all rows differ
    # changing every row after the training part leaves the scaler alone
    changed = values.copy()
    changed[840:] += 100.0
    config = ForecastConfig(train=str(_write(tmp_path / "c.csv", changed)), target="y",
                            split="0.7,0.15,0.15")
    original = prepare_series(ForecastConfig(train=str(data), target="y",
                                             split="0.7,0.15,0.15"))
    shifted = prepare_series(config)
    assert np.allclose(shifted.scaler.mean, original.scaler.mean)
    assert np.allclose(shifted.scaler.std, original.scaler.std)


def test_predict_writes_csv_of_quantiles_and_a_plot(sine_run, tmp_path):
    directory, _, out = sine_run
    recent = _write(tmp_path / "recent.csv", _sine(60, seed=3))
    target, plot = tmp_path / "forecast.csv", tmp_path / "forecast.png"
    assert main(["forecast", "predict", "--checkpoint", str(out), "--data", str(recent),
                 "--output", str(target), "--plot", str(plot),
                 "--quantiles", "0.05,0.5,0.95"]) == 0
    rows = list(csv.DictReader(target.read_text().splitlines()))
    assert len(rows) == 12
    assert list(rows[0]) == ["time", "variable", "forecast", "q0.05", "q0.5", "q0.95"]
    assert rows[0]["time"] == (START + timedelta(hours=60)).isoformat(sep=" ")
    for row in rows:
        assert float(row["q0.05"]) < float(row["forecast"]) < float(row["q0.95"])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------- intervals


def _ar1(rows: int, phi: float = 0.8, seed: int = 1) -> np.ndarray:
    """x_t = phi x_{t-1} + e_t, e_t ~ N(0, 1): the exact 1-step predictive is N(phi x, 1)."""
    rng = np.random.default_rng(seed)
    values = np.zeros(rows)
    for t in range(1, rows):
        values[t] = phi * values[t - 1] + rng.normal()
    return values


@pytest.mark.parametrize("architecture", ["deepar", "seq2seq"])
def test_interval_coverage_on_a_gaussian_process(architecture, tmp_path, capsys):
    path = tmp_path / "ar1.csv"
    with path.open("w") as handle:
        handle.write("step,x\n" + "".join(f"{t},{v:.6f}\n" for t, v in enumerate(_ar1(3000))))
    out = tmp_path / "run"
    assert main(["forecast", "train", "--train", str(path), "--time-column", "step",
                 "--target", "x", "--out", str(out), "--architecture", architecture,
                 "--input-length", "16", "--horizon", "4", "--split", "0.6,0.2,0.2",
                 "--hidden-size", "16", "--batch-size", "64", "--lr", "1e-2",
                 "--no-window-norm", "--max-epochs", "4", "--eval-every", "0", *QUIET]) == 0
    metrics = _eval(out, capsys, "--samples", "200")
    assert 0.74 <= metrics["coverage_80"] <= 0.86
    assert 0.90 <= metrics["coverage_95"] <= 0.98
    # one step ahead the best forecast errs by N(0, 1): MSE ≥ 1 / var(x) on the z-scale
    assert metrics["mse_by_step"][0] < 1.25 * (1 - 0.8 ** 2)


# ---------------------------------------------------------------------- bad input


def _bad_rows(kind: str) -> list[list[str]]:
    rows = [[(START + timedelta(hours=k)).isoformat(sep=" "), f"{math.sin(k):.3f}"]
            for k in range(200)]
    if kind == "date":
        rows[3][0] = "2021-13-45 99:00"
    elif kind == "number":
        rows[3][1] = "warm"
    elif kind == "nan":
        rows[3][1] = "NaN"
    elif kind == "empty":
        rows[3][1] = ""
    elif kind == "unsorted":
        rows[3], rows[4] = rows[4], rows[3]
    elif kind == "duplicate":
        rows[4][0] = rows[3][0]
    elif kind == "short":
        rows = rows[:40]
    return rows


BAD = [
    ("date", "bad.csv:5: column 'date': cannot parse '2021-13-45 99:00' as a date"),
    ("number", "bad.csv:5: column 'y': 'warm' is not a number"),
    ("nan", "bad.csv:5: column 'y': missing value"),
    ("empty", "bad.csv:5: column 'y': missing value"),
    ("unsorted", "bad.csv:6: timestamp 2021-03-01 03:00:00 is earlier than the one at line 5"),
    ("duplicate", "bad.csv:6: duplicated timestamp 2021-03-01 03:00:00 (also at line 5)"),
    ("short", "too few for one window of --input-length 48 + --horizon 12"),
]


def _write_bad(path: Path, kind: str) -> Path:
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([["date", "y"], *_bad_rows(kind)])
    return path


@pytest.mark.parametrize(("kind", "message"), BAD)
def test_bad_input_names_file_line_and_column(kind, message, tmp_path, capsys):
    data, out = _write_bad(tmp_path / "bad.csv", kind), tmp_path / "run"
    assert _train(data, out, "--max-steps", "1") == 2
    error = capsys.readouterr().err
    assert message in error
    assert "Traceback" not in error
    assert not out.exists()


@pytest.mark.parametrize(("kind", "flag"), [("unsorted", "--sort"), ("nan", "--fill=ffill"),
                                            ("empty", "--fill=interpolate")])
def test_options_that_repair_the_input(kind, flag, tmp_path):
    data, out = _write_bad(tmp_path / "bad.csv", kind), tmp_path / "run"
    assert _train(data, out, "--max-steps", "1", flag) == 0
    assert (out / "best" / "scaler.json").exists()


@pytest.mark.parametrize(("flags", "message"), [
    (["--target", "nope"], "no column 'nope'"),
    (["--horizon", "0"], "--horizon: expected an integer >= 1, got 0"),
    (["--split", "0.9,0.5,0.1"], "--split '0.9,0.5,0.1': fractions must be >= 0 and sum"),
    (["--time-column", "when"], "--time-column 'when': no such column"),
])
def test_bad_options_are_named(flags, message, sine_run, tmp_path, capsys):
    _, data, _ = sine_run
    out = tmp_path / "run"
    assert _train(data, out, "--max-steps", "1", *flags) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_predict_refuses_a_short_history(sine_run, tmp_path, capsys):
    _, _, out = sine_run
    recent = _write(tmp_path / "recent.csv", _sine(20))
    target = tmp_path / "forecast.csv"
    assert main(["forecast", "predict", "--checkpoint", str(out), "--data", str(recent),
                 "--output", str(target)]) == 2
    assert "recent.csv: 20 rows, fewer than --input-length 48" in capsys.readouterr().err
    assert not target.exists()


def test_resume_reads_the_saved_scaler(tmp_path):
    data, out = _write(tmp_path / "s.csv", _sine(300)), tmp_path / "run"
    assert _train(data, out, "--max-steps", "2", "--input-length", "24") == 0
    first = json.loads((out / "last" / "scaler.json").read_text())
    data.write_text(data.read_text().replace("\n2021-03-01 00:00:00,", "\n2021-03-01 00:00:00,9"))
    assert main(["forecast", "train", "--resume", str(out), "--max-steps", "4", *QUIET]) == 0
    again = json.loads((out / "last" / "scaler.json").read_text())
    assert again == first  # from the checkpoint, not refitted on the (changed) file
    assert json.loads((out / "last" / "config.json").read_text())["step"] == 4
