"""Word vectors on the Brown corpus: rnnkit's word-LM vectors against PPMI + SVD and gensim
skip-gram, all trained on the same text and scored by the same code on the 13 similarity sets.

The corpus is lower-cased into --work (outside the repository) and tokenized as rnnkit's word
tokenizer does (regex ``\\w+|[^\\w\\s]``); every method keeps the words seen at least --min-freq
times in ``train.txt``, so all have the same vocabulary and the same coverage.

- rnnkit (embedding): ``rnnkit vectors train`` (a word LSTM LM) for --minutes, its input
  embedding at the best validation loss; or the run given as --run. The output layer is
  --softmax: ``adaptive`` (untied, the default: the best embedding scores so far), or
  ``sampled`` / ``full`` with the embedding tied to the output layer (each word's vector also
  learns from the contexts that predict it; docs/benchmarks.md has both runs).
- rnnkit (hidden-mean): the same LM's top-layer state averaged over each word's occurrences in
  the first --hidden-tokens tokens of ``train.txt``.
- PPMI-SVD: :func:`rnnkit.models.wordvec.ppmi_svd` (window 5, weighted; context smoothing 0.75;
  U·Σ^0.5).
- gensim skip-gram (if gensim is installed): window 5, 5 negatives, --sg-epochs epochs.
- frequency only (no vectors): a pair's score is ``-(log f(a) + log f(b))`` with ``f`` the
  word's count in ``train.txt``, so rarer pairs rank as more similar. On Brown this alone
  correlates with WS353 and SimLex-999 about as well as skip-gram does (their raters scored
  pairs of rare words higher); the second table therefore also gives each method's partial
  Spearman ρ with this score held fixed (what its cosines know beyond word frequency), and
  the Spearman ρ between its cosines and the score.

    python benchmarks/vectors_brown.py --minutes 20 --dim 200 --threads 1
    python benchmarks/vectors_brown.py --run /tmp/brown_run --dim 200   # an existing run

Prints one table: Spearman's ρ ×100 per set and method, coverage, training time; and the word
LM's test perplexity (forward LM, whole ``test.txt``).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from rnnkit.apps.vectors import similarity_scores
from rnnkit.data.wordvec import WordVectors, find_benchmarks, read_pairs, read_vectors
from rnnkit.models.wordvec import ppmi_svd, rank_average, spearman, unit_rows

PATTERN = re.compile(r"\w+|[^\w\s]")
HERE = Path(__file__).resolve().parent


def lowercase_copy(brown: Path, work: Path) -> Path:
    target = work / "brown-lower"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("train.txt", "valid.txt", "test.txt"):
        (target / name).write_text((brown / name).read_text(encoding="utf-8").lower(),
                                   encoding="utf-8")
    return target


def sentences_of(path: Path) -> list[list[str]]:
    return [PATTERN.findall(line) for line in path.read_text(encoding="utf-8").splitlines()]


def train_rnnkit(data: Path, out: Path, args) -> float:
    from rnnkit.cli.main import main

    start = time.monotonic()
    code = main(["vectors", "train", "--train", str(data / "train.txt"), "--valid",
                 str(data / "valid.txt"), "--out", str(out), "--overwrite",
                 "--embedding-size", str(args.dim), "--hidden-size", str(args.hidden_size),
                 "--softmax", args.softmax, "--softmax-samples", str(args.softmax_samples),
                 *(["--tie-weights"] if args.softmax != "adaptive" else []),
                 *(["--bidirectional"] if args.bidirectional else []),
                 "--max-epochs", str(args.max_epochs),
                 "--batch-size", "64", "--min-freq", str(args.min_freq),
                 "--max-minutes", str(args.minutes), "--threads", str(args.threads),
                 "--max-valid-tokens", "20000", "--eval-every", "0",
                 "--eval-every-minutes", "3", "--no-progress", "--no-tensorboard", "--no-plot"])
    if code != 0:
        sys.exit(f"rnnkit vectors train failed ({code})")
    return time.monotonic() - start


def test_perplexity(run: Path, test: Path) -> float:
    from rnnkit.apps import registry, runner
    from rnnkit.apps.lm import LM, EvalOptions

    app = registry.get("vectors")
    loaded = app.load(runner.open_checkpoint(app, run, "cpu"))
    return LM().evaluate(loaded, EvalOptions(data=str(test), batch_size=32, bptt=35))["perplexity"]


TARGET_SETS = ("EN-WS-353-ALL", "EN-SIMLEX-999", "EN-MEN-TR-3k")


def frequency_score(counts: Counter, a: str, b: str) -> float:
    """The frequency-only baseline: rarer pairs are more similar."""
    return -(math.log(counts[a]) + math.log(counts[b]))


def partial_spearman(gold, model, control) -> float:
    """Spearman's ρ of ``gold`` and ``model`` with ``control`` held fixed: the partial
    correlation of the three rankings."""
    r_gm, r_gc, r_mc = (np.corrcoef(rank_average(x), rank_average(y))[0, 1]
                        for x, y in ((gold, model), (gold, control), (model, control)))
    return float((r_gm - r_gc * r_mc) / math.sqrt((1 - r_gc ** 2) * (1 - r_mc ** 2)))


def frequency_table(methods: dict[str, WordVectors], counts: Counter, vocab: set[str],
                    word_sim: str) -> None:
    """The target sets once more: the frequency-only baseline (on the pairs ``vocab`` covers,
    as the embedding, PPMI-SVD and skip-gram do), and each method's ρ with the frequency
    score held fixed / its cosines' ρ with the frequency score."""
    paths = [p for p in find_benchmarks(word_sim) if p.stem in TARGET_SETS]
    print("\nbeyond word frequency (the target sets, each method's covered pairs): partial "
          "Spearman ρ ×100 with the frequency score held fixed / ρ ×100 of cosine and "
          "frequency score")
    print("| set | frequency only | " + " | ".join(methods) + " |")
    print("| --- | ---: | " + " | ".join("---:" for _ in methods) + " |")
    for path in paths:
        pairs = [(p.a.lower(), p.b.lower(), p.score) for p in read_pairs(path)]
        known = [(a, b, g) for a, b, g in pairs if a in vocab and b in vocab]
        alone = spearman([g for _, _, g in known],
                         [frequency_score(counts, a, b) for a, b, _ in known])
        cells = []
        for vectors in methods.values():
            unit, index = unit_rows(vectors.matrix), vectors.index
            rows = [(g, float(unit[index[a]] @ unit[index[b]]), frequency_score(counts, a, b))
                    for a, b, g in pairs if a in index and b in index]
            gold, cosine, freq = (list(column) for column in zip(*rows))
            cells.append(f"{100 * partial_spearman(gold, cosine, freq):.1f} / "
                         f"{100 * spearman(cosine, freq):.1f}")
        print(f"| {path.stem} | {100 * alone:.1f} ({len(known)} pairs) | " + " | ".join(cells)
              + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--brown", default=str(HERE.parent.parent / "shared/data/brown"))
    parser.add_argument("--word-sim", default=str(HERE.parent.parent / "shared/data/word-sim"))
    parser.add_argument("--work", default="/tmp/rnnkit-vectors-brown")
    parser.add_argument("--run", help="an rnnkit vectors run to score instead of training one")
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--dim", type=int, default=200)
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--softmax", choices=("sampled", "adaptive", "full"), default="adaptive",
                        help="the LM's output layer (sampled and full: tied to the embedding)")
    parser.add_argument("--softmax-samples", type=int, default=1024)
    parser.add_argument("--bidirectional", action="store_true",
                        help="also a backward LM (ELMo): the embedding learns from both sides")
    parser.add_argument("--max-epochs", type=int, default=10)
    parser.add_argument("--min-freq", type=int, default=3)
    parser.add_argument("--hidden-tokens", type=int, default=400000)
    parser.add_argument("--sg-epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    data = lowercase_copy(Path(args.brown), work)
    sentences = sentences_of(data / "train.txt")
    counts = Counter(w for s in sentences for w in s)
    vocab = sorted((w for w, c in counts.items() if c >= args.min_freq),
                   key=lambda w: (-counts[w], w))
    print(f"train: {sum(counts.values())} tokens, {len(vocab)} words seen >= {args.min_freq} "
          f"times; threads {args.threads}", flush=True)

    methods: dict[str, tuple[WordVectors, float | None]] = {}
    run = Path(args.run) if args.run else work / "rnnkit-run"
    seconds = None if args.run else train_rnnkit(data, run, args)
    methods["rnnkit LM embedding"] = (read_vectors(run / "vectors.txt"), seconds)

    from rnnkit.apps.vectors_export import checkpoint_vectors

    start = time.monotonic()
    hidden = checkpoint_vectors(run, "hidden-mean", data=str(data / "train.txt"),
                                max_tokens=args.hidden_tokens)
    methods["rnnkit LM hidden-mean"] = (hidden, time.monotonic() - start)

    start = time.monotonic()
    ids = {w: i for i, w in enumerate(vocab)}
    matrix = ppmi_svd([[ids.get(w, -1) for w in s] for s in sentences], len(vocab),
                      dim=args.dim, window=5)
    methods["PPMI-SVD"] = (WordVectors(vocab, matrix), time.monotonic() - start)

    try:
        from gensim.models import Word2Vec
    except ImportError:
        print("gensim not installed: no skip-gram row", flush=True)
    else:
        start = time.monotonic()
        model = Word2Vec(sentences, vector_size=args.dim, window=5, min_count=args.min_freq,
                         sg=1, negative=5, epochs=args.sg_epochs, workers=args.threads, seed=1)
        kv = model.wv
        methods["gensim skip-gram"] = (WordVectors(list(kv.index_to_key), kv.vectors),
                                       time.monotonic() - start)

    scores = {name: similarity_scores(vec, args.word_sim) for name, (vec, _) in methods.items()}
    names = list(methods)
    sets = [s.name for s in scores[names[0]]]
    print()
    print("| set | " + " | ".join(names) + " | covered pairs |")
    print("| --- | " + " | ".join("---:" for _ in names) + " | ---: |")
    for i, name in enumerate(sets):
        row = [scores[m][i] for m in names]
        cover = {f"{r.covered}/{r.pairs}" for r in row}
        cells = ["n/a" if math.isnan(r.spearman) else f"{100 * r.spearman:.1f}" for r in row]
        print(f"| {name} | " + " | ".join(cells) + f" | {' '.join(sorted(cover))} |")
    print("| seconds | " + " | ".join("-" if t is None else f"{t:.0f}"
                                      for _, t in methods.values()) + " | |")
    print("\nvocabulary sizes: " + ", ".join(f"{n}: {len(v)}" for n, (v, _) in methods.items()))
    print(f"rnnkit word LM test perplexity (forward LM, whole test.txt): "
          f"{test_perplexity(run, data / 'test.txt'):.2f}")
    means = {m: np.mean([100 * s.spearman for s in scores[m] if s.name in TARGET_SETS])
             for m in names}
    print("mean of WS353 / SimLex / MEN: " + ", ".join(f"{m}: {v:.1f}" for m, v in means.items()))
    frequency_table({name: vec for name, (vec, _) in methods.items()}, counts, set(vocab),
                    args.word_sim)


if __name__ == "__main__":
    main()
