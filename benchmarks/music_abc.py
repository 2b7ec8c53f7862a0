"""Nottingham folk tunes (ABC): bits per character, and the share of sampled tunes that parse.

Trains the ABC token model with ``rnnkit music train`` on the ``train`` tunes of ``split.txt``
(under a time cap), scores the best checkpoint (by validation loss) with the application's own
``evaluate`` on ``valid`` and ``test``, beside a unigram token baseline scored with the same
character count, then samples tunes with ``generate``'s sampler and checks each with music21's
ABC parser. One table at the end.

    python benchmarks/music_abc.py --minutes 8 --samples 100 --out /tmp/music-abc
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from pathlib import Path

import torch

import rnnkit.apps.music  # noqa: F401  (registers the application)
from rnnkit.apps import runner
from rnnkit.apps.music import EvalOptions, Music
from rnnkit.apps.music_generate import abc_parses, sample_tunes
from rnnkit.apps.music_tasks import characters, read_tunes
from rnnkit.cli.main import main
from rnnkit.data.music_abc import tune_text

DATA = Path(__file__).resolve().parents[2] / "shared/data/nottingham-abc"


def unigram_bits_per_char(train, tunes) -> float:
    """Bits per character of a unigram model of the training tokens (+ the tune end),
    add-one smoothed over the training vocabulary and one unknown token."""
    counts = Counter(token for tune in train for token in [*tune.tokens, "<eos>"])
    total, size = sum(counts.values()), len(counts) + 1
    nats = 0.0
    for tune in tunes:
        for token in [*tune.tokens, "<eos>"]:
            nats -= math.log((counts.get(token, 0) + 1) / (total + size))
    return nats / sum(characters(t) for t in tunes) / math.log(2)


def main_bench(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=Path("/tmp/rnnkit-music-abc"))
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--temperatures", default="1.0,0.8", help="sampling temperatures, "
                        "comma-separated: one parse share each")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.time()
    code = main(["music", "train", "--train", str(args.data), "--out", str(args.out),
                 "--cell", "lstm", "--hidden-size", "256", "--embedding-size", "64",
                 "--dropout", "0.2", "--batch-size", "16", "--max-epochs", "100",
                 "--max-minutes", str(args.minutes), "--lr", "3e-3", "--eval-every", "0",
                 "--patience", "6", "--seed", "1", "--threads", "1", "--no-progress",
                 "--no-tensorboard", "--no-plot"])
    if code != 0:
        raise SystemExit(f"training failed ({code})")
    minutes = (time.time() - started) / 60
    app = Music()
    loaded = app.load(runner.open_checkpoint(app, args.out, "cpu"))
    scores = {split: app.evaluate(loaded, EvalOptions(data=str(args.data), split=split))
              for split in ("valid", "test")}
    train = read_tunes(str(args.data), "train")
    baseline = {split: unigram_bits_per_char(train, read_tunes(str(args.data), split))
                for split in ("valid", "test")}
    parsed = {}
    for temperature in [float(t) for t in args.temperatures.split(",")]:
        generator = torch.Generator().manual_seed(0)
        tunes = sample_tunes(loaded["model"], loaded["vocab"], [], args.samples, 800, 0,
                             temperature, generator)
        parsed[temperature] = sum(abc_parses(tune_text(tokens, number))
                                  for number, tokens in enumerate(tunes, 1))
    print(json.dumps({"minutes": minutes, "scores": scores, "baseline": baseline,
                      "parsed": parsed, "samples": args.samples}), file=sys.stderr)
    shares = ", ".join(f"{n}/{args.samples} (T={t})" for t, n in parsed.items())
    print("\n| model | train min | valid bits/char | test bits/char | valid NLL/token "
          "| sampled tunes that parse (music21) |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    print(f"| unigram tokens (no recurrence) | - | {baseline['valid']:.3f} | "
          f"{baseline['test']:.3f} | - | - |")
    print(f"| LSTM 256, token LM | {minutes:.1f} | {scores['valid']['bits_per_char']:.3f} | "
          f"{scores['test']['bits_per_char']:.3f} | {scores['valid']['nll_per_token']:.3f} | "
          f"{shares} |")
    return 0


if __name__ == "__main__":
    sys.exit(main_bench())
