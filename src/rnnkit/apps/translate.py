"""``rnnkit translate``: an RNN encoder–decoder with attention and beam search (translation, or any
sentence → sentence mapping; trained on utterance → reply pairs it is a chatbot: ``chat``).

The pieces (tokenizers as codecs, the Trainer's task, decoding, scoring) are in
:mod:`rnnkit.tasks.translate` and the conversation loop in :mod:`rnnkit.tasks.chat`; this file is
the application: its options, how it prepares data, builds and loads the model, and what
``eval``, ``predict`` (also called ``run``) and ``chat`` do.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from typing import Any

from rnnkit._io import read_input, write_output
from rnnkit.apps.base import Application, Checkpoint, PrepareContext, Verb
from rnnkit.apps.registry import register
from rnnkit.data.parallel import NORMALIZATIONS, read_lines, read_parallel
from rnnkit.errors import RnnkitError
from rnnkit.models._config import renamed
from rnnkit.models.seq2seq import Seq2Seq, Seq2SeqConfig, Seq2SeqOptions
from rnnkit.tasks import translate
from rnnkit.tasks.chat import chat
from rnnkit.tasks.translate import Codec, Translator
from rnnkit.train.checkpoint import saved_model
from rnnkit.train.config import option, section

__all__ = ["Translate", "TranslateConfig", "TranslateModel", "EvalOptions", "PredictOptions",
           "ChatOptions"]

EXAMPLES = """\
  rnnkit translate train --train train.de.gz --train-tgt train.en.gz \\
      --valid val.de.gz --valid-tgt val.en.gz --out runs/de-en --max-minutes 20
  rnnkit translate train --train pairs.tsv --attention dot --tokenizer word --out runs/tsv
  rnnkit translate train --config de-en.toml --lr 1e-3      # flags override the TOML file
  rnnkit translate eval --checkpoint runs/de-en --src val.de.gz --ref val.en.gz --json
  rnnkit translate eval --checkpoint runs/de-en --data pairs.tsv --beam-size 1   # greedy
  echo "Ein Hund läuft im Schnee." | rnnkit translate predict --checkpoint runs/de-en
  rnnkit translate predict --checkpoint runs/de-en --input test.de --output test.en
  rnnkit translate run --checkpoint runs/de-en --input few.de --attention-out attention.jsonl
  rnnkit translate chat --checkpoint runs/chat          # a model trained on utterance<TAB>reply

data: two line-aligned files (plain UTF-8 or .gz), or one file of source<TAB>target lines.
The model: a bidirectional RNN encoder whose final state starts the RNN decoder, with
additive (Bahdanau) or dot (Luong) attention over the encoder states, or none.
"run" is the old name of "predict" and does the same.
"""

CHAT_EXAMPLES = """\
  rnnkit translate train --train dialog.tsv --out runs/chat     # utterance<TAB>reply lines
  rnnkit translate chat --checkpoint runs/chat                  # also: rnnkit chat
  printf 'hello\\nhow are you ?\\n' | rnnkit translate chat --checkpoint runs/chat --beam-size 1

