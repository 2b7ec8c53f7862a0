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
