"""``rnnkit chat``: talk to an encoder–decoder trained on utterance → reply pairs."""

from __future__ import annotations

import argparse
import sys

EXAMPLES = """examples:
  rnnkit translate train --train dialog.tsv --out runs/chat     # utterance<TAB>reply lines
  rnnkit chat --checkpoint runs/chat
  printf 'hello\\nhow are you ?\\n' | rnnkit chat --checkpoint runs/chat --beam-size 1

Each line typed gets one answer; an empty line is skipped; Ctrl-D (end of input) or Ctrl-C ends.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "chat", help="interactive prompt answering each line (an encoder-decoder checkpoint)",
        description="Answer each line typed with an encoder-decoder trained on utterance -> "
                    "reply pairs (rnnkit translate train).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, metavar="DIR",
                        help="a run directory (its best/ is used) or a checkpoint directory")
    parser.add_argument("--prompt", default=None,
                        help="prompt shown before each line (default: '> ' on a terminal, "
                             "none when input is piped)")
    from rnnkit.cli.translate import add_decoding_arguments

    add_decoding_arguments(parser)
    parser.set_defaults(func=run_chat)


def run_chat(args: argparse.Namespace) -> int:
    from rnnkit.cli.translate import decoding
    from rnnkit.tasks import translate
    from rnnkit.tasks.chat import chat

    translator = translate.load(args.checkpoint, args.device)
    options = decoding(args, translator)
    prompt = args.prompt if args.prompt is not None else ("> " if sys.stdin.isatty() else "")

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    try:
        chat(translator, sys.stdin, write, prompt=prompt, **options)
    except KeyboardInterrupt:
        write("\n")
        return 0
    if prompt:
        write("\n")
    return 0
