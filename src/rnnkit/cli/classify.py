"""``rnnkit classify train|eval|predict``: sequence classification from the final hidden state."""

from __future__ import annotations

import argparse
import json

from rnnkit.cli import _labelling as common

EXAMPLES = """examples:
  rnnkit classify train --train stsa.binary.train --dev stsa.binary.dev --out runs/sst2
  rnnkit classify train --train reviews.tsv --text-column review --label-column stars \\
      --pooling attention --out runs/reviews
  rnnkit classify train --train data.jsonl --text-column body --label-column topic
  rnnkit classify train --train stsa.binary.train --dev stsa.binary.dev --chars \\
      --out runs/sst2-chars       (a character RNN per token, for words unseen in training)
  rnnkit classify eval --checkpoint runs/sst2 --data stsa.binary.dev --confusion-png cm.png
  rnnkit classify eval --checkpoint runs/sst2 --data stsa.binary.dev --json
  rnnkit classify eval --checkpoint runs/s1 --checkpoint runs/s2 --checkpoint runs/s3 \
      --data stsa.binary.dev          (an ensemble: the mean of the class probabilities)
  echo "a gripping , funny film" | rnnkit classify predict --checkpoint runs/sst2
  rnnkit classify predict --checkpoint runs/sst2 --input texts.txt --output-format jsonl

files: 'LABEL TEXT' lines (label-text, the SST-2 files), tsv/csv (columns by header name or
1-based number; --header/--no-header), jsonl (field names). predict reads one text a line
(or the training format with --format) and writes label, probability and text. eval and
predict take --checkpoint several times for an ensemble (same labels; each member keeps its
own vocabularies, word and, with --chars, character; the data options are the first
checkpoint's).
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "classify", help="sequence classification (sentiment, topic, acceptability)",
        description="Train, evaluate and run an RNN text classifier (final hidden state, or "
                    "mean/max/attention pooling).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    from rnnkit.tasks.classify import ClassifyConfig

    formatter = argparse.RawDescriptionHelpFormatter
    train = actions.add_parser("train", help="train a classifier", epilog=EXAMPLES,
                               formatter_class=formatter)
    common.add_train_arguments(train, ClassifyConfig, "runs/classify")
    train.set_defaults(func=run_train)

    evaluate = actions.add_parser("eval", help="score a classifier on a labelled file",
                                  epilog=EXAMPLES, formatter_class=formatter)
    _add_checkpoints(evaluate)
    evaluate.add_argument("--data", required=True, help="labelled file")
    _add_file_options(evaluate)
    evaluate.add_argument("--json", action="store_true", help="print the metrics as one JSON "
                          "object")
    evaluate.add_argument("--confusion-png", metavar="PATH", help="save the confusion matrix "
                          "as a PNG image")
    common.add_unknown_labels(evaluate, "label")
    evaluate.set_defaults(func=run_eval)

    predict = actions.add_parser("predict", help="label texts", epilog=EXAMPLES,
                                 formatter_class=formatter)
    _add_checkpoints(predict)
    predict.add_argument("--input", default="-", help="texts, one a line, or a file in "
                         "--format (default: - = stdin)")
    predict.add_argument("--output", default="-", help="where to write (default: - = stdout)")
    predict.add_argument("--output-format", choices=("tsv", "jsonl"), default="tsv",
                         help="tsv: label<TAB>probability<TAB>text; jsonl: with every label's "
                              "probability (default: tsv)")
    _add_file_options(predict)
    predict.set_defaults(func=run_predict)


def _add_checkpoints(parser: argparse.ArgumentParser) -> None:
    """``--checkpoint`` (repeatable: an ensemble) and ``--batch-size``."""
    parser.add_argument("--checkpoint", action="append", required=True, metavar="DIR",
                        help="a run directory (its best/ is used) or a checkpoint directory; "
                             "give it several times to average the class probabilities of "
                             "an ensemble")
    parser.add_argument("--batch-size", type=int, default=64, help="items per batch "
                        "(default: 64)")


def _add_file_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("label-text", "tsv", "csv", "jsonl"),
                        help="input format (eval default: the training options; predict "
                             "default: plain text, one a line)")
    parser.add_argument("--text-column", help="text column or field (default: the training one)")
    parser.add_argument("--label-column", help="label column or field (default: the training "
                                               "one)")
    parser.add_argument("--header", action=argparse.BooleanOptionalAction, default=None,
                        help="tsv/csv: the first row is a header (default: the training one)")


def _options(args: argparse.Namespace, data: dict) -> dict:
    options = dict(data)
    for key in ("format", "text_column", "label_column", "header"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    return options


def run_train(args: argparse.Namespace) -> int:
    from rnnkit.tasks import classify

    return common.run_train(classify, classify.ClassifyConfig, args)


def run_eval(args: argparse.Namespace) -> int:
    from rnnkit.tasks import classify
    from rnnkit.tasks import metrics as M

    common.check_batch_size(args.batch_size)
    members, labels, data = classify.load_ensemble(args.checkpoint)
    examples = classify.read(args.data, _options(args, data))
    probs = classify.ensemble_probs(members, examples, args.batch_size)
    result = classify.score_probs(probs, examples, labels, args.data,
                                  unknown_labels=args.unknown_labels)
    if args.confusion_png:
        M.plot_confusion(result["confusion"], result["labels"], args.confusion_png,
                         title=f"{args.data}: accuracy {100 * result['accuracy']:.2f} %")
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return 0
    members_note = f" (ensemble of {len(members)})" if len(members) > 1 else ""
    print(f"{args.data}: {result['examples']} examples{members_note}")
    print(f"accuracy {100 * result['accuracy']:.2f} %   macro-F1 {100 * result['macro_f1']:.2f}")
    print(f"{'label':>12} {'precision':>9} {'recall':>9} {'F1':>9} {'support':>8}")
    for name, s in result["per_label"].items():
        print(f"{name:>12} {100 * s['precision']:9.2f} {100 * s['recall']:9.2f} "
              f"{100 * s['f1']:9.2f} {s['support']:8d}")
    print("confusion matrix (rows: gold, columns: predicted)")
    print(M.format_confusion(result["confusion"], result["labels"]))
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from rnnkit.tasks import classify

    common.check_batch_size(args.batch_size)
    members, labels, data = classify.load_ensemble(args.checkpoint)
    name, text = common.read_input(args.input)
    options = _options(args, data)
    # Without --format: plain text, one a line. With --format label-text, the labels present
    # in the file are read past (and ignored); tsv/csv/jsonl read only the text column.
    options["format"] = args.format or "label-text"
    examples = classify.read(name, options, require_labels=args.format == "label-text",
                             text=text)
    probs = classify.ensemble_probs(members, examples, args.batch_size)
    common.write_output(args.output,
                        classify.format_predictions(examples, probs, labels, args.output_format))
    return 0
