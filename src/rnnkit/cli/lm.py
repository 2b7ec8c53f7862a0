"""``rnnkit lm train | eval | generate``: thin front end of :mod:`rnnkit.tasks.lm`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from rnnkit.train import TrainConfig
from rnnkit.train.config import add_dataclass_flags, build_config, check_unknown_keys, load_toml
from rnnkit.train.distributed import finish_distributed

TRAIN_EXAMPLES = """examples:
  rnnkit lm train --data input.txt --out runs/shakespeare
  rnnkit lm train --data corpus/ --glob "*.md" --valid valid.txt --out runs/md \\
      --tokenizer bpe --vocab-size 4000 --max-minutes 30
  rnnkit lm train --config run.toml --lr 1e-3          # flags override the TOML file
  rnnkit lm train --resume runs/shakespeare            # the run's options and directory
  rnnkit lm train --resume runs/shakespeare --max-minutes 30   # longer than first planned
  torchrun --nproc-per-node 2 -m rnnkit lm train --data input.txt --out runs/ddp

run.toml holds the same options, with underscores:
  data = "input.txt"
  out = "runs/shakespeare"
  hidden_size = 512
  [train]
  lr = 2e-3
  max_minutes = 15
"""

EVAL_EXAMPLES = """examples:
  rnnkit lm eval --checkpoint runs/shakespeare --data test.txt
  rnnkit lm eval --checkpoint runs/shakespeare/last --data test.txt --json
"""

GENERATE_EXAMPLES = """examples:
  rnnkit lm generate --checkpoint runs/shakespeare --prime "ROMEO:" --max-tokens 300
  rnnkit lm generate --checkpoint runs/demo --prime "def " --top-p 0.9 --seed 1 --num-samples 3
  rnnkit lm generate --checkpoint runs/demo --greedy
