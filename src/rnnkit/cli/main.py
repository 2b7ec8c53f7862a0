"""``rnnkit`` entry point: one sub-command per registered application, and a few tools.

Applications come from :mod:`rnnkit.apps.registry` and get their commands from
:mod:`rnnkit.cli.builder`. The tools (``demo``, ``inspect``, …) live in their own modules in this
package and expose ``register(subparsers) -> None``; every parser sets ``func`` to a callable
taking the parsed ``argparse.Namespace`` and returning an exit code.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

from rnnkit._version import __version__
from rnnkit.apps import registry
from rnnkit.cli.builder import add_application, add_top_level_verbs
from rnnkit.errors import RnnkitError

# Modules under rnnkit.cli that add a tool command (not an application's).
TOOLS = ("inspect", "export", "serve")

EPILOG = """examples:
  rnnkit demo                      train a character LSTM on Python's own source, then write code
  rnnkit lm train --train corpus.txt --out runs/lm
  rnnkit lm generate --checkpoint runs/lm/best --prime "def " --max-tokens 200
  rnnkit tag train --help          every application: train, eval, predict (and its own verbs)
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
    for name in registry.names():
        add_application(subparsers, registry.get(name))
    for name in registry.names():
        add_top_level_verbs(subparsers, registry.get(name))
    for name in TOOLS:
        importlib.import_module(f"rnnkit.cli.{name}").register(subparsers)
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
    except BrokenPipeError:
        # the reader went away (`rnnkit … | head`): stop quietly, as a Unix tool does on
        # SIGPIPE; stdout goes to /dev/null so that the interpreter's last flush cannot fail
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = f" while writing {err.filename}" if err.filename else ""
        print(f"rnnkit: error: the disk is full{where}; the last complete checkpoint is "
              "intact (writes are atomic): free space and --resume", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as err:
        if not _out_of_memory(err):
            raise
        print(f"rnnkit: error: out of memory ({_first_line(err)}); try a smaller --batch-size "
              "or model, or --device cpu; the last complete checkpoint is intact",
              file=sys.stderr)
        return 2


def _out_of_memory(err: BaseException) -> bool:
    text = str(err)
    return isinstance(err, MemoryError) or "out of memory" in text.lower() or \
        "can't allocate memory" in text


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


if __name__ == "__main__":
    sys.exit(main())
