"""JSB Chorales (quarter notes): test NLL per time step of rnnkit music models and baselines.

Every model is trained with ``rnnkit music train`` (the same CLI a user runs) under a time cap,
its best checkpoint (by validation NLL) is scored by the application's own ``evaluate`` on the
``test`` split, and the no-recurrence baseline (per-pitch marginal frequency of the training
steps, independent Bernoulli) is scored by the same code (:func:`roll_nll`). One table at the
end, beside the published figures quoted in ``../shared/data/jsb-chorales/README.md``.

    python benchmarks/music_jsb.py --minutes 5 --out /tmp/music-bench
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from torch import nn

import rnnkit.apps.music  # noqa: F401  (registers the application)
from rnnkit.apps import runner
from rnnkit.apps.music import EvalOptions, Music
from rnnkit.apps.music_tasks import read_rolls, roll_nll
from rnnkit.cli.main import main
from rnnkit.models.music import bernoulli_nll

DATA = Path(__file__).resolve().parents[2] / "shared/data/jsb-chorales/jsb-chorales-quarter.json"
LOW, HIGH = 21, 108

# The NADE rows model the pitches any split holds (43-96, README) instead of 88 keys: the
# pitch-by-pitch NADE costs time per pitch; a pitch that never sounds adds ~0 to the NLL.
NADE = ["--nade-hidden", "32", "--low-pitch", "43", "--high-pitch", "96"]

# name → (flags, published test NLL as reported)
MODELS = {
    "tanh RNN, Bernoulli": (["--cell", "rnn", "--hidden-size", "128", "--dropout", "0.3"],
                            "9.19 (Chung 2014)"),
    "GRU, Bernoulli": (["--cell", "gru", "--hidden-size", "192", "--dropout", "0.5"],
                       "8.54 (Chung 2014)"),
    "LSTM, Bernoulli": (["--cell", "lstm", "--hidden-size", "256", "--dropout", "0.5"],
                        "8.67 (Chung 2014)"),
    "LSTM, Bernoulli, pitches 43-96": (["--cell", "lstm", "--hidden-size", "256", "--dropout",
                                        "0.5", "--low-pitch", "43", "--high-pitch", "96"],
                                       "- (the NADE rows' pitch range)"),
    "GRU, RNN-NADE": (["--cell", "gru", "--hidden-size", "192", "--dropout", "0.5",
                       "--distribution", "nade", *NADE],
                      "5.56 (RNN-NADE, Boulanger-Lewandowski 2012)"),
    "LSTM, RNN-NADE": (["--cell", "lstm", "--hidden-size", "256", "--dropout", "0.5",
                        "--distribution", "nade", *NADE],
                       "5.56 (RNN-NADE, Boulanger-Lewandowski 2012)"),
}


class Marginal(nn.Module):
    """The no-recurrence baseline: each pitch on with its training frequency, independently."""

    def __init__(self, pieces, smoothing: float = 0.5) -> None:
        super().__init__()
        counts = torch.zeros(HIGH - LOW + 1)
        steps = 0
        for piece in pieces:
            for step in piece:
                counts[[p - LOW for p in step]] += 1
            steps += len(piece)
        probs = (counts + smoothing) / (steps + 2 * smoothing)
        self.register_buffer("logits", torch.log(probs) - torch.log1p(-probs))

    def forward(self, rolls, lengths):
        nll = bernoulli_nll(self.logits.expand_as(rolls), rolls)  # (B, T)
        mask = torch.arange(rolls.shape[1]) < lengths.unsqueeze(1)
        return nll * mask


def _score(model, split: str, data: Path) -> float:
    pieces = read_rolls(str(data), "jsb", split, 1, (LOW, HIGH))
    with torch.no_grad():
        total, steps, _ = roll_nll(model, pieces, LOW, HIGH)
    return total / steps


def _train_and_score(name: str, flags: list[str], args) -> dict:
    out = args.out / name.replace(", ", "-").replace(" ", "_")
    started = time.time()
    code = main(["music", "train", "--train", str(args.data), "--out", str(out), *flags,
                 "--max-epochs", str(args.epochs), "--max-minutes", str(args.minutes),
                 "--lr", "3e-3", "--eval-every", "0", "--patience", "12", "--seed", "1",
                 "--threads", "1", "--no-progress", "--no-tensorboard", "--no-plot"])
    minutes = (time.time() - started) / 60
    if code != 0:
        raise SystemExit(f"{name}: training failed ({code})")
    app = Music()
    loaded = app.load(runner.open_checkpoint(app, out, "cpu"))
    params = sum(p.numel() for p in loaded["model"].parameters())
    test = app.evaluate(loaded, EvalOptions(data=str(args.data), split="test"))
    valid = app.evaluate(loaded, EvalOptions(data=str(args.data), split="valid"))
    saved = json.loads((out / "best" / "config.json").read_text())
    return {"valid": valid["nll_per_step"], "test": test["nll_per_step"], "minutes": minutes,
            "params": params, "best_step": saved.get("step")}


def main_bench(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=Path("/tmp/rnnkit-music-jsb"))
    parser.add_argument("--minutes", type=float, default=5.0, help="training cap per model")
    parser.add_argument("--epochs", type=int, default=120)
    parser.add_argument("--models", default=";".join(MODELS), help="names separated by ';'")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    train = read_rolls(str(args.data), "jsb", "train", 1, (LOW, HIGH))
    marginal = Marginal(train)
    rows = [("marginal frequency (no recurrence)", "-", HIGH - LOW + 1, "-",
             _score(marginal, "valid", args.data), _score(marginal, "test", args.data), "-")]
    for name in args.models.split(";"):
        flags, published = MODELS[name]
        result = _train_and_score(name, flags, args)
        rows.append((name, f"{result['minutes']:.1f}", result["params"], result["best_step"],
                     result["valid"], result["test"], published))
        print(json.dumps({"model": name, **result}), file=sys.stderr)
    print("\n| model | train min | params | best step | valid NLL | test NLL | test bits "
          "| published test NLL |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for name, minutes, params, step, valid, test, published in rows:
        print(f"| {name} | {minutes} | {params:,} | {step} | {valid:.3f} | {test:.3f} | "
              f"{test / math.log(2):.2f} | {published} |")
    return 0


if __name__ == "__main__":
    sys.exit(main_bench())
