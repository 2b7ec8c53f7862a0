"""Argument plumbing shared by ``rnnkit tag``, ``classify`` and ``translate`` (no task logic)."""

from __future__ import annotations

import argparse
import os
import sys

from rnnkit._io import atomic_write_text
from rnnkit.errors import RnnkitError
from rnnkit.tasks._labels import UNKNOWN_LABELS
from rnnkit.train import TrainConfig
from rnnkit.train.config import add_dataclass_flags, build_config, check_unknown_keys, load_toml
from rnnkit.train.distributed import finish_distributed

__all__ = ["add_train_arguments", "train_configs", "run_train", "add_checkpoint", "read_input",
           "write_output", "add_unknown_labels"]


def add_train_arguments(parser: argparse.ArgumentParser, task_config: type, out: str) -> None:
    parser.add_argument("--config", metavar="TOML", help="options from a TOML file (keys are "
                        "the flag names with underscores); flags override it")
    parser.add_argument("--out", default=out, help=f"run directory (default: {out})")
    parser.add_argument("--resume", metavar="DIR", help="continue the run in DIR (its last/)")
    add_dataclass_flags(parser.add_argument_group("data and model"), task_config)
    add_dataclass_flags(parser.add_argument_group("training"), TrainConfig)


def train_configs(task_config: type, args: argparse.Namespace):
    """(task config, TrainConfig): defaults ← TOML ← flags."""
    toml = load_toml(args.config)
    check_unknown_keys(toml, task_config, TrainConfig)
    return build_config(task_config, toml, args), build_config(TrainConfig, toml, args)


def run_train(task, task_config: type, args: argparse.Namespace) -> int:
    """Train ``task`` (a module with ``train(config, train_config, out, resume=)``) and report.
    Under torchrun every process leaves the process group before exiting (see
    :func:`~rnnkit.train.distributed.finish_distributed`), and the first one reports."""
    config, train_config = train_configs(task_config, args)
    try:
        result = task.train(config, train_config, args.out, resume=args.resume)
    except BaseException:
        finish_distributed(wait=False)
        raise
    finish_distributed()
    if os.environ.get("RANK", "0") != "0":
        return 0
    shown = "  ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
    print(f"done ({result.stop_reason}) after {result.steps} steps: {shown}")
    print(f"best checkpoint: {result.best_dir}")
    return 0


def add_checkpoint(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="DIR",
                        help="a run directory (its best/ is used) or a checkpoint directory")
    parser.add_argument("--batch-size", type=int, default=64, help="items per batch "
                        "(default: 64)")


def add_unknown_labels(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--unknown-labels", choices=UNKNOWN_LABELS, default="error",
        help=f"a gold {what} the model never saw in training: stop with an error naming the "
             "file and line (error, default), or score it as a wrong prediction (wrong)")


def read_input(path: str) -> tuple[str, str | None]:
    """(name for messages, text or None to read the file): ``-`` is stdin."""
    if path == "-":
        return "<stdin>", sys.stdin.read()
    return path, None


def write_output(path: str, text: str) -> None:
    """``-``: stdout; else the file, atomically (never a partial file)."""
    if path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        atomic_write_text(path, text)
    except OSError as err:
        raise RnnkitError(f"--output {path}: cannot write: {err.strerror}") from None


def check_batch_size(value: int) -> None:
    if value < 1:
        raise RnnkitError(f"--batch-size: expected an integer >= 1, got {value}")
