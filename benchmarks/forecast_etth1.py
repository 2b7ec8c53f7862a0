"""ETTh1 multivariate forecasting in the Informer protocol, with the baselines in the same run.

For each horizon: train the seq2seq forecaster and DeepAR with ``rnnkit forecast train`` (all 7
columns in and out, z-scored with the training rows, split 8640/2880/2880 rows = 12/4/4
months, every window of stride 1), then score each on every test window with
``rnnkit forecast eval --baselines``: repeat-last, seasonal naive (24 h) and the linear model
are scored by the same code on the same windows. Prints one Markdown table and writes
``results.json`` in the output directory.

    python benchmarks/forecast_etth1.py --horizons 24,48,168 --out runs/forecast_etth1

Reference (Zhou et al. 2021, Table 2, test MSE): LSTMa 0.650 / 0.702 / 1.212 / 1.424 / 1.960
and Informer 0.577 / 0.685 / 0.931 / 1.128 / 1.215 at 24 / 48 / 168 / 336 / 720 steps.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _cli import run as _run  # benchmarks/_cli.py

import rnnkit.apps.forecast  # noqa: F401  (registers the application until it is built in)

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "etth1" / "ETTh1.csv"
REFERENCE = {24: (0.650, 0.577), 48: (0.702, 0.685), 168: (1.212, 0.931),
             336: (1.424, 1.128), 720: (1.960, 1.215)}
# Chosen on the validation months (see docs/forecast.md); the test months were not used.
MODELS = {
    "seq2seq": ["--architecture", "seq2seq", "--channel-independent", "--hidden-size", "64",
                "--lr", "1e-3"],
    "deepar": ["--architecture", "deepar", "--channel-independent", "--hidden-size", "64",
               "--lr", "1e-3"],
}
BASELINES = ("repeat_last", "seasonal_naive", "linear")


def train_and_score(args, horizon: int, name: str, flags: list[str]) -> dict:
    run = Path(args.out) / f"h{horizon}_{name}"
    started = time.monotonic()
    _run(["forecast", "train", "--train", str(args.data), "--target", "all",
          "--split", "8640,2880,2880", "--input-length", str(args.input_length),
          "--horizon", str(horizon), "--out", str(run), "--threads", str(args.threads),
          "--max-minutes", str(args.max_minutes), "--max-epochs", str(args.max_epochs),
          "--eval-every", "50", "--patience", "6", "--no-progress", "--no-tensorboard",
          *flags])
    seconds = time.monotonic() - started
    metrics = json.loads(_run(["forecast", "eval", "--checkpoint", str(run), "--json",
                               "--baselines", "--threads", str(args.threads),
                               "--samples", str(args.samples)]))
    return {"train_seconds": round(seconds, 1), **metrics}


def table(results: dict, reference: bool = True) -> str:
    """The results as a Markdown table; ``reference``: with the rows reported for ETTh1 (not
    for another data file)."""
    lines = ["| horizon | model | MSE | MAE | MSE (orig.) | 80 % cover | 95 % cover | CRPS "
             "| train s |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for horizon, runs in results.items():
        first = next(iter(runs.values()))
        for name, m in runs.items():
            lines.append(f"| {horizon} | {name} | {m['mse']:.3f} | {m['mae']:.3f} | "
                         f"{m['mse_original']:.2f} | {m['coverage_80']:.3f} | "
                         f"{m['coverage_95']:.3f} | {m['crps']:.3f} | {m['train_seconds']:.0f} |")
        for base in BASELINES:
            lines.append(f"| {horizon} | {base} | {first[base + '_mse']:.3f} | "
                         f"{first[base + '_mae']:.3f} | {first[base + '_mse_original']:.2f} "
                         f"| | | | 0 |")
        lstma, informer = REFERENCE.get(int(horizon), (None, None))
        if lstma and reference:
            lines.append(f"| {horizon} | LSTMa / Informer (reported) | {lstma:.3f} / "
                         f"{informer:.3f} | | | | | | |")
    return "\n".join(lines)


def main_cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DATA.resolve()))
    parser.add_argument("--horizons", default="24,48,168")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--input-length", type=int, default=96)
    parser.add_argument("--max-minutes", type=float, default=14.0)
    parser.add_argument("--max-epochs", type=int, default=10)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="runs/forecast_etth1")
    args = parser.parse_args()
    etth1 = Path(args.data).name == "ETTh1.csv"  # the reported figures are ETTh1's
    results: dict = {}
    for horizon in (int(h) for h in args.horizons.split(",")):
        for name in args.models.split(","):
            results.setdefault(horizon, {})[name] = train_and_score(args, horizon, name,
                                                                    MODELS[name])
            print(table({horizon: results[horizon]}, etth1), flush=True)
            Path(args.out).mkdir(parents=True, exist_ok=True)
            (Path(args.out) / "results.json").write_text(json.dumps(results, indent=1))
    print("\n" + table(results, etth1))


if __name__ == "__main__":
    main_cli()
