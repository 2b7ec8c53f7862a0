"""``rnnkit translate train|eval|run``: encoder–decoder translation (thin front end of
:mod:`rnnkit.tasks.translate`)."""

from __future__ import annotations

import argparse
import json

from rnnkit.cli import _labelling as common

EXAMPLES = """examples:
  rnnkit translate train --train train.de.gz --train-tgt train.en.gz \\
      --valid val.de.gz --valid-tgt val.en.gz --out runs/de-en --max-minutes 20
  rnnkit translate train --train pairs.tsv --attention dot --tokenizer word --out runs/tsv
  rnnkit translate train --config de-en.toml --lr 1e-3      # flags override the TOML file
  rnnkit translate eval --checkpoint runs/de-en --src val.de.gz --ref val.en.gz --json
  rnnkit translate eval --checkpoint runs/de-en --data pairs.tsv --beam-size 1   # greedy
  echo "Ein Hund läuft im Schnee." | rnnkit translate run --checkpoint runs/de-en
  rnnkit translate run --checkpoint runs/de-en --input test.de --output test.en
  rnnkit translate run --checkpoint runs/de-en --input few.de --attention-out attention.jsonl

data: two line-aligned files (plain UTF-8 or .gz), or one file of source<TAB>target lines.
The model: a bidirectional RNN encoder whose final state starts the RNN decoder, with
additive (Bahdanau) or dot (Luong) attention over the encoder states, or none.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "translate", help="encoder-decoder translation with attention and beam search",
        description="Train, evaluate and run an RNN encoder-decoder (sentence -> sentence).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    from rnnkit.tasks.translate import TranslateConfig

    def add(name: str, text: str) -> argparse.ArgumentParser:
        return actions.add_parser(name, help=text, description=text, epilog=EXAMPLES,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)

    train = add("train", "train an encoder-decoder")
    common.add_train_arguments(train, TranslateConfig, "runs/translate")
    train.set_defaults(func=run_train)

    evaluate = add("eval", "BLEU, chrF and perplexity on reference translations")
    common.add_checkpoint(evaluate)
    evaluate.add_argument("--src", help="source file (plain or .gz), with --ref")
    evaluate.add_argument("--ref", help="reference translations, line-aligned with --src")
    evaluate.add_argument("--data", help="or one source<TAB>reference file")
    evaluate.add_argument("--output", help="also write the translations to this file")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as one JSON "
                          "object")
    add_decoding_arguments(evaluate)
    evaluate.set_defaults(func=run_eval)

    run = add("run", "translate stdin or a file, one output line per input line")
    common.add_checkpoint(run)
    run.add_argument("--input", default="-", help="text to translate (default: - = stdin)")
    run.add_argument("--output", default="-", help="where to write (default: - = stdout)")
    run.add_argument("--attention-out", metavar="JSONL", help="also write, per line, the "
                     "source and output tokens and the attention weights as one JSON object")
    add_decoding_arguments(run)
    run.set_defaults(func=run_run)


def add_decoding_arguments(parser: argparse.ArgumentParser) -> None:
    """Beam size, length penalty, length limit and device (defaults: the checkpoint's)."""
    parser.add_argument("--beam-size", type=int, help="beam size; 1 = greedy (default: the "
                        "training config's, 5)")
    parser.add_argument("--alpha", type=float, help="length penalty exponent ((5+n)/6)^alpha")
    parser.add_argument("--max-len-a", type=float, help="output at most a*source+b tokens: a")
    parser.add_argument("--max-len-b", type=int, help="output at most a*source+b tokens: b")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")


def decoding(args: argparse.Namespace, translator) -> dict:
    from rnnkit.errors import RnnkitError

    options = translator.decode_options(args.beam_size, args.alpha, args.max_len_a,
                                        args.max_len_b)
    if options["beam_size"] < 1:
        raise RnnkitError(f"--beam-size: expected an integer >= 1, got {options['beam_size']}")
    return options


def run_train(args: argparse.Namespace) -> int:
    from rnnkit.tasks import translate

    return common.run_train(translate, translate.TranslateConfig, args)


def run_eval(args: argparse.Namespace) -> int:
    from rnnkit.data.parallel import read_parallel
    from rnnkit.errors import RnnkitError
    from rnnkit.tasks import translate

    if bool(args.data) == bool(args.src or args.ref) or bool(args.src) != bool(args.ref):
        raise RnnkitError("give either --src and --ref (two line-aligned files) or --data "
                          "(one source<TAB>reference file)")
    common.check_batch_size(args.batch_size)
    translator = translate.load(args.checkpoint, args.device)
    options = decoding(args, translator)
    corpus = read_parallel(args.data or args.src, None if args.data else args.ref,
                           lowercase=translator.data.get("lowercase", False),
                           normalize=translator.data.get("normalize", "NFC"))
    result, hypotheses = translate.evaluate_pairs(
        translator, corpus.sources, corpus.targets, batch_size=args.batch_size,
        where=lambda i: f"{args.data or args.src}: pair {i + 1}", **options)
    if args.output:
        common.write_output(args.output, "".join(f"{h}\n" for h in hypotheses))
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return 0
    search = "greedy" if options["beam_size"] == 1 else f"beam {options['beam_size']}"
    print(f"{corpus.name}: {result['sentences']} sentences, {search}, "
          f"{result['seconds']:.1f} s")
    print(f"BLEU {result['bleu']:.2f}  (lower-cased {result['bleu_lc']:.2f})  "
          f"chrF {result['chrf']:.2f}  perplexity {result['perplexity']:.2f}")
    return 0


def run_run(args: argparse.Namespace) -> int:
    from rnnkit.data.parallel import read_lines
    from rnnkit.tasks import translate

    common.check_batch_size(args.batch_size)
    translator = translate.load(args.checkpoint, args.device)
    options = decoding(args, translator)
    name, text = common.read_input(args.input)
    lines = text.splitlines() if text is not None else read_lines(name)
    alignments = [] if args.attention_out else None
    outputs = translate.translate(translator, lines, batch_size=args.batch_size,
                                  where=lambda i: f"{name}:{i + 1}", alignments=alignments,
                                  **options)
    common.write_output(args.output, "".join(f"{line}\n" for line in outputs))
    if alignments is not None:
        common.write_output(args.attention_out, "".join(
            json.dumps(item, ensure_ascii=False) + "\n" for item in alignments))
    return 0
