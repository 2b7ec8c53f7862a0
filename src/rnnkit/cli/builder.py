"""``rnnkit APP train|eval|predict|VERB``, generated from an application's contract.

The command line parses and calls :mod:`rnnkit.apps.runner`; it holds no application logic. Every
application gets the same run options (``--config``, ``--out``, ``--resume``), the same
checkpoint options (``--checkpoint``, ``--device``), ``--json`` on ``eval`` and ``--output`` on
``predict`` and the verbs, beside the flags of its own option dataclasses.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from rnnkit._io import write_output
from rnnkit._options import section_leaf_names
from rnnkit.apps import runner
from rnnkit.apps.base import Application, Verb
from rnnkit.errors import RnnkitError
from rnnkit.train import TrainConfig
from rnnkit.train.config import add_dataclass_flags, build_config, check_unknown_keys, load_toml

__all__ = ["add_application", "add_top_level_verbs", "add_tool", "add_tool_flag", "run_train",
           "write_pieces"]

_RAW = argparse.RawDescriptionHelpFormatter


def add_application(subparsers, app: Application) -> None:
    """``rnnkit APP`` with its ``train``, ``eval``, ``predict`` and own verbs."""
    examples = _examples(app.examples)
    parser = subparsers.add_parser(app.name, help=_plain(app.summary),
                                   description=app.description or app.summary,
                                   epilog=examples, formatter_class=_RAW)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    parser.set_defaults(func=lambda args: parser.print_help() or 0)

    train = actions.add_parser("train", help=_plain(f"train a model ({app.summary})"),
                               epilog=examples, formatter_class=_RAW)
    _add_common(train)
    train.add_argument("--out", help=f"run directory (default: runs/{app.name}, or the run being "
                                     "resumed)")
    train.add_argument("--resume", metavar="DIR", help="continue the run in DIR exactly (its "
                       "last/), with its saved options; flags and --config override them (not "
                       "the model's)")
    train.add_argument("--overwrite", action="store_true", help="replace the run already in "
                       "--out (default: refuse to touch it)")
    add_dataclass_flags(train.add_argument_group("data and model"), app.Config)
    add_dataclass_flags(train.add_argument_group("training"), TrainConfig)
    train.set_defaults(func=lambda args: run_train(app, args))

    evaluate = actions.add_parser("eval", help="metrics of a trained model", epilog=examples,
                                  formatter_class=_RAW)
    _add_loaded(evaluate, app.EvalOptions)
    evaluate.add_argument("--json", action="store_true", help="print the metrics as one JSON "
                          "object")
    evaluate.set_defaults(func=lambda args: _run_eval(app, args))

    predict = actions.add_parser("predict", help="run a trained model on new input",
                                 epilog=examples, formatter_class=_RAW)
    _add_loaded(predict, app.PredictOptions)
    _add_output(predict)
    predict.set_defaults(func=lambda args: _run_verb(app, args, app.PredictOptions, app.predict))

    for verb in app.verbs():
        _add_verb(actions, app, verb)


def add_tool(subparsers, name: str, summary: str, description: str, examples: str, *,
             several: bool = False) -> argparse.ArgumentParser:
    """The parser of a tool command (``rnnkit inspect|export|serve``) with its required
    ``--checkpoint`` (``several``: repeatable); the tool adds its own flags and ``func``."""
    parser = subparsers.add_parser(name, help=_plain(summary), description=description,
                                   epilog=examples, formatter_class=_RAW)
    parser.add_argument("--checkpoint", required=True, metavar="DIR",
                        action="append" if several else "store",
                        help="a run directory (its best/ is used) or a checkpoint directory"
                             + ("; repeat for several models" if several else ""))
    return parser


def add_tool_flag(parser: argparse.ArgumentParser, name: str, default: int | float | str,
                  help_text: str, **kwargs) -> None:
    """A tool's ``name`` flag taking one value of ``default``'s type, its help ending in
    ``(default: …)`` (a float shown as ``%g``: 30.0 as 30)."""
    shown = f"{default:g}" if isinstance(default, float) else default
    parser.add_argument(name, type=type(default), default=default,
                        help=_plain(f"{help_text} (default: {shown})"), **kwargs)


def _plain(text: str) -> str:
    """``text`` as an argparse help string (which argparse %-formats: "5 %" would break it)."""
    return text.replace("%", "%%")


def _examples(text: str) -> str:
    return "examples:\n" + text.strip("\n") + "\n" if text.strip() else ""


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="TOML", help="options from a TOML file (keys are the "
                        "flag names with underscores; [tables] only group); flags override it")


def _add_loaded(parser: argparse.ArgumentParser, options: type) -> None:
    _add_common(parser)
    parser.add_argument("--checkpoint", metavar="DIR", action="append",
                        help="a run directory (its best/) or a checkpoint directory (required; "
                             "several times for an ensemble, where the application has one)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N "
                        "(default: auto)")
    add_dataclass_flags(parser.add_argument_group("options"), options)


def _add_output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", default="-", help="where to write (default: - = stdout, "
                        "streamed; a file is written whole or not at all)")


def add_top_level_verbs(subparsers, app: Application) -> None:
    """``rnnkit VERB`` for each of ``app``'s verbs marked ``top_level``."""
    for verb in app.verbs():
        if verb.top_level:
            _add_verb(subparsers, app, verb, f" (the same as rnnkit {app.name} {verb.name})")