Each line typed gets one answer; an empty line is skipped; Ctrl-D (end of input) or Ctrl-C ends.
"""

TOKENIZERS = ("bpe", "word", "char")


TranslateModel = Seq2SeqOptions  # the model section, declared with the model


@dataclass
class TranslateConfig:
    """Data, training and default decoding options of ``rnnkit translate train``; the model
    options in ``model``."""

    train: str = option("", "training source file (plain or .gz), or a source<TAB>target file")
    train_tgt: str | None = option(None, "training target file, line-aligned with --train")
    valid: str | None = option(None, "validation source file or TSV (default: 500 held-out "
                                     "pairs)")
    valid_tgt: str | None = option(None, "validation target file, line-aligned with --valid")
    lowercase: bool = option(False, "lower-case both sides")
    normalize: str = option("NFC", "Unicode normalisation of both sides", NORMALIZATIONS)
    tokenizer: str = option("bpe", "token unit (of both sides unless --tgt-tokenizer)",
                            TOKENIZERS)
    tgt_tokenizer: str | None = option(None, "token unit of the target side (default: "
                                             "--tokenizer)", TOKENIZERS)
    vocab_size: int = option(8000, "bpe / word: vocabulary size per tokenizer")
    shared_vocab: bool = option(False, "one tokenizer trained on both sides")
    min_freq: int = option(1, "word / char: rarer tokens become <unk>")
    max_len: int = option(50, "drop training pairs with a side longer than this (tokens)")
    max_source_len: int = option(256, "longest source (tokens) the model accepts when run")
    model: Seq2SeqOptions = section(Seq2SeqOptions, "model")
    teacher_forcing: float = option(1.0, "probability of feeding the gold previous token")
    label_smoothing: float = option(0.0, "label smoothing of the training loss")
    batch_size: int = option(64, "sentence pairs per batch")
    max_tokens: int | None = option(None, "also cap a batch at this many padded source tokens")
    eval_bleu: int = option(500, "greedy BLEU on this many validation pairs at each evaluation "
                                 "(0: loss only; then the best checkpoint is the lowest loss)")
    beam_size: int = option(5, "default beam size of eval and predict (1: greedy)")
    alpha: float = option(0.6, "default length penalty exponent of beam search")
    max_len_a: float = option(1.5, "decode at most a·source length + b tokens: a")
    max_len_b: int = option(10, "decode at most a·source length + b tokens: b")
    init_embeddings: str | None = option(
        None, "word vectors (word2vec/GloVe text or word2vec binary) that start the rows of "
        "the words they hold, in the source and the target embedding (needs --tokenizer word; "
        "docs/transfer.md)")
    init_src_embeddings: str | None = option(None, "word vectors for the source embedding "
                                                   "only (instead of --init-embeddings)")
    init_tgt_embeddings: str | None = option(None, "word vectors for the target embedding "
                                                   "only (instead of --init-embeddings)")

    def __post_init__(self) -> None:
        for name in ("vocab_size", "min_freq", "max_len", "max_source_len", "batch_size",
                     "beam_size"):
            _at_least_one(name, getattr(self, name))
        for name in ("embedding_size", "hidden_size", "num_layers"):
            _at_least_one(name, getattr(self.model, name))
        if not 0.0 <= self.model.dropout < 1.0:
            raise ValueError(f"--dropout: expected a value in [0, 1), got {self.model.dropout}")
        if not 0.0 <= self.teacher_forcing <= 1.0:
            raise ValueError(f"--teacher-forcing: expected a value in [0, 1], "
                             f"got {self.teacher_forcing}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"--label-smoothing: expected a value in [0, 1), "
                             f"got {self.label_smoothing}")
        if self.shared_vocab and self.tgt_tokenizer not in (None, self.tokenizer):
            raise ValueError(f"--shared-vocab: needs one tokenizer for both sides, got "
                             f"--tokenizer {self.tokenizer} and --tgt-tokenizer "
                             f"{self.tgt_tokenizer}")
        if self.eval_bleu < 0:
            raise ValueError(f"--eval-bleu: expected an integer >= 0, got {self.eval_bleu}")

    def data_options(self) -> dict[str, Any]:
        """What the checkpoint keeps to read and decode new text the same way."""
        names = ("lowercase", "normalize", "max_len", "max_source_len", "beam_size", "alpha",
                 "max_len_a", "max_len_b", "tokenizer", "tgt_tokenizer", "shared_vocab")
        return {name: getattr(self, name) for name in names}


def _at_least_one(name: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"--{name.replace('_', '-')}: expected an integer >= 1, got {value}")


@dataclass
class Decoding:
    """Decoding options of ``eval``, ``predict`` and ``chat`` (default: the checkpoint's)."""

    beam_size: int | None = option(None, "beam size; 1 = greedy (default: the training "
                                         "config's, 5)")
    alpha: float | None = option(None, "length penalty exponent ((5+n)/6)^alpha (default: the "
                                       "training config's)")
    max_len_a: float | None = option(None, "output at most a*source+b tokens: a (default: the "
                                           "training config's)")
    max_len_b: int | None = option(None, "output at most a*source+b tokens: b (default: the "
                                         "training config's)")

    def __post_init__(self) -> None:
        if self.beam_size is not None:
            _at_least_one("beam_size", self.beam_size)

    def resolved(self, translator: Translator) -> dict[str, Any]:
        """The four options, the checkpoint's where not given."""
        return translator.decode_options(self.beam_size, self.alpha, self.max_len_a,
                                         self.max_len_b)


@dataclass
class EvalOptions(Decoding):
    src: str | None = option(None, "source file (plain or .gz), with --ref")
    ref: str | None = option(None, "reference translations, line-aligned with --src")
    data: str | None = option(None, "or one source<TAB>reference file")
    output: str | None = option(None, "also write the translations to this file (default: "
                                      "none)")
    batch_size: int = option(64, "sentences per batch")

    def __post_init__(self) -> None:
        if self.src or self.ref or self.data:  # none at all is reported by eval itself
            self.check_files()
        _at_least_one("batch_size", self.batch_size)
        super().__post_init__()

    def check_files(self) -> None:
        if bool(self.data) == bool(self.src or self.ref) or bool(self.src) != bool(self.ref):
            raise RnnkitError("give either --src and --ref (two line-aligned files) or --data "
                              "(one source<TAB>reference file)")


@dataclass
class PredictOptions(Decoding):
    input: str = option("-", "text to translate (- = stdin)")
    attention_out: str | None = option(None, "also write, per line, the source and output "
                                             "tokens and the attention weights as one JSON "
                                             "object to this file (JSONL; default: none)")
    batch_size: int = option(64, "sentences per batch")

    def __post_init__(self) -> None:
        _at_least_one("batch_size", self.batch_size)
        super().__post_init__()


@dataclass
class ChatOptions(Decoding):
    prompt: str = option("auto", "prompt shown before each line (default: auto = '> ' on a "
                                 "terminal, none when input is piped)")


@register("translate")
class Translate(Application):
    summary = "translation and chat: an encoder-decoder with attention and beam search"
    description = ("Train, evaluate and run an RNN encoder-decoder (sentence -> sentence); "
                   "talk to one trained on utterance -> reply pairs with chat.")
    examples = EXAMPLES
    Config = TranslateConfig
    EvalOptions = EvalOptions
    PredictOptions = PredictOptions
    word_embeddings = {"source": (translate.SRC_TOKENIZER, ("src_embedding.weight",)),
                       "target": (translate.TGT_TOKENIZER, ("tgt_embedding.weight",))}

    # ------------------------------------------------------------ training

    def prepare(self, config: TranslateConfig, context: PrepareContext):
        codecs = _codecs(context.resume) if context.resume is not None else None
        return translate.prepare_data(config, print, codecs)

    def build_model(self, config: TranslateConfig, data) -> Seq2Seq:
        model = Seq2Seq(_model_config(config, data[0]))
        _init_embeddings(model, config, data[0])
        return model

    def task(self, config: TranslateConfig, data, seed: int) -> translate.TranslateTask:
        codecs, train_pairs, valid_pairs, valid_texts = data
        return translate.TranslateTask(config, _model_config(config, codecs), codecs,
                                       train_pairs, valid_pairs, valid_texts, seed)

    def saved_values(self, saved: dict[str, Any]) -> dict[str, Any]:
        if "options" in saved or "translate" not in saved:
            return super().saved_values(saved)
        # a run from before the application contract: its options were under "translate", flat
        return renamed(saved["translate"])

    # ------------------------------------------------------------ after training

    def load(self, checkpoint: Checkpoint) -> Translator:
        src, tgt = _codecs(checkpoint)
        sizes = {"src_vocab_size": (translate.SRC_TOKENIZER, src.vocab_size),
                 "tgt_vocab_size": (translate.TGT_TOKENIZER, tgt.vocab_size)}
        model = Seq2Seq(saved_model(Seq2SeqConfig, checkpoint.directory, checkpoint.saved, sizes,
                                    renamed))
        return Translator(checkpoint.load_weights(model), src, tgt,
                          checkpoint.saved.get("data", {}))

    def evaluate(self, loaded: Translator, options: EvalOptions) -> dict[str, Any]:
        options.check_files()
        name = options.data or options.src
        corpus = read_parallel(name, None if options.data else options.ref,
                               lowercase=loaded.data.get("lowercase", False),
                               normalize=loaded.data.get("normalize", "NFC"))
        result, hypotheses = translate.evaluate_pairs(
            loaded, corpus.sources, corpus.targets, batch_size=options.batch_size,
            where=lambda i: f"{name}: pair {i + 1}", **options.resolved(loaded))
        if options.output:
            write_output("--output", options.output, "".join(f"{h}\n" for h in hypotheses))
        return {"data": corpus.name, **result}

    def format_metrics(self, result: dict[str, Any]) -> str:
        search = "greedy" if result["beam_size"] == 1 else f"beam {result['beam_size']}"
        return (f"{result['data']}: {result['sentences']} sentences, {search}, "
                f"{result['seconds']:.1f} s\n"
                f"BLEU {result['bleu']:.2f}  (lower-cased {result['bleu_lc']:.2f})  "
                f"chrF {result['chrf']:.2f}  perplexity {result['perplexity']:.2f}")

    def predict(self, loaded: Translator, options: PredictOptions):
        """One output line per input line (an empty line stays empty); every line is checked
        before any output is written."""
        name, text = read_input(options.input)
        lines = text.splitlines() if text is not None else read_lines(name)
        alignments = [] if options.attention_out else None
        outputs = translate.translate(loaded, lines, batch_size=options.batch_size,
                                      where=lambda i: f"{name}:{i + 1}", alignments=alignments,
                                      **options.resolved(loaded))
        attention = "".join(json.dumps(item, ensure_ascii=False) + "\n"
                            for item in alignments or ())
        if options.attention_out and options.attention_out != "-":
            # a file first: a failure to write it leaves no partial output
            write_output("--attention-out", options.attention_out, attention)
        yield "".join(f"{line}\n" for line in outputs)
        if options.attention_out == "-":  # after the translations, as before
            write_output("--attention-out", "-", attention)

    def chat(self, loaded: Translator, options: ChatOptions) -> None:
        """Answer each line of stdin on stdout until end of input or Ctrl-C."""
        prompt = options.prompt if options.prompt != "auto" else (
            "> " if sys.stdin.isatty() else "")

        def write(text: str) -> None:
            sys.stdout.write(text)
            sys.stdout.flush()

        try:
            chat(loaded, sys.stdin, write, prompt=prompt, **options.resolved(loaded))
        except KeyboardInterrupt:
            write("\n")
            return
        if prompt:
            write("\n")

    def export_graphs(self, loaded: Translator):
        """The encoder (source ids, lengths → memory, the decoder's first state) and one
        decoder step (previous token, state, memory → logits, new state, attention); beam
        search or greedy decoding drives the step from outside."""
        import torch

        from rnnkit.apps.base import ExportGraph
        from rnnkit.models.exportable import (
            DecoderStep,
            EncoderGraph,
            outputs_of,
            padded_example,
        )
        from rnnkit.models.seq2seq import Memory

        model = loaded.model.cpu().eval()
        cfg, lstm = model.config, model.config.cell == "lstm"
        attention = cfg.attention != "none"
        src, lengths = padded_example(cfg.src_vocab_size, cfg.pad_id, [5, 3])

        def encoder_reference(src, src_lengths):
            memory, state = model.encode(src, src_lengths)
            return outputs_of((memory.outputs, memory.keys if attention else None, state))

        encoded = encoder_reference(src, lengths)
        states = ["h", "c"][: 2 if lstm else 1]
        memory_names = ["memory", "keys"][: 2 if attention else 1]
        encoder_axes = {"src": {0: "batch", 1: "length"}, "src_lengths": {0: "batch"},
                        "memory": {0: "batch", 1: "length"}, "keys": {0: "batch", 1: "length"},
                        **{n: {1: "batch"} for n in states}}
        token = torch.tensor([cfg.bos_id, cfg.bos_id])
        step_inputs = (token, *encoded[len(memory_names):])
        if attention:
            step_inputs += (*encoded[:2], lengths)

        def step_reference(token, *rest):
            state = tuple(rest[: len(states)]) if lstm else rest[0]
            if attention:
                outputs, keys, src_lengths = rest[len(states):]
                mask = torch.arange(outputs.shape[1])[None, :] < src_lengths[:, None]
                memory = Memory(outputs, keys, mask)
            else:
                memory = None
            logits, state, weights = model.decode(token[:, None], state, memory)
            return outputs_of((logits[:, 0], state, None if weights is None else weights[:, 0]))

        step_in = ["token", *states] + (["memory", "keys", "src_lengths"] if attention else [])
        step_out = ["logits", *[f"{n}_out" for n in states]] + (["attention"] if attention
                                                               else [])
        step_axes = {"token": {0: "batch"}, "logits": {0: "batch"},
                     "memory": {0: "batch", 1: "length"}, "keys": {0: "batch", 1: "length"},
                     "src_lengths": {0: "batch"}, "attention": {0: "batch", 1: "length"},
                     **{n: {1: "batch"} for n in states + [f"{n}_out" for n in states]}}
        return [
            ExportGraph("encoder", EncoderGraph(model).eval(), (src, lengths),
                        ["src", "src_lengths"], memory_names + states,
                        {k: v for k, v in encoder_axes.items()
                         if k in ["src", "src_lengths", *memory_names, *states]},
                        encoder_reference, "source ids of src_tokenizer.json (pad past each "
                        "length); outputs feed the decoder step"),
            ExportGraph("decoder_step", DecoderStep(model).eval(), step_inputs, step_in,
                        step_out, {k: v for k, v in step_axes.items()
                                   if k in step_in + step_out}, step_reference,
                        f"first token <bos> = {cfg.bos_id}, stop at <eos> = {cfg.eos_id}; "
                        "ids of tgt_tokenizer.json"),
        ]

    def verbs(self) -> list[Verb]:
        return [
            Verb("run", "translate stdin or a file, one output line per input line (the old "
                 "name of predict)", PredictOptions, self.predict),
            Verb("chat", "interactive prompt answering each line (a model trained on "
                 "utterance -> reply pairs)", ChatOptions, self.chat, CHAT_EXAMPLES, output=False,
                 top_level=True),
        ]


def _init_embeddings(model: Seq2Seq, config: TranslateConfig,
                     codecs: tuple[Codec, Codec]) -> None:
    """``--init-embeddings`` (both sides), ``--init-src-embeddings``, ``--init-tgt-embeddings``:
    rows of the words the file holds (:func:`rnnkit.models.transfer.init_embeddings`)."""
    from rnnkit.models.transfer import init_embeddings

    sides = (("source", "--init-src-embeddings", config.init_src_embeddings, codecs[0],
              model.src_embedding),
             ("target", "--init-tgt-embeddings", config.init_tgt_embeddings, codecs[1],
              model.tgt_embedding))
    for side, flag, path, codec, embedding in sides:
        option = flag if path else "--init-embeddings"
        path = path or config.init_embeddings
        if not path:
            continue
        tokenizer = codec.tokenizer
        if tokenizer.kind != "word":
            raise RnnkitError(f"{option} {path}: the {side} side's tokenizer is "
                              f"{tokenizer.kind}; word vectors need --tokenizer word")
        specials = ("<pad>", "<bos>", "<eos>")  # the ids below translate.SHIFT
        words = [*specials, *tokenizer.vocab.tokens]
        print(init_embeddings(embedding, words, path, option=option, what=f"{side} ",
                              specials={*specials, *tokenizer.vocab.specials}), flush=True)


def _model_config(config: TranslateConfig, codecs: tuple[Codec, Codec]) -> Seq2SeqConfig:
    try:
        return Seq2SeqConfig(codecs[0].vocab_size, codecs[1].vocab_size,
                             pad_id=translate.PAD_ID, bos_id=translate.BOS_ID,
                             eos_id=translate.EOS_ID, **asdict(config.model))
    except ValueError as err:
        raise RnnkitError(str(err)) from None


def _codecs(checkpoint: Checkpoint) -> tuple[Codec, Codec]:
    """The source and target codecs saved in ``checkpoint`` (on resume, ids keep their
    meaning)."""
    return tuple(Codec.from_json(checkpoint.read_json(name), str(checkpoint.directory / name))
                 for name in (translate.SRC_TOKENIZER, translate.TGT_TOKENIZER))
