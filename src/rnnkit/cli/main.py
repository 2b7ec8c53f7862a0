"""``rnnkit`` entry point: one sub-command per application.

Each sub-command lives in its own module in this package and exposes
``register(subparsers) -> None``; the parser it adds sets ``func`` to a callable taking the parsed
``argparse.Namespace`` and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from rnnkit._version import __version__
from rnnkit.errors import RnnkitError

# Modules under rnnkit.cli that add a sub-command. A module missing from an install is skipped.
SUBCOMMANDS = ("demo", "lm", "tag", "classify", "translate", "chat", "inspect")

EPILOG = """examples:
  rnnkit demo                      train a character LSTM on Python's own source, then write code
  rnnkit lm train --data corpus.txt --out runs/lm
  rnnkit lm generate --checkpoint runs/lm/best --prime "def " --max-tokens 200
  rnnkit --version
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rnnkit",
        description="Recurrent neural networks: train, evaluate and run RNN applications.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"rnnkit {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"rnnkit.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"rnnkit.cli.{name}":
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except RnnkitError as err:
        print(f"rnnkit: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rnnkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