def _add_verb(actions, app: Application, verb: Verb, note: str = "") -> None:
    parser = actions.add_parser(verb.name, help=_plain(verb.help + note),
                                description=verb.help + note,
                                epilog=_examples(verb.examples or app.examples),
                                formatter_class=_RAW)
    if verb.checkpoint:
        _add_loaded(parser, verb.Options)
    else:
        _add_common(parser)
        add_dataclass_flags(parser.add_argument_group("options"), verb.Options)
    if verb.output and "output" not in {f.name for f in dataclasses.fields(verb.Options)}:
        _add_output(parser)  # (a verb whose options hold their own --output writes it itself)
    parser.set_defaults(func=lambda args: _run_verb(app, args, verb.Options, verb.run,
                                                    verb.checkpoint))


# ---------------------------------------------------------------------- actions


def run_train(app: Application, args: argparse.Namespace) -> int:
    """``rnnkit APP train``: defaults ← saved run (``--resume``) ← TOML ← flags."""
    values = load_toml(args.config)
    check_unknown_keys(values, app.Config, TrainConfig, extra=("out", "resume"))
    resume = args.resume or values.get("resume")
    if resume:
        saved = runner.saved_options(app, resume)
        _check_fixed_on_resume(app, saved, values, args)
        values = {**saved, **values}
    config = build_config(app.Config, values, args)
    train_config = build_config(TrainConfig, values, args)
    out = args.out or values.get("out") or (str(runner.run_dir_of(resume)) if resume
                                            else f"runs/{app.name}")
    result = runner.train(app, config, train_config, out, resume=resume,
                          overwrite=args.overwrite)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, the first process reports
        print(runner.summary(result))
    return 0


def _check_fixed_on_resume(app: Application, saved: dict, values: dict,
                           args: argparse.Namespace) -> None:
    """The model's options (its ``section``s) cannot change when resuming: refuse a flag or
    TOML key that asks for another value than the run's."""
    given = {**values, **vars(args)}
    for name in section_leaf_names(app.Config):
        if name in given and name in saved and given[name] != saved[name]:
            raise RnnkitError(f"--{name.replace('_', '-')}: cannot change when resuming (the "
                              f"run has {saved[name]!r}, got {given[name]!r}); start a new run "
                              "with another --out instead")


def _loaded(app: Application, args: argparse.Namespace, options_cls: type):
    values = load_toml(args.config)
    check_unknown_keys(values, options_cls, extra=("checkpoint", "device"))
    paths = args.checkpoint or ([values["checkpoint"]] if values.get("checkpoint") else [])
    if not paths:
        raise RnnkitError("--checkpoint: required (a run directory or a checkpoint directory)")
    options = build_config(options_cls, values, args)
    opened = [runner.open_checkpoint(app, path, args.device) for path in paths]
    if len(opened) == 1:
        return app.load(opened[0]), options
    return app.load_ensemble(opened), options


def _run_eval(app: Application, args: argparse.Namespace) -> int:
    loaded, options = _loaded(app, args, app.EvalOptions)
    metrics = app.evaluate(loaded, options)
    print(json.dumps(metrics, sort_keys=True) if args.json else app.format_metrics(metrics))
    return 0


def _run_verb(app: Application, args: argparse.Namespace, options_cls: type, run,
              checkpoint: bool = True) -> int:
    if checkpoint:
        loaded, options = _loaded(app, args, options_cls)
    else:
        values = load_toml(args.config)
        check_unknown_keys(values, options_cls)
        loaded, options = None, build_config(options_cls, values, args)
    pieces = run(loaded, options)
    if pieces is not None:  # options with their own output: the verb wrote the file itself
        own = "output" in {f.name for f in dataclasses.fields(options_cls)}
        write_pieces("-" if own else getattr(args, "output", "-"), pieces)
    return 0


def write_pieces(output: str, pieces) -> None:
    """Stream ``pieces`` to stdout (``-``), or write them to a file atomically: an error half way
    leaves no partial file."""
    if output == "-":
        for piece in pieces:
            sys.stdout.write(piece)
            sys.stdout.flush()
        return
    write_output("--output", output, "".join(pieces))
