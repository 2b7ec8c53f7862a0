"""Moving digits: ConvLSTM vs the paper's baselines on next-frame cross-entropy, and clip
classification, in one run on the same generated clips.

Next frames (Shi et al. 2015, Moving MNIST: ConvLSTM reached a lower cross-entropy than
FC-LSTM; the claim checked here is that order on these clips): each model is trained with
``rnnkit frames train`` on the same generated clips for the same number of optimizer steps
(``--steps``, batches of 16 clips; ``--minutes`` caps each run), then scored with ``rnnkit
frames eval`` on fresh test clips drawn from handwriting the training never saw;
copy-last-frame is scored by the same eval (``--baselines``). Classification: ConvLSTM
classifiers (before and after the convolutional stem with its skip to the heads) on clips of the
same kind, against the most frequent classes.

    python benchmarks/frames_moving_digits.py --steps 600 --minutes 9 --out runs/frames_bench
    python benchmarks/frames_moving_digits.py --steps 600 --minutes 6 --threads 1 \
        --skip-next-frame --out runs/frames_bench_cls     # the classifiers alone

Prints one Markdown table and writes ``results.json`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from _cli import run as _run  # benchmarks/_cli.py

MODELS = {  # next-frame models; the ConvLSTM recipe was chosen on the validation clips
    "ConvLSTM (encoder-forecaster)": ["--architecture", "convlstm", "--hidden-size", "32",
                                      "--num-layers", "2", "--kernel-size", "3",
                                      "--patch-size", "4", "--head", "all"],
    "FC-LSTM": ["--architecture", "fc-lstm", "--hidden-size", "256", "--num-layers", "1"],
    "CNN, last frame alone": ["--architecture", "cnn", "--hidden-size", "32",
                              "--num-layers", "3", "--kernel-size", "5"],
}

# classifiers: the ConvLSTM's sizes (2 layers, 32 channels, 3x3, the 4x4 grid); the recipe
# (stem, skip, digit weight, lr) was chosen on the validation clips (docs/frames.md)
CLASSIFIERS = {
    "ConvLSTM classifier, before (raw 4×4 patches, digit weight 1, lr 0.01)": [
        "--stem", "0", "--digit-weight", "1", "--lr", "1e-2"],
    "ConvLSTM classifier, conv stem without skip (digit weight 10, lr 0.003)": [
        "--stem", "32", "--no-stem-skip", "--digit-weight", "10", "--lr", "3e-3"],
    "**ConvLSTM classifier, conv stem + skip to the heads (digit weight 10, lr 0.003)**": [
        "--stem", "32", "--stem-skip", "--digit-weight", "10", "--lr", "3e-3"],
}
CLASSIFY_SIZES = ["--hidden-size", "32", "--num-layers", "2", "--kernel-size", "3",
                  "--patch-size", "4", "--pool", "final"]


def _largest(run: Path, key: str) -> float:
    """The largest value of ``key`` in the run's metrics.jsonl (0 if it never appears)."""
    with (run / "metrics.jsonl").open() as handle:
        return max((json.loads(line).get(key, 0) for line in handle), default=0)


