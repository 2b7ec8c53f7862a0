"""FSDD benchmark of ``rnnkit speech``: isolated and connected digits, beside a simple baseline.

Split (the FSDD README's official one): takes 0–4 are the test set; of the training takes 5–49,
takes 5–9 are held out for validation (early stopping), 10–49 train. Connected-digit strings
(2–5 digits of one speaker, 0.05–0.3 s pauses; :mod:`rnnkit.data.audio_connect`) are built from
each part's own recordings only, with fixed seeds. The model trains once on isolated + connected
training utterances, within ``--minutes``; then the same evaluation code scores

- isolated test digits: accuracy (= utterance accuracy), CER, WER;
- connected test strings: WER, CER, string accuracy;
- the ``transcribe`` path one file at a time: real-time factor (compute seconds / audio seconds).

Baseline, same split: multinomial logistic regression (scikit-learn) on the mean and standard
deviation over time of each MFCC coefficient (a non-recurrent model on pooled features); it
classifies isolated digits only.

With ``--members N`` it trains N models at once (seeds 1..N, one process each, ``--threads``
threads each, the same ``--minutes``) and scores each member and their ensemble (``eval`` with
``--checkpoint`` repeated: each member's candidates, the one of highest mixture probability).

Usage (never copies the data; lists and generated audio go to --work):

    python benchmarks/speech_fsdd.py --data ../shared/data/fsdd --work /tmp/speech-fsdd \\
        --minutes 18 --threads 1
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import rnnkit.apps.speech  # noqa: F401  (registers the application)
from rnnkit.cli.main import main


def split(data: Path) -> dict[str, list[Path]]:
    from rnnkit.data.audio import fsdd_take

    recordings = sorted((data / "recordings").resolve().glob("*.wav"))
    parts: dict[str, list[Path]] = {"train": [], "valid": [], "test": []}
    for path in recordings:
        take = fsdd_take(path)[2]
        parts["test" if take < 5 else "valid" if take < 10 else "train"].append(path)
    return parts


def write_lists(parts: dict[str, list[Path]], work: Path, connected: dict[str, int],
                labels: str, isolated_repeat: int = 1) -> dict[str, Path]:
    """List files of each part, isolated and connected (and both, for training, the isolated
    training recordings listed ``isolated_repeat`` times); transcripts as digit names
    (``labels="words"``: "seven one") or digits (``"digits"``: "7 1")."""
    from rnnkit.data.audio import DIGIT_WORDS, fsdd_take
    from rnnkit.data.audio_connect import build_connected

    def label(words: str) -> str:
        return words if labels == "words" else " ".join(
            str(DIGIT_WORDS.index(w)) for w in words.split())

    lists = {}
    for name, paths in parts.items():
        rows = {"isolated": [(p, DIGIT_WORDS[fsdd_take(p)[0]]) for p in paths], "connected": []}
        target = work / f"connected_{name}"
        listing = target / "list.tsv"
        if not listing.exists():
            seed = {"train": 11, "valid": 12, "test": 13}[name]
            build_connected(paths, target, connected[name], seed=seed, sample_rate=8000)
        for line in listing.read_text().splitlines():
            file, words = line.split("\t")
            rows["connected"].append((target / file, words))
        repeat = isolated_repeat if name == "train" else 1
        rows["both"] = rows["isolated"] * repeat + rows["connected"]
        for kind, items in rows.items():
            suffix = f"_x{repeat}" if kind == "both" else ""
            path = work / f"{kind}_{name}_{labels}{suffix}.tsv"
            path.write_text("".join(f"{p}\t{label(w)}\n" for p, w in items))
            lists[f"{kind}_{name}"] = path
    return lists


def baseline(parts: dict[str, list[Path]]) -> float:
    """Test accuracy of logistic regression on pooled MFCC (mean and std over time)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from rnnkit.data.audio import FeatureConfig, compute_features, fsdd_take, read_wav

    config = FeatureConfig(sample_rate=8000, kind="mfcc", n_mfcc=20)

    def pooled(paths):
        frames = [compute_features(read_wav(p, 8000), config) for p in paths]
        return np.stack([np.concatenate([f.mean(0), f.std(0)]) for f in frames])

    train = parts["train"] + parts["valid"]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    model.fit(pooled(train), [fsdd_take(p)[0] for p in train])
    return float(model.score(pooled(parts["test"]), [fsdd_take(p)[0] for p in parts["test"]]))


def evaluate(runs: list[Path], data: Path, *extra: str) -> dict:
    """``speech eval --json`` of one run, or of an ensemble of several."""
    given = [part for run in runs for part in ("--checkpoint", str(run))]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["speech", "eval", *given, "--data", str(data), "--json", "--device", "cpu",
                     *extra])
    if code != 0:
        raise SystemExit(f"eval failed on {data}")
    return json.loads(out.getvalue())