"""


@dataclass
class RunOptions:
    """Where a training run writes, and what it resumes."""

    out: str = field(default="", metadata={"help": "run directory (checkpoints, metrics, plot)"})
    resume: str | None = field(default=None, metadata={
        "help": "continue exactly from this run directory or its last/ checkpoint"})


@dataclass
class EvalOptions:
    """Options of ``rnnkit lm eval``."""

    checkpoint: str = field(default="", metadata={"help": "checkpoint or run directory"})
    data: str = field(default="", metadata={"help": "text to evaluate on (file, dir, glob)"})
    glob: str = field(default="*.txt", metadata={"help": "file pattern for directories"})
    errors: str = field(default="strict", metadata={"help": "invalid UTF-8 handling",
                                                    "choices": ("strict", "replace")})
    batch_size: int = field(default=32, metadata={"help": "parallel streams"})
    bptt: int | None = field(default=None, metadata={"help": "chunk length (default: training's)"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda"})
    json: bool = field(default=False, metadata={"help": "print the metrics as one JSON object"})


@dataclass
class GenerateOptions:
    """Options of ``rnnkit lm generate``."""

    checkpoint: str = field(default="", metadata={"help": "checkpoint or run directory"})
    prime: str = field(default="", metadata={"help": "text to start from"})
    max_tokens: int = field(default=200, metadata={"help": "tokens to sample"})
    temperature: float = field(default=0.8, metadata={"help": "sampling temperature (0: greedy)"})
    top_k: int = field(default=0, metadata={"help": "sample among the k likeliest (0: all)"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling mass (1: off)"})
    greedy: bool = field(default=False, metadata={"help": "always take the likeliest token"})
    seed: int | None = field(default=None, metadata={"help": "seed for reproducible samples"})
    num_samples: int = field(default=1, metadata={"help": "how many samples"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda"})


def _subparser(sub, name: str, help_text: str, examples: str) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=help_text, epilog=examples,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", metavar="TOML", help="read options from this TOML file")
    return parser


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "lm", help="language models: train, evaluate, generate text",
        description="Recurrent language models on your text.",
        epilog=TRAIN_EXAMPLES + "\n" + GENERATE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="lm_command", metavar="{train,eval,generate}")
    parser.set_defaults(func=lambda args: parser.print_help() or 0)
    from rnnkit.tasks.lm import LMTaskConfig

    train = _subparser(sub, "train", "train a language model", TRAIN_EXAMPLES)
    add_dataclass_flags(train.add_argument_group("run"), RunOptions)
    add_dataclass_flags(train.add_argument_group("data and model"), LMTaskConfig)
    add_dataclass_flags(train.add_argument_group("training"), TrainConfig)
    train.set_defaults(func=run_train)
    evaluate = _subparser(sub, "eval", "perplexity and bits per character on a text",
                          EVAL_EXAMPLES)
    add_dataclass_flags(evaluate, EvalOptions)
    evaluate.set_defaults(func=run_eval)
    generate = _subparser(sub, "generate", "sample text from a checkpoint", GENERATE_EXAMPLES)
    add_dataclass_flags(generate, GenerateOptions)
    generate.set_defaults(func=run_generate)


def _require(value: str, flag: str) -> None:
    from rnnkit.errors import RnnkitError

    if not value:
        raise RnnkitError(f"{flag}: required")


def run_train(args: argparse.Namespace) -> int:
    from rnnkit.tasks.lm import LMTaskConfig, saved_options, train_lm

    values = load_toml(args.config)
    check_unknown_keys(values, RunOptions, LMTaskConfig, TrainConfig)
    run = build_config(RunOptions, values, args)
    if run.resume:  # the run's own options, under the TOML file and the flags
        values = {**saved_options(run.resume), **values}
    config = build_config(LMTaskConfig, values, args)
    train_config = build_config(TrainConfig, values, args)
    if not run.out and run.resume:  # continue in the run directory being resumed
        resumed = Path(run.resume)
        run.out = str(resumed.parent if resumed.name in ("last", "best") else resumed)
    _require(run.out, "--out")
    try:
        result = train_lm(config, train_config, run.out, resume=run.resume)
    except BaseException:
        finish_distributed(wait=False)
        raise
    finish_distributed()
    if os.environ.get("RANK", "0") != "0":
        return 0  # under torchrun, the first process reports
    best = f"{result.best_metric:.4f}" if result.best_metric is not None else "n/a"
    print(f"stopped ({result.stop_reason}) after {result.steps} steps; best valid_loss {best} "
          f"at step {result.best_step}; checkpoints in {result.out_dir}")
    if result.plot:
        print(f"loss curves: {result.plot}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from rnnkit.tasks.lm import evaluate_lm

    values = load_toml(args.config)
    check_unknown_keys(values, EvalOptions)
    options = build_config(EvalOptions, values, args)
    _require(options.checkpoint, "--checkpoint")
    _require(options.data, "--data")
    metrics = evaluate_lm(options.checkpoint, options.data, glob=options.glob,
                          errors=options.errors, batch_size=options.batch_size,
                          bptt=options.bptt, device=options.device)
    if options.json:
        print(json.dumps(metrics))
    else:
        print(f"loss {metrics['loss']:.4f} nats/token  perplexity {metrics['perplexity']:.3f}  "
              f"bits/char {metrics['bpc']:.4f}  ({metrics['tokens']} tokens, "
              f"{metrics['chars']} chars)")
    return 0


def run_generate(args: argparse.Namespace) -> int:
    from rnnkit.errors import RnnkitError
    from rnnkit.tasks.lm import load_lm
    from rnnkit.tasks.lm_generate import SampleConfig, sample_text

    values = load_toml(args.config)
    check_unknown_keys(values, GenerateOptions)
    options = build_config(GenerateOptions, values, args)
    _require(options.checkpoint, "--checkpoint")
    if options.num_samples <= 0:
        raise RnnkitError(f"--num-samples: must be > 0, got {options.num_samples}")
    sampling = SampleConfig(options.max_tokens, options.temperature, options.top_k,
                            options.top_p, options.greedy, options.seed)
    model, tokenizer, _ = load_lm(options.checkpoint, options.device)
    for index in range(options.num_samples):
        if options.num_samples > 1:
            print(f"--- sample {index + 1} ---", flush=True)
        if options.seed is not None:
            sampling.seed = options.seed + index
        for piece in sample_text(model, tokenizer, options.prime, sampling):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
    return 0