def _parameters(run: Path) -> int:
    from safetensors.torch import load_file

    return sum(t.numel() for t in load_file(str(run / "best" / "model.safetensors")).values())


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps per model")
    parser.add_argument("--minutes", type=float, default=6.0, help="time cap per model")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clips", type=int, default=2000)
    parser.add_argument("--test-clips", type=int, default=500)
    parser.add_argument("--out", default="runs/frames_bench")
    parser.add_argument("--skip-classify", action="store_true")
    parser.add_argument("--skip-next-frame", action="store_true")
    args = parser.parse_args()
    data = ["--clips", str(args.clips), "--valid-clips", "200", "--canvas", "24",
            "--digit-size", "12", "--speed", "2", "--input-frames", "5", "--future-frames", "5",
            "--batch-size", "16"]
    common = ["--schedule", "constant", "--max-epochs", "1000",
              "--max-steps", str(args.steps),
              "--max-minutes", str(args.minutes), "--eval-every", "40", "--threads",
              str(args.threads), "--no-progress", "--no-tensorboard", "--no-plot", "--overwrite"]
    started = time.monotonic()
    print(f"load average {os.getloadavg()[0]:.2f} at start; {args.threads} thread(s); "
          f"{args.steps} steps (at most {args.minutes} min) per model", flush=True)
    rows, results = [], {"args": vars(args), "next_frame": {}, "classify": {}}
    copy_last = None
    for name, flags in ({} if args.skip_next_frame else MODELS).items():
        run = Path(args.out) / name.split()[0].lower().strip(",")
        begun = time.monotonic()
        _run(["frames", "train", *data, *flags, "--lr", "1e-2", *common, "--out", str(run)])
        metrics = json.loads(_run(["frames", "eval", "--checkpoint", str(run), "--clips",
                                   str(args.test_clips), "--baselines", "--json",
                                   "--threads", str(args.threads)]))
        metrics["steps"] = _largest(run, "step")
        metrics["parameters"] = _parameters(run)
        metrics["train_seconds"] = time.monotonic() - begun
        results["next_frame"][name] = metrics
        copy_last = metrics
        rows.append((name, metrics["bce"], metrics["bce_per_frame"], metrics["steps"],
                     metrics["parameters"], metrics["train_seconds"]))
        print(f"  {name}: bce {metrics['bce']:.4f} after {metrics['steps']} steps "
              f"(load {os.getloadavg()[0]:.2f})", flush=True)
    if copy_last is not None:
        rows.append(("copy last frame (ε fitted on the input frames)",
                     copy_last["copy_last_bce"], copy_last["copy_last_bce_per_frame"], 0, 0, 0.0))
    if rows:
        print()
        print(f"Next frame: 24×24 canvas, 12×12 digits, 5 frames in, 5 predicted; "
              f"{args.test_clips} test clips of unseen handwriting; {args.steps} steps of 16 "
              f"clips each (at most {args.minutes} min) on {args.threads} thread(s)")
        print()
        print("| model | BCE per pixel (nats) | BCE per frame (sum over 576 pixels) | steps | "
              "parameters | train + eval wall s |")
        print("| --- | --- | --- | --- | --- | --- |")
        for name, bce, per_frame, steps, params, seconds in sorted(rows, key=lambda r: r[1]):
            print(f"| {name} | {bce:.4f} | {per_frame:.1f} | {steps or '—'} | "
                  f"{params or '—'} | {seconds:.0f} |")
    if not args.skip_classify:
        rows = []
        for number, (name, flags) in enumerate(CLASSIFIERS.items()):
            run = Path(args.out) / f"classify-{number}"
            begun = time.monotonic()
            _run(["frames", "train", "--task", "classify", *data, *CLASSIFY_SIZES, *flags,
                  *common, "--out", str(run)])
            metrics = json.loads(_run(["frames", "eval", "--checkpoint", str(run), "--clips",
                                       str(args.test_clips), "--baselines", "--json",
                                       "--threads", str(args.threads)]))
            metrics["steps"] = _largest(run, "step")
            metrics["best_valid_clip_accuracy"] = _largest(run, "valid_clip_accuracy")
            metrics["parameters"] = _parameters(run)
            metrics["train_seconds"] = time.monotonic() - begun
            results["classify"][name] = metrics
            rows.append((name, metrics))
            print(f"  {name}: digits {metrics['digit_accuracy']:.3f}, direction "
                  f"{metrics['direction_accuracy']:.3f} (load {os.getloadavg()[0]:.2f})",
                  flush=True)
        print()
        print(f"Classification ({metrics['clips']} test clips, one digit, 8 directions, "
              f"{metrics['steps']} steps)")
        print()
        print("| model | digit acc. | direction acc. | both | best valid both | parameters | "
              "train + eval wall s |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for name, m in rows:
            print(f"| {name} | {m['digit_accuracy']:.3f} | {m['direction_accuracy']:.3f} | "
                  f"{m['clip_accuracy']:.3f} | {m['best_valid_clip_accuracy']:.3f} | "
                  f"{m['parameters']} | {m['train_seconds']:.0f} |")
        print(f"| most frequent classes | {metrics['majority_digit_accuracy']:.3f} | "
              f"{metrics['majority_direction_accuracy']:.3f} | "
              f"{metrics['majority_clip_accuracy']:.3f} | — | — | — |")
    results["wall_seconds"] = time.monotonic() - started
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwall time {results['wall_seconds'] / 60:.1f} min; load average "
          f"{os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main_()
