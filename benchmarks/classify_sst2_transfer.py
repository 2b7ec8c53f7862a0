"""SST-2 with transfer from an rnnkit word LM, side by side with the from-scratch recipe.

One run, four stages, every number in the table measured by it:

1. ``corpus``: unlabelled text from ``../shared/data`` only, lower-cased (SST-2 is lower-case):
   the Brown training files, the English side of Multi30k train, and the sentences of SST-2
   train with their labels dropped (twice: the in-domain text weighs more); lines shuffled with
   a fixed seed. LM validation text: Brown ``valid.txt``. No SST-2 dev sentence is used.
   ``--lm-corpus sst``: the SST-2 train sentences only (the LM's validation text then the last
   10 % of them).
2. ``lm``: ``rnnkit lm train --tokenizer word`` on that text: a one-layer LSTM LM, forward and
   backward (``--bidirectional``, ELMo-style, shared embedding), adaptive softmax over a
   20,000-word vocabulary, budgeted in minutes (``--lm-minutes``, default 30).
3. ``classify``: for each seed, the from-scratch recipe of ``benchmarks/classify_sst2.sh``
   (bi-LSTM, max pooling, 200-d embeddings, hidden 150) and the transfer recipe
   (``--init-from`` the LM: its embedding and its forward and backward LSTM layers become the
   classifier's embedding and bi-LSTM; discriminative learning rates, gradual unfreezing).
   ``plain`` is ``--init-from`` without that schedule (every layer trained from the first
   step at one rate); ``vectors`` is the from-scratch recipe with only its embedding started
   from the LM's (``rnnkit vectors export`` of the LM, then ``--init-embeddings``);
   ``features`` is the from-scratch recipe with the frozen LM's states joined to each word's
   input (``--lm-features``, ELMo-style).
4. ``eval``: ``rnnkit classify eval`` of every member and of each recipe's ensemble (the mean
   of the class probabilities) on SST-2 dev; one Markdown table, ``results.json``.

    python benchmarks/classify_sst2_transfer.py --out runs/sst2-transfer --seeds 1,2,3 \
        --parallel 4

Results, the machine and its load: ``docs/transfer.md``. Budgets are wall minutes
(``--max-minutes`` of each run): on a busy machine they buy less training.

``--reuse`` keeps a stage's finished output (a run directory with ``best/``), so an interrupted
benchmark continues where it stopped. The dev set picks each member's checkpoint (the best of
the evaluations during training), as in the from-scratch benchmark: the figures flatter a
held-out estimate somewhat.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"

LM_FLAGS = ["--tokenizer", "word", "--vocab-size", "20000", "--cell", "lstm",
            "--embedding-size", "256", "--hidden-size", "256", "--num-layers", "1",
            "--softmax", "adaptive", "--bidirectional", "--dropout", "0.1", "--bptt", "64",
            "--batch-size", "32", "--lr", "2e-3", "--max-epochs", "2", "--eval-every", "300",
            "--max-valid-tokens", "20000"]
# --lm-corpus sst: the same LM on the SST-2 train sentences only (133 k words), several epochs
SST_LM_FLAGS = [*LM_FLAGS[: LM_FLAGS.index("--dropout")], "--dropout", "0.3", "--bptt", "64",
                "--batch-size", "32", "--lr", "2e-3", "--max-epochs", "10", "--eval-every", "100"]
# the from-scratch recipe of benchmarks/classify_sst2.sh (docs/benchmarks.md), unchanged
SCRATCH_FLAGS = ["--pooling", "max", "--embedding-size", "200", "--hidden-size", "150",
                 "--max-epochs", "8", "--eval-every", "100", "--max-minutes", "12"]
# the LM as the starting point only: every layer trained from the first step at one rate,
# the from-scratch recipe's epochs
PLAIN_FLAGS = ["--pooling", "max", "--embedding-size", "256", "--hidden-size", "256",
               "--max-epochs", "8", "--eval-every", "100", "--max-minutes", "15"]
# the from-scratch recipe with its embedding started from the LM's (rnnkit vectors export):
# only the embedding transfers; its size follows the LM's (256)
VECTORS_FLAGS = ["--pooling", "max", "--embedding-size", "256", "--hidden-size", "150",
                 "--max-epochs", "8", "--eval-every", "100", "--max-minutes", "12"]
# the transfer recipe: sizes follow the LM (256); ULMFiT's factor 2.6 per layer group and
# gradual unfreezing (epoch 1: the output layer only; 2: + the bi-LSTM; 3: + the embedding);
# fewer epochs than from scratch (the encoder starts trained), the rest as the scratch recipe
TRANSFER_FLAGS = ["--pooling", "max", "--embedding-size", "256", "--hidden-size", "256",
                  "--max-epochs", "4", "--eval-every", "100", "--max-minutes", "15",
                  "--layer-lr-decay", "2.6", "--gradual-unfreezing"]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(argv: list[str], log_file: Path) -> float:
    """``rnnkit ARGV`` with its output in ``log_file``; returns the wall seconds."""
    started = time.monotonic()
    with open(log_file, "w", encoding="utf-8") as out:
        code = subprocess.call([sys.executable, "-m", "rnnkit", *argv], stdout=out,
                               stderr=subprocess.STDOUT)
    if code != 0:
        raise SystemExit(f"rnnkit {' '.join(argv)}: exit {code}, see {log_file}")
    return time.monotonic() - started


def finished(run_dir: Path) -> bool:
    return (run_dir / "best" / "config.json").exists()


def make_corpus(out: Path, seed: int) -> tuple[Path, Path]:
    corpus = out / "corpus"
    train, valid = corpus / "lm-train.txt", corpus / "lm-valid.txt"
    if train.exists() and valid.exists():
        return train, valid
    corpus.mkdir(parents=True, exist_ok=True)
    lines = [line.strip().lower() for line in open(DATA / "brown" / "train.txt",
                                                   encoding="utf-8")]
    with gzip.open(DATA / "multi30k" / "train.en.gz", "rt", encoding="utf-8") as file:
        lines += [line.strip().lower() for line in file]
    sst = [line.split(" ", 1)[1].strip() for line in open(DATA / "sst2" / "stsa.binary.train",
                                                          encoding="utf-8")]
    lines += sst + sst
    lines = [line for line in lines if line]
    random.Random(seed).shuffle(lines)
    tmp = train.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(train)
    tmp = valid.with_suffix(".tmp")
    tmp.write_text("".join(line.lower() for line in open(DATA / "brown" / "valid.txt",
                                                         encoding="utf-8")), encoding="utf-8")
    tmp.replace(valid)
    return train, valid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/sst2-transfer")
    parser.add_argument("--seeds", default="1,2,3", help="classifier seeds (comma-separated)")
    parser.add_argument("--lm-minutes", type=float, default=30.0)
    parser.add_argument("--lm-threads", type=int, default=2)
    parser.add_argument("--lm-epochs", type=int, default=2, help="the mixed-corpus LM's epoch "
                        "limit (with --lm-minutes, whichever comes first; 2 suited a loaded "
                        "machine, where 30 minutes bought under one epoch)")
    parser.add_argument("--lm-corpus", choices=("mixed", "sst"), default="mixed",
                        help="mixed: Brown + Multi30k en + SST-2 train text; sst: SST-2 train "
                             "text only")
    parser.add_argument("--stages", default="corpus,lm,classify,eval")
    parser.add_argument("--reuse", action="store_true", help="keep finished stages' outputs")
    parser.add_argument("--recipes", default="scratch,transfer,plain,vectors")
    parser.add_argument("--parallel", type=int, default=1,
                        help="classifiers trained at once (one thread each)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stages = args.stages.split(",")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sst = DATA / "sst2"
    results: dict = {"lm": {}, "members": {}, "ensembles": {}}
    results_file = out / "results.json"
    if results_file.exists():
        results = json.loads(results_file.read_text())
    for key in ("lm", "members", "ensembles"):
        results.setdefault(key, {})

    lock = threading.Lock()

    def save() -> None:  # merged with the file: another stage may run at the same time
        with lock:
            _save()

    def _save() -> None:
        merged = json.loads(results_file.read_text()) if results_file.exists() else {}
        for key, value in results.items():
            for name, entry in value.items():
                if isinstance(entry, dict):
                    merged.setdefault(key, {}).setdefault(name, {}).update(entry)
                else:
                    merged.setdefault(key, {})[name] = entry
        results_file.write_text(json.dumps(merged, indent=1) + "\n")

    lm_dir = out / "lm"
    if args.lm_corpus == "sst":  # in-domain only: the SST-2 train sentences, labels dropped
        lm_train = out / "corpus" / "sst-train-text.txt"
        if not lm_train.exists():
            lm_train.parent.mkdir(parents=True, exist_ok=True)
            lm_train.write_text("".join(line.split(" ", 1)[1] for line in open(
                sst / "stsa.binary.train", encoding="utf-8")), encoding="utf-8")
        lm_data, lm_flags = ["--valid-fraction", "0.1"], SST_LM_FLAGS
    else:
        lm_train, lm_valid = make_corpus(out, 1)
        lm_data, lm_flags = ["--valid", str(lm_valid)], [*LM_FLAGS, "--max-epochs",
                                                           str(args.lm_epochs)]
    if "lm" in stages and not (args.reuse and finished(lm_dir)):
        log(f"LM pretraining, {args.lm_minutes} min budget, {args.lm_threads} threads")
        seconds = run(["lm", "train", "--train", str(lm_train), *lm_data,
                       "--out", str(lm_dir), "--overwrite", *lm_flags, "--max-minutes",
                       str(args.lm_minutes), "--threads", str(args.lm_threads), "--seed", "1",
                       "--no-progress", "--no-tensorboard"], out / "lm.log")
        results["lm"]["run"] = {"seconds": round(seconds)}
        save()
        log(f"LM done in {seconds / 60:.1f} min")
    vectors = out / "lm-vectors.txt"
    recipes = {"scratch": SCRATCH_FLAGS,
               "transfer": [*TRANSFER_FLAGS, "--init-from", str(lm_dir)],
               "plain": [*PLAIN_FLAGS, "--init-from", str(lm_dir)],
               "vectors": [*VECTORS_FLAGS, "--init-embeddings", str(vectors)],
               "features": [*SCRATCH_FLAGS, "--lm-features", str(lm_dir)]}
    chosen = [r for r in args.recipes.split(",") if r]
    unknown = [r for r in chosen if r not in recipes]
    if unknown:
        raise SystemExit(f"--recipes: unknown {unknown}; known: {', '.join(recipes)}")
    if "classify" in stages and "vectors" in chosen and not (args.reuse and vectors.exists()):
        run(["vectors", "export", "--checkpoint", str(lm_dir), "--output", str(vectors)],
            out / "vectors-export.log")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    if "classify" in stages:
        def member(recipe: str, seed: int) -> None:
            name = f"{recipe}-seed{seed}"
            run_dir = out / name
            if args.reuse and finished(run_dir):
                return
            log(f"training {name}")
            seconds = run(["classify", "train", "--train", str(sst / "stsa.binary.train"),
                           "--valid", str(sst / "stsa.binary.dev"), "--out", str(run_dir),
                           "--overwrite", "--seed", str(seed), "--threads", "1",
                           "--no-progress", "--no-tensorboard", *recipes[recipe]],
                          out / f"{name}.log")
            results["members"][name] = {"seconds": round(seconds)}
            save()
            log(f"{name} done in {seconds / 60:.1f} min")

        jobs = [(recipe, seed) for recipe in chosen for seed in seeds]
        with ThreadPoolExecutor(args.parallel) as pool:
            for future in [pool.submit(member, *job) for job in jobs]:
                future.result()
    if "eval" not in stages:
        return
    lm_line = describe_lm(lm_dir, "SST-2 train held-out 10 %" if args.lm_corpus == "sst"
                          else "Brown-valid")
    if lm_line:
        results["lm"]["summary"] = lm_line
    rows = []
    for recipe in chosen:
        members = [out / f"{recipe}-seed{seed}" for seed in seeds]
        members = [m for m in members if finished(m)]
        accuracies, minutes, stops = [], [], set()
        for member in members:
            score = evaluate([member], sst / "stsa.binary.dev", out / f"{member.name}.eval.log")
            trained = training_of(member, out / f"{member.name}.log")
            results["members"].setdefault(member.name, {}).update(
                {"dev_accuracy": score["accuracy"], **trained})
            accuracies.append(score["accuracy"])
            minutes.append(trained["minutes"])
            stops.add(trained["stop"])
        if not members:
            continue
        ensemble = evaluate(members, sst / "stsa.binary.dev", out / f"{recipe}.eval.log")
        results["ensembles"][recipe] = {"members": len(members),
                                        "dev_accuracy": ensemble["accuracy"],
                                        "macro_f1": ensemble["macro_f1"]}
        save()
        rows.append((recipe, len(members), 100 * sum(accuracies) / len(accuracies),
                     100 * min(accuracies), 100 * max(accuracies), 100 * ensemble["accuracy"],
                     100 * ensemble["macro_f1"], sum(minutes) / len(minutes),
                     ", ".join(sorted(stops))))
    print(f"SST-2 dev ({sst / 'stsa.binary.dev'}), seeds {args.seeds}")
    if lm_line:
        print(lm_line)
    print("| recipe | members | single: mean (min-max) dev acc % | ensemble dev acc % | "
          "ensemble macro-F1 | training min / member | stopped by |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for recipe, n, mean, low, high, acc, f1, mins, stop in rows:
        print(f"| {recipe} | {n} | {mean:.2f} ({low:.2f}-{high:.2f}) | {acc:.2f} | {f1:.2f} | "
              f"{mins:.1f} | {stop} |")


def records(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def describe_lm(lm_dir: Path, valid: str) -> str:
    """One line: the LM's steps, tokens read, minutes and its last validation perplexity."""
    rows = records(lm_dir)
    evals = [r for r in rows if "valid_ppl" in r]
    if not evals:
        return ""
    last = evals[-1]
    config = json.loads((lm_dir / "best" / "config.json").read_text())
    train = config.get("train", {})
    options = config.get("options", {})
    tokens = last["step"] * options.get("bptt", 0) * options.get("batch_size", 0)
    return (f"LM: {last['step']} steps (~{tokens / 1e6:.2f} M tokens read, "
            f"{last['time'] / 60:.1f} min, {train.get('threads')} threads), {valid} "
            f"perplexity {last['valid_ppl']:.1f} (best {min(r['valid_ppl'] for r in evals):.1f})")


def training_of(run_dir: Path, log_file: Path) -> dict:
    """Minutes of training, steps, epochs and why it stopped (from the run's log)."""
    rows = records(run_dir)
    stop = "?"
    if log_file.exists():
        for line in log_file.read_text().splitlines():
            if line.startswith("stopped ("):
                stop = line.split("(", 1)[1].split(")", 1)[0]
    last = rows[-1] if rows else {}
    return {"minutes": round(last.get("time", 0.0) / 60, 1), "steps": last.get("step"),
            "epochs": last.get("epoch"), "stop": stop}


def evaluate(members: list[Path], data: Path, log_file: Path) -> dict:
    argv = ["classify", "eval", "--data", str(data), "--json"]
    for member in members:
        argv += ["--checkpoint", str(member)]
    run(argv, log_file)
    text = log_file.read_text(encoding="utf-8")
    return json.loads(text[text.index("{"):])


if __name__ == "__main__":
    main()
