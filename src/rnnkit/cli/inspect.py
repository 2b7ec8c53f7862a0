"""``rnnkit inspect``: thin front end of :mod:`rnnkit.diagnostics.inspect`."""

from __future__ import annotations

import argparse

from rnnkit.cli.builder import add_tool, add_tool_flag

EXAMPLES = """examples:
  rnnkit inspect --checkpoint runs/demo --text "for key, value in items.items():"
  rnnkit inspect --checkpoint runs/lm/best --file sample.txt --units 3,17,42 --out lm.html
  rnnkit inspect --checkpoint runs/pos --text "The cat sat on the mat ."
  rnnkit inspect --checkpoint runs/sst2 --text "a gripping , funny film" --top-k 3
  rnnkit inspect --checkpoint runs/forecast          # any application: the run's report

The report is one HTML file with everything inside (plots embedded, no scripts, nothing
fetched): open it in any browser, offline. Record the gradient flow during training with
--diagnostics-every N on any train command to also get the training-steps heatmap.
"""


def register(subparsers) -> None:
    parser = add_tool(
        subparsers, "inspect", "HTML report: hidden units over a text, predictions, gradient flow",
        "Write one self-contained HTML report of a checkpoint. For an application "
        "with a per-input view (language model, tagger, classifier) the model runs "
        "on --text or --file: the text coloured by the activation of hidden units "
        "of the top recurrent layer, the model's predictions at each position, the "
        "gradient flow through time on this text. Every report has the run's "
        "training curves, the gradient flow recorded during training and, for "
        "other applications, the recurrent weights' spectra.",
        EXAMPLES)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--text", help="the input text")
    source.add_argument("--file", metavar="PATH", help="read the input text from a UTF-8 file")
    parser.add_argument("--out", metavar="HTML",
                        help="report file (default: report.html in the run directory)")
    parser.add_argument("--units", metavar="I,J,...", type=_unit_list, default=[],
                        help="hidden units to show, 0-based indices into the top layer's output "
                             "(default: the --num-units that vary most over the input)")
    add_tool_flag(parser, "--num-units", 4, "how many units to pick without --units")
    add_tool_flag(parser, "--top-k", 5, "predictions shown per position")
    add_tool_flag(parser, "--max-symbols", 2000, "show at most this many input symbols")
    parser.set_defaults(func=run)


def _unit_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated unit indices like 3,17, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    from rnnkit.apps.runner import inspect
    from rnnkit.diagnostics.inspect import InspectConfig, read_input_text

    text = (args.text or "") if args.file is None else read_input_text(args.file)
    source = "--text" if args.file is None else f"--file {args.file}"
    config = InspectConfig(args.checkpoint, text, args.out, args.units, args.num_units,
                           args.top_k, args.max_symbols, source)
    path = inspect(config)
    print(f"report: {path}")
    return 0
