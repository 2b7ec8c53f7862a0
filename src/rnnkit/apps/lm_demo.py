"""``rnnkit demo``: a character LSTM learns to write Python from Python's own standard library.

The corpus is present on every machine with Python: the ``*.py`` files of the installed standard
library (``sysconfig.get_paths()["stdlib"]``), without tests and third-party packages, up to a
size the time budget can use. Samples are printed as the model learns; the run ends with a
longer sample from the best checkpoint. Everything else is ``rnnkit lm train``
(:mod:`rnnkit.apps.lm`).
"""

from __future__ import annotations

import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

from rnnkit.apps import runner
from rnnkit.apps.lm import LM, LMModel, LMOptions
from rnnkit.errors import RnnkitError
from rnnkit.tasks.lm_generate import SampleConfig, sample_text
from rnnkit.train import Callback, TrainConfig
from rnnkit.train.config import option

__all__ = ["DemoConfig", "EXAMPLES", "run_demo", "stdlib_files"]

DEMO_MARKER = "DEMO"  # in a run directory: the run is a demo's, which the next demo replaces
SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idlelib", "turtledemo",
             "lib2to3", "__pycache__", "ensurepip", "pydoc_data", "encodings"}


EXAMPLES = """\
  rnnkit demo                      about 3 minutes: learn Python from the standard library
  rnnkit demo --minutes 10         train longer, write better code
  rnnkit demo --minutes 0.2 --out /tmp/demo
afterwards:
  rnnkit lm generate --checkpoint runs/demo --prime "class " --max-tokens 300
"""


@dataclass
class DemoConfig:
    """Options of ``rnnkit demo`` (``rnnkit lm demo``)."""

    minutes: float = option(3.0, "time budget of the whole run, data preparation and final "
                                 "sample included")
    out: str = option("runs/demo", "run directory")
    device: str = option("auto", "auto, cpu or cuda")
    seed: int = option(0, "random seed", bounds="[0, 18446744073709551615]")
    # sequential small matrix products: one thread is fastest on a small CPU
    threads: int = option(1, "CPU threads (1 is fastest for this small model; 0: torch's "
                             "default)", bounds="[0, inf)")
    progress: bool = option(True, "show a progress bar")

    def __post_init__(self) -> None:
        if not self.minutes > 0:
            raise RnnkitError(f"--minutes: must be > 0, got {self.minutes}")


def stdlib_files(max_bytes: int) -> list[Path]:
    """Standard-library ``*.py`` files (sorted, tests and packages skipped) up to ``max_bytes``."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files, total = [], 0
    for path in sorted(root.rglob("*.py")):
        if SKIP_DIRS.intersection(path.relative_to(root).parts[:-1]):
            continue
        size = path.stat().st_size
        if size > max_bytes // 4:
            continue
        files.append(path)
        total += size
        if total >= max_bytes:
            break
    if not files:
        raise RnnkitError(f"{root}: no standard-library *.py files found for the demo")
    return files


class PrintSamples(Callback):
    """After each evaluation, print a short sample so the learning shows."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_eval(self, trainer, metrics) -> None:
        tokenizer = trainer.task.tokenizer
        config = SampleConfig(max_tokens=160, temperature=0.7, seed=self.seed)
        text = "".join(sample_text(trainer.model, tokenizer, "def ", config))
        trainer.write(f"--- sample at step {trainer.step} ---\n{text}\n---")


def demo_configs(config: DemoConfig, train_minutes: float) -> tuple[LMOptions, TrainConfig]:
    """The model, data and training options of the demo."""
    task = LMOptions(
        train="", errors="replace", tokenizer="char", bptt=64, batch_size=32,
        max_valid_tokens=16384,
        model=LMModel(cell="lstm", embedding_size=64, hidden_size=256, num_layers=1, dropout=0.0),
    )
    train = TrainConfig(
        lr=4e-3, weight_decay=0.01, schedule="cosine", warmup_steps=20, clip_norm=1.0,
        max_epochs=None, max_minutes=train_minutes, eval_every=0,
        eval_every_minutes=max(train_minutes / 5, 0.05), seed=config.seed,
        device=config.device, threads=config.threads, progress=config.progress,
        log_every=10, diagnostics_every=50,
    )
    return task, train


def write_report(checkpoint: Path, files: list[Path]) -> Path:
    """``rnnkit inspect``'s HTML report of ``checkpoint`` on the start of a corpus file."""
    from rnnkit.diagnostics.inspect import InspectConfig

    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")[:400]
        if len(text.strip()) >= 100:
            return runner.inspect(InspectConfig(str(checkpoint), text, source=str(path)))
    return runner.inspect(InspectConfig(str(checkpoint), "def main():\n    return 0\n"))


def run_demo(config: DemoConfig) -> int:
    """Train, print samples while learning, print a final sample. Returns an exit code."""
    started = time.monotonic()
    total = config.minutes * 60
    # read no more text than the budget can use twice over: 30,000 characters per second of
    # budget is at least twice the demo's training speed (docs/benchmarks.md, the demo)
    files = stdlib_files(max_bytes=int(min(max(total * 30_000, 200_000), 20_000_000)))
    task, train = demo_configs(config, train_minutes=0.8 * total / 60)
    # every tenth file is validation: spread over the library, unlike a tail of sorted files
    task.train = ",".join(str(f) for i, f in enumerate(files) if i % 10 != 5)
    task.valid = ",".join(str(f) for f in files[5::10]) or None
    print(f"rnnkit demo: a character LSTM learns Python from {len(files)} files of "
          f"{Path(files[0]).parent} ({config.minutes:g} min budget)", flush=True)
    train.max_minutes = max(0.8 * total - (time.monotonic() - started), 1.0) / 60
    # an earlier demo run in --out is replaced; any other run there is refused, never lost
    marker = Path(config.out) / DEMO_MARKER
    result = runner.train(LM(), task, train, config.out, callbacks=[PrintSamples(config.seed)],
                          overwrite=marker.exists())
    marker.write_text("written by rnnkit demo: the next rnnkit demo may replace this run\n")
    loaded = runner.load("lm", result.best_dir or result.last_dir, config.device)
    model, tokenizer = loaded.model, loaded.tokenizer
    print(f"\nbest validation loss {result.best_metric:.3f} nats/char after {result.steps} "
          f"steps. A sample from {result.best_dir or result.last_dir}:\n", flush=True)
    sample = SampleConfig(max_tokens=500, temperature=0.7, seed=config.seed)
    for piece in sample_text(model, tokenizer, "def ", sample):
        sys.stdout.write(piece)
        sys.stdout.flush()
    print(f"\n\ncheckpoint: {result.best_dir or result.last_dir}")
    if result.plot:
        print(f"loss curves: {result.plot}")
    report = write_report(result.best_dir or result.last_dir, files)
    print(f"report: {report}  (hidden units, predictions, gradient flow; open in a browser)")
    print(f"more: rnnkit lm generate --checkpoint {config.out} --prime 'class ' "
          f"--max-tokens 300  (took {time.monotonic() - started:.0f} s)")
    return 0
