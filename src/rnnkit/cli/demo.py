"""``rnnkit demo``: thin front end of :mod:`rnnkit.apps.lm_demo`."""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  rnnkit demo                      about 3 minutes: learn Python from the standard library
  rnnkit demo --minutes 10         train longer, write better code
  rnnkit demo --minutes 0.2 --out /tmp/demo
afterwards:
  rnnkit lm generate --checkpoint runs/demo --prime "class " --max-tokens 300
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="train a character LSTM on Python's own source, then write code",
        description="Train a character-level LSTM on the installed Python standard library, "
                    "print samples as it learns, save the checkpoint and loss plot, and end "
                    "with a sample.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--minutes", type=float, default=3.0,
                        help="time budget of the whole run (default: 3)")
    parser.add_argument("--out", default="runs/demo",
                        help="run directory (default: runs/demo)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads (default: 1, fastest for this small model)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="show a progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rnnkit.apps.lm_demo import DemoConfig, run_demo

    return run_demo(DemoConfig(args.minutes, args.out, args.device, args.seed, args.threads,
                               args.progress))
