"""``rnnkit chat``: the old name of ``rnnkit translate chat`` (same flags; parses and calls)."""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  rnnkit translate train --train dialog.tsv --out runs/chat     # utterance<TAB>reply lines
  rnnkit chat --checkpoint runs/chat                            # = rnnkit translate chat
  printf 'hello\\nhow are you ?\\n' | rnnkit chat --checkpoint runs/chat --beam-size 1

Each line typed gets one answer; an empty line is skipped; Ctrl-D (end of input) or Ctrl-C ends.
"""


def register(subparsers) -> None:
    from rnnkit.apps.translate import ChatOptions
    from rnnkit.train.config import add_dataclass_flags

    parser = subparsers.add_parser(
        "chat", help="interactive prompt answering each line (rnnkit translate chat)",
        description="Answer each line typed with an encoder-decoder trained on utterance -> "
                    "reply pairs (rnnkit translate train); the same as rnnkit translate chat.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, metavar="DIR",
                        help="a run directory (its best/ is used) or a checkpoint directory")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N "
                        "(default: auto)")
    add_dataclass_flags(parser, ChatOptions)
    parser.set_defaults(func=run_chat)


def run_chat(args: argparse.Namespace) -> int:
    from rnnkit.apps import registry, runner
    from rnnkit.apps.translate import ChatOptions
    from rnnkit.train.config import build_config

    options = build_config(ChatOptions, {}, args)
    registry.get("translate").chat(runner.load("translate", args.checkpoint, args.device),
                                   options)
    return 0
