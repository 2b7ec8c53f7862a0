"""Amazon Games (SASRec's "Games"): train ``rnnkit recommend`` and rank it with both baselines.

Everything goes through the command line (``rnnkit recommend train`` / ``eval``), so the model,
most-popular and item-to-item co-occurrence are scored by the same evaluation code on the same
users and the same sampled negatives (``--seed``):

- sampled protocol (SASRec): the test item against 100 uniformly drawn unseen items, HR@10 and
  NDCG@10, over every user with a test item (SASRec samples 10,000 of them);
- full ranking: the test item against every item the user has not seen, Recall@20, MRR@20 and
  NDCG@20.

Usage (the issue's budget is 15 minutes of training on a 2-core CPU)::

    python benchmarks/recommend_amazon_games.py --out runs/recommend-games --minutes 15 \\
        --threads 1 -- --lr 4e-3

With ``--members N`` it trains N models at once (seeds 1..N, one process each, ``--threads``
torch threads each, all within the same ``--minutes``) in ``OUT/member-K`` and ranks each of them
and their ensemble (``rnnkit recommend eval --checkpoint A --checkpoint B …``: the mean of their
log-softmax over the items).

Prints one Markdown table at the end and writes it, with the raw numbers, to ``OUT/results.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import rnnkit.apps.recommend  # noqa: F401 - registers "recommend"
from rnnkit.cli.main import main as rnnkit

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "amazon-games" / "Video.txt"


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--out", default="runs/recommend-games")
    parser.add_argument("--minutes", type=float, default=15.0, help="training budget")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="seed of the evaluation negatives")
    parser.add_argument("--skip-train", action="store_true", help="evaluate an existing run")
    parser.add_argument("--members", type=int, default=1,
                        help="models trained side by side (one process each) and ensembled")
    parser.add_argument("train_flags", nargs="*", help="extra flags for recommend train")
    return parser.parse_args()


def _call(argv: list[str]) -> str:
    """Run ``rnnkit ARGV`` in this process; its stdout."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = rnnkit(argv)
    if code != 0:
        sys.exit(f"rnnkit {' '.join(argv)}: exit {code}")
    return buffer.getvalue()


def _train_argv(args: argparse.Namespace, out: str) -> list[str]:
    return ["recommend", "train", "--train", args.data, "--out", out,
            "--max-minutes", str(args.minutes), "--max-epochs", "1000",
            "--eval-every-minutes", "3", "--eval-every", "0", "--threads",
            str(args.threads), "--no-progress", "--no-tensorboard", *args.train_flags]


def _train(args: argparse.Namespace, outs: list[str]) -> float:
    started = time.monotonic()
    if len(outs) == 1:
        print(_call(_train_argv(args, outs[0])))
        return time.monotonic() - started
    runs = [subprocess.Popen([sys.executable, "-m", "rnnkit", *_train_argv(args, out),
                              "--seed", str(k + 1)])
            for k, out in enumerate(outs)]
    if any(run.wait() != 0 for run in runs):
        sys.exit("a member's training failed")
    return time.monotonic() - started


def _evaluate(args: argparse.Namespace, checkpoints: list[str], scorer: str,
              protocol: str) -> dict:
    cutoffs = "10" if protocol == "sampled" else "20"
    given = [part for checkpoint in checkpoints for part in ("--checkpoint", checkpoint)]
    output = _call(["recommend", "eval", *given, "--data", args.data,
                    "--json", "--scorer", scorer, "--protocol", protocol, "--cutoffs", cutoffs,
                    "--seed", str(args.seed)])
    return json.loads(output)


def _training_rate(out: Path) -> tuple[float, float, int]:
    """(mean sequences/s, training seconds, steps) from metrics.jsonl."""
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rates = [r["rate"] for r in records if "rate" in r]
    last = records[-1]
    return sum(rates) / max(len(rates), 1), last.get("time", 0.0), last.get("step", 0)


def _table(results: dict) -> str:
    lines = ["| scorer | HR@10 (sampled) | NDCG@10 (sampled) | Recall@20 (full) | MRR@20 (full) "
             "| NDCG@20 (full) |", "| --- | --- | --- | --- | --- | --- |"]
    for name, row in results.items():
        sampled, full = row["sampled"], row["full"]
        lines.append(f"| {name} | {sampled['hr@10']:.4f} | {sampled['ndcg@10']:.4f} | "
                     f"{full['recall@20']:.4f} | {full['mrr@20']:.4f} | {full['ndcg@20']:.4f} |")
    return "\n".join(lines)


def main() -> None:
    args = _arguments()
    load_before = os.getloadavg()
    outs = ([args.out] if args.members == 1 else
            [str(Path(args.out) / f"member-{k + 1}") for k in range(args.members)])
    wall = None if args.skip_train else _train(args, outs)
    rows = [("model", outs, "rnnkit recommend (GRU)")]
    if len(outs) > 1:
        rows = [("model", [out], f"rnnkit recommend (GRU), member {k + 1}")
                for k, out in enumerate(outs)]
        rows.append(("model", outs, f"rnnkit recommend (GRU), ensemble of {len(outs)}"))
    rows += [("popular", outs[:1], "most popular"),
             ("cooccurrence", outs[:1], "item-to-item co-occurrence")]
    results = {}
    for scorer, checkpoints, label in rows:
        results[label] = {p: _evaluate(args, checkpoints, scorer, p) for p in ("sampled", "full")}
    rate, seconds, steps = _training_rate(Path(outs[0]))
    best = json.loads((Path(outs[0]) / "best" / "config.json").read_text())
    table = _table(results)
    summary = {"results": results, "sequences_per_s": rate, "train_seconds": seconds,
               "steps": steps, "best_step": best.get("step"), "wall_seconds": wall,
               "users": results["most popular"]["sampled"]["users"],
               "load_before": load_before, "load_after": os.getloadavg(),
               "machine": platform.processor() or platform.machine(),
               "train_flags": args.train_flags, "threads": args.threads,
               "members": args.members}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps(summary, indent=1))
    print(table)
    print(f"\nusers ranked: {summary['users']}; training {seconds / 60:.1f} min, {steps} steps "
          f"(best at step {best.get('step')}), {rate:.0f} sequences/s; load average "
          f"{load_before[0]:.1f} before, {summary['load_after'][0]:.1f} after")


if __name__ == "__main__":
    main()