def transcribe_rtf(runs: list[Path], paths: list[Path], beam: int) -> float:
    """Real-time factor of the ``transcribe`` path, one file per call, model(s) loaded once."""
    from rnnkit.apps import registry
    from rnnkit.apps.runner import open_checkpoint
    from rnnkit.apps.speech import TranscribeOptions, transcribe

    app = registry.get("speech")
    opened = [open_checkpoint(app, run, "cpu") for run in runs]
    loaded = app.load(opened[0]) if len(opened) == 1 else app.load_ensemble(opened)
    options = TranscribeOptions(beam_size=beam, lexicon=beam > 1)
    transcribe(loaded, paths[:1], options)  # warm up (imports, first allocation)
    started, seconds = time.perf_counter(), 0.0
    for path in paths:
        seconds += transcribe(loaded, [path], options)[0]["seconds"]
    return (time.perf_counter() - started) / seconds


def main_benchmark() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/fsdd")
    parser.add_argument("--work", default="/tmp/rnnkit-speech-fsdd")
    parser.add_argument("--minutes", type=float, default=18.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--connected-train", type=int, default=1500)
    parser.add_argument("--labels", default="words", choices=("words", "digits"),
                        help="transcripts: digit names (seven one) or digits (7 1)")
    parser.add_argument("--isolated-repeat", type=int, default=1,
                        help="list the isolated training recordings this many times")
    parser.add_argument("--train-flags", default="", help="extra flags for speech train")
    parser.add_argument("--members", type=int, default=1,
                        help="train this many models at once (seeds 1..N) and score their "
                             "ensemble too")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    parts = split(Path(args.data))
    counts = {"train": args.connected_train, "valid": 150, "test": 300}
    lists = write_lists(parts, work, counts, args.labels, args.isolated_repeat)
    print(f"lists in {work}; uptime: {os.popen('uptime').read().strip()}", flush=True)

    started = time.perf_counter()
    base = baseline(parts)
    print(f"baseline accuracy {base:.4f} ({time.perf_counter() - started:.0f} s)", flush=True)

    name = f"{args.labels}_x{args.isolated_repeat}"
    if args.members > 1:
        name += f"_ensemble{args.members}"
    runs = ([work / f"run_{name}"] if args.members == 1 else
            [work / f"run_{name}" / f"member-{k + 1}" for k in range(args.members)])
    started = time.perf_counter()
    argvs = [["speech", "train", "--train", str(lists["both_train"]), "--valid",
              str(lists["both_valid"]), "--out", str(run), "--sample-rate", "8000",
              "--max-minutes", str(args.minutes), "--max-epochs", "200", "--eval-every",
              "300", "--threads", str(args.threads), "--device", "cpu", "--no-progress",
              "--no-tensorboard", *args.train_flags.split()] for run in runs]
    if len(runs) == 1:
        code = main(argvs[0])
    else:
        procs = [subprocess.Popen([sys.executable, "-m", "rnnkit", *argv, "--seed", str(k + 1)])
                 for k, argv in enumerate(argvs)]
        code = max(proc.wait() for proc in procs)
    train_minutes = (time.perf_counter() - started) / 60
    if code != 0:
        raise SystemExit("training failed")
    print(f"trained in {train_minutes:.1f} min; uptime: {os.popen('uptime').read().strip()}")

    rows = []
    groups = [("", runs)] if len(runs) == 1 else (
        [(f"member {k + 1}, ", [run]) for k, run in enumerate(runs)]
        + [(f"ensemble of {len(runs)}, ", runs)])
    for prefix, group in groups:
        for label, extra in (("greedy", ()),
                             ("beam 8 + lexicon", ("--beam-size", "8", "--lexicon"))):
            iso = evaluate(group, lists["isolated_test"], *extra)
            con = evaluate(group, lists["connected_test"], *extra)
            rows.append((f"rnnkit speech, {prefix}{label}", iso, con))
    rtf = {beam: transcribe_rtf(runs, parts["test"][:100], beam) for beam in (1, 8)}
    report(base, rows, rtf, train_minutes, work / f"results_{name}")


def report(base: float, rows: list, rtf: dict, train_minutes: float, stem: Path) -> None:
    header = ("| model | isolated test acc. | isolated CER | connected WER | connected CER | "
              "connected string acc. |")
    lines = [header, "| --- | --- | --- | --- | --- | --- |",
             f"| logistic regression on pooled MFCC (baseline) | {base:.2%} | – | – | – | – |"]
    for name, iso, con in rows:
        lines.append(f"| {name} | {iso['utterance_accuracy']:.2%} | {iso['cer']:.2%} | "
                     f"{con['wer']:.2%} | {con['cer']:.2%} | {con['utterance_accuracy']:.2%} |")
    lines.append("")
    lines.append(f"training: {train_minutes:.1f} min; transcribe real-time factor, one file at a "
                 f"time: greedy {rtf[1]:.4f}, beam 8 + lexicon {rtf[8]:.4f}")
    text = "\n".join(lines)
    print(text)
    stem.with_suffix(".json").write_text(json.dumps(
        {"baseline_accuracy": base, "rows": [[n, i, c] for n, i, c in rows],
         "rtf": rtf, "train_minutes": train_minutes}, indent=1))
    stem.with_suffix(".md").write_text(text + "\n")


if __name__ == "__main__":
    main_benchmark()
