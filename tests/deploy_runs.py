"""Tiny trained runs of the four built-in applications, shared by the export and serve tests
(trained once per test session, a few steps each: the weights only need to be a checkpoint's)."""

from __future__ import annotations

import random
from pathlib import Path

from rnnkit.cli.main import main

TRAIN = ["--max-steps", "2", "--eval-every", "2", "--no-progress", "--no-plot", "--threads",
         "1", "--max-epochs", "none"]
SMALL = ["--embedding-size", "8", "--hidden-size", "8"]
POS, NEG = ["good", "great", "fun", "nice"], ["bad", "awful", "dull", "poor"]
FILLER = ["the", "a", "film", "movie", "is", "was"]

_RUNS: dict[str, Path] = {}


def _data(root: Path) -> None:
    rng = random.Random(0)
    (root / "p.txt").write_text("abcdefgh\n" * 200)
    lines = []
    for _ in range(120):
        label = rng.choice(["pos", "neg"])
        words = [rng.choice(FILLER) for _ in range(rng.randint(2, 6))]
        words.append(rng.choice(POS if label == "pos" else NEG))
        rng.shuffle(words)
        lines.append(f"{label} {' '.join(words)}\n")
    (root / "c.txt").write_text("".join(lines))
    sentences = []
    for _ in range(60):
        words = [rng.choice(FILLER + POS + NEG) for _ in range(rng.randint(2, 6))]
        sentences.append("".join(f"{w}\t{'ADJ' if w in POS + NEG else 'X'}\n" for w in words))
    (root / "t.conll").write_text("\n".join(sentences))
    pairs = []
    for _ in range(120):
        words = [rng.choice(FILLER + POS) for _ in range(rng.randint(2, 5))]
        pairs.append(f"{' '.join(words)}\t{' '.join(reversed(words))}\n")
    (root / "tr.tsv").write_text("".join(pairs))


def trained_runs(tmp_path_factory) -> dict[str, Path]:
    """``{"lm" | "classify" | "tag" | "translate": run directory}`` (and ``"data"``)."""
    if _RUNS:
        return _RUNS
    root = tmp_path_factory.mktemp("deploy-runs")
    _data(root)
    commands = {
        "lm": ["lm", "train", "--train", str(root / "p.txt"), "--bptt", "8", "--batch-size",
               "4", "--num-layers", "2"],
        "classify": ["classify", "train", "--train", str(root / "c.txt"), "--chars",
                     "--char-dim", "4", "--char-hidden", "4", "--num-layers", "2"],
        "tag": ["tag", "train", "--train", str(root / "t.conll"), "--char-dim", "4",
                "--char-hidden", "4", "--min-freq", "1"],
        "translate": ["translate", "train", "--train", str(root / "tr.tsv"), "--tokenizer",
                      "word", "--eval-bleu", "0"],
    }
    for name, command in commands.items():
        assert main([*command, "--out", str(root / name), *SMALL, *TRAIN]) == 0, name
        _RUNS[name] = root / name
    _RUNS["data"] = root
    return _RUNS


# ---------------------------------------------------------------- the later applications

_APP_RUNS: dict[str, Path] = {}
TUNE = """X: {n}
T:Tune {n}
M:4/4
L:1/8
K:G
"G"GABc d2B2|"D7"A2F2 "G"[G2B2]G2:|
"""


def tone_wav(path: Path, symbols: str, rate: int = 8000, seed: int = 0) -> Path:
    """A WAV of one short tone per symbol (a: 500 Hz, b: 1500 Hz) with gaps between."""
    import numpy as np
    import soundfile

    noise = np.random.default_rng(seed)
    parts = []
    for symbol in symbols:
        t = np.arange(int(0.12 * rate)) / rate
        parts += [np.zeros(int(0.05 * rate)),
                  0.5 * np.sin(2 * np.pi * (500.0 if symbol == "a" else 1500.0) * t)]
    signal = np.concatenate(parts + [np.zeros(int(0.05 * rate))])
    signal = signal + 0.003 * noise.standard_normal(len(signal))
    soundfile.write(path, signal.astype(np.float32), rate, subtype="PCM_16")
    return path


