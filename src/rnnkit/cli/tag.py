"""``rnnkit tag train|eval|predict``: sequence labelling (POS tagging, NER)."""

from __future__ import annotations

import argparse
import json

from rnnkit.cli import _labelling as common

EXAMPLES = """examples:
  rnnkit tag train --train en-ud-train.conllu --dev en-ud-dev.conllu --out runs/pos
  rnnkit tag train --train eng.train --dev eng.testa --tag-column 4 --out runs/ner --max-epochs 20
  rnnkit tag train --config pos.toml --lr 3e-3          # flags override the TOML file
  rnnkit tag eval --checkpoint runs/pos --data en-ud-dev.conllu --json
  rnnkit tag predict --checkpoint runs/pos --input raw.conllu --output tagged.conllu
  printf 'The\\ncat\\nsat\\n' | rnnkit tag predict --checkpoint runs/pos --format conll

files: CoNLL-U (.conllu; --tag-column upos, xpos, or any column name or number) or
CoNLL-2003-style column files (word first, tag in the last column or --tag-column N, blank
line between sentences). predict fills the tag column and leaves every other column as it was.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "tag", help="sequence labelling: POS tagging, NER",
        description="Train, evaluate and run a bidirectional RNN tagger (word + character RNN).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    from rnnkit.tasks.tag import TagConfig

    train = actions.add_parser("train", help="train a tagger", epilog=EXAMPLES,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_train_arguments(train, TagConfig, "runs/tag")
    train.set_defaults(func=run_train)

    evaluate = actions.add_parser("eval", help="score a tagger on a gold file", epilog=EXAMPLES,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_checkpoint(evaluate)
    evaluate.add_argument("--data", required=True, help="gold-tagged file")
    _add_file_options(evaluate)
    evaluate.add_argument("--json", action="store_true", help="print the metrics as one JSON "
                          "object")
    common.add_unknown_labels(evaluate, "tag")
    evaluate.set_defaults(func=run_eval)

    predict = actions.add_parser("predict", help="tag a file", epilog=EXAMPLES,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_checkpoint(predict)
    predict.add_argument("--input", default="-", help="file to tag (default: - = stdin)")
    predict.add_argument("--output", default="-", help="where to write (default: - = stdout)")
    _add_file_options(predict)
    predict.set_defaults(func=run_predict)


def _add_file_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("conllu", "conll"),
                        help="file format (default: from the extension, else the training one)")
    parser.add_argument("--tag-column", help="tag column (default: the training one)")


def run_train(args: argparse.Namespace) -> int:
    from rnnkit.tasks import tag

    return common.run_train(tag, tag.TagConfig, args)


def _file_options(args: argparse.Namespace, data: dict, path: str) -> tuple[str, str | None]:
    """(format, tag column): the flags, else ``.conllu`` → CoNLL-U, else the training ones."""
    trained = data.get("format") or "conllu"
    fmt = args.format or ("conllu" if path.lower().endswith(".conllu") else trained)
    if args.tag_column is not None:
        return fmt, args.tag_column
    return fmt, data.get("tag_column") if fmt == trained else None


def run_eval(args: argparse.Namespace) -> int:
    from rnnkit.data.conll import read_tagged
    from rnnkit.tasks import tag

    common.check_batch_size(args.batch_size)
    model, vocabs, data = tag.load(args.checkpoint)
    fmt, column = _file_options(args, data, args.data)
    doc = read_tagged(args.data, fmt=fmt, tag_column=column)
    result = tag.evaluate_document(model, doc, vocabs, batch_size=args.batch_size,
                                   unknown_labels=args.unknown_labels)
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return 0
    print(f"{args.data}: {result['sentences']} sentences, {result['tokens']} tokens")
    print(f"token accuracy {100 * result['accuracy']:.2f} %")
    if "span_f1" in result:
        print(f"span precision {100 * result['span_precision']:.2f}  recall "
              f"{100 * result['span_recall']:.2f}  F1 {100 * result['span_f1']:.2f}")
    print(f"{'tag':>12} {'precision':>9} {'recall':>9} {'F1':>9} {'support':>8}")
    for name, s in result["per_tag"].items():
        print(f"{name:>12} {100 * s['precision']:9.2f} {100 * s['recall']:9.2f} "
              f"{100 * s['f1']:9.2f} {s['support']:8d}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from rnnkit.data.conll import read_tagged
    from rnnkit.tasks import tag

    common.check_batch_size(args.batch_size)
    model, vocabs, data = tag.load(args.checkpoint)
    name, text = common.read_input(args.input)
    fmt, column = _file_options(args, data, name)
    doc = read_tagged(name, fmt=fmt, tag_column=column, require_tags=False, text=text)
    output = tag.predict_document(model, doc, vocabs, None, args.batch_size)
    common.write_output(args.output, output)
    return 0