def _app_data(root: Path) -> dict[str, Path]:
    import json
    import math

    rng = random.Random(1)
    lines = []
    for user in range(60):
        start = rng.randrange(12)
        lines += [f"u{user}\tit{(start + t) % 12}" for t in range(rng.randint(4, 9))]
    (root / "rec.tsv").write_text("\n".join(lines) + "\n")
    rows = ["date,y,x"]
    for k in range(300):
        rows.append(f"2021-03-{1 + k // 24:02d} {k % 24:02d}:00:00,"
                    f"{math.sin(2 * math.pi * k / 24) + 0.01 * rng.random():.5f},"
                    f"{math.cos(2 * math.pi * k / 24):.5f}")
    (root / "series.csv").write_text("\n".join(rows) + "\n")
    (root / "audio").mkdir()
    listing = []
    for number in range(8):
        text = "".join(rng.choice("ab") for _ in range(rng.randint(1, 3)))
        tone_wav(root / "audio" / f"u{number}.wav", text, seed=number)
        listing.append(f"audio/u{number}.wav\t{text}\n")
    (root / "train.tsv").write_text("".join(listing[:6]))
    (root / "valid.tsv").write_text("".join(listing[6:]))
    chords = [[48, 60, 64, 67], [43, 59, 62, 67]]
    pieces = [[chords[(i // 2) % 2] for i in range(length)] for length in range(8, 14)]
    (root / "chords.json").write_text(json.dumps({"train": pieces, "valid": pieces[:2],
                                                  "test": pieces[:2]}))
    (root / "tunes.abc").write_text("\n".join(TUNE.format(n=n) for n in range(1, 9)))
    return {}


def app_runs(tmp_path_factory, *names: str) -> dict[str, Path]:
    """Tiny runs of recommend, forecast (seq2seq with a covariate; DeepAR, Student-t), speech
    and music (Bernoulli LSTM roll, RNN-NADE GRU roll, ABC): ``{name: run directory}``; only
    ``names`` (default: all) are trained, each once per session."""
    if "data" not in _APP_RUNS:
        _APP_RUNS["data"] = tmp_path_factory.mktemp("deploy-app-runs")
        _app_data(_APP_RUNS["data"])
    root = _APP_RUNS["data"]
    tiny = ["--hidden-size", "8"]
    commands = {
        "recommend": ["recommend", "train", "--train", str(root / "rec.tsv"), "--negatives",
                      "0", "--embedding-size", "8", "--num-layers", "2", *tiny],
        "forecast": ["forecast", "train", "--train", str(root / "series.csv"), "--target", "y",
                     "--covariates", "x", "--input-length", "24", "--horizon", "6", *tiny],
        "deepar": ["forecast", "train", "--train", str(root / "series.csv"), "--target", "y",
                   "--architecture", "deepar", "--cell", "gru", "--likelihood", "student_t",
                   "--input-length", "24", "--horizon", "6", *tiny],
        "speech": ["speech", "train", "--train", str(root / "train.tsv"), "--valid",
                   str(root / "valid.tsv"), "--sample-rate", "8000", "--n-mels", "12",
                   "--cell", "lstm", "--num-layers", "2", "--conv-channels", "8",
                   "--batch-size", "4", *tiny],
        "music": ["music", "train", "--train", str(root / "chords.json"), "--cell", "lstm",
                  "--num-layers", "2", "--batch-size", "4", *tiny],
        "nade": ["music", "train", "--train", str(root / "chords.json"), "--distribution",
                 "nade", "--cell", "gru", "--nade-hidden", "4", "--batch-size", "4", *tiny],
        "abc": ["music", "train", "--train", str(root / "tunes.abc"), "--valid",
                str(root / "tunes.abc"), "--embedding-size", "8", "--batch-size", "4", *tiny],
    }
    for name in names or list(commands):
        if name not in _APP_RUNS:
            assert main([*commands[name], "--out", str(root / name), *TRAIN]) == 0, name
            _APP_RUNS[name] = root / name
    return _APP_RUNS
