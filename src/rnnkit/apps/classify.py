"""``rnnkit classify``: text classification from an RNN's final state (or pooled states).

The pieces (encoding, the Trainer's task, ensembles, scoring) are in
:mod:`rnnkit.tasks.classify`; this file is the application: its options, how it prepares data,
builds and loads the model, and what ``eval`` and ``predict`` do. ``--checkpoint`` given several
times makes an ensemble (the mean of the class probabilities).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

from rnnkit._io import read_input
from rnnkit.apps.base import Application, Checkpoint, PrepareContext
from rnnkit.apps.lm import load_lm
from rnnkit.apps.registry import register
from rnnkit.data.vocab import PAD, UNK, Vocabulary
from rnnkit.data.words import CharVocab
from rnnkit.errors import RnnkitError
from rnnkit.models.classifier import ClassifierConfig, ClassifierOptions
from rnnkit.models.transfer import (
    TransferOptions,
    initialise,
    lm_feature_config,
    with_schedule,
)
from rnnkit.tasks import classify
from rnnkit.tasks import metrics as M
from rnnkit.tasks._labels import UNKNOWN_LABELS, label_vocabulary
from rnnkit.train.config import option, section

__all__ = ["Classify", "ClassifyConfig", "ClassifyModel"]

EXAMPLES = """\
  rnnkit classify train --train stsa.binary.train --valid stsa.binary.dev --out runs/sst2
  rnnkit classify train --train reviews.tsv --text-column review --label-column stars \\
      --pooling attention --out runs/reviews
  rnnkit classify train --train data.jsonl --text-column body --label-column topic
  rnnkit classify train --train stsa.binary.train --valid stsa.binary.dev --chars \\
      --out runs/sst2-chars       (a character RNN per token, for words unseen in training)
  rnnkit classify eval --checkpoint runs/sst2 --data stsa.binary.dev --confusion-png cm.png
  rnnkit classify eval --checkpoint runs/sst2 --data stsa.binary.dev --json
  rnnkit classify eval --checkpoint runs/s1 --checkpoint runs/s2 --checkpoint runs/s3 \\
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

FORMATS = ("label-text", "tsv", "csv", "jsonl")


ClassifyModel = ClassifierOptions  # the model section, declared with the model


@dataclass
class ClassifyConfig:
    """Data and training-objective options of the classifier, its model options in ``model``."""

    train: str = option("", "training file")
    valid: str = option("", "validation file, evaluated during training", aliases=("dev",))
    format: str | None = option(
        None, "label-text, tsv, csv or jsonl (default: from the extension, else label-text)",
        choices=FORMATS)
    text_column: str | None = option(
        None, "text column: header name or 1-based number (tsv/csv, default 2), field (jsonl, "
        "default text)")
    label_column: str | None = option(
        None, "label column: header name or 1-based number (tsv/csv, default 1), field (jsonl, "
        "default label)")
    header: bool | None = option(
        None, "tsv/csv: the first row is a header (default: when a column is given by name)")
    lowercase: bool = option(False, "lower-case the text")
    min_freq: int = option(1, "tokens seen fewer times are <unk>")
    word_dropout: float = option(
        0.1, "probability of replacing a token seen once in training by <unk> while training")
    label_smoothing: float = option(0.0, "label smoothing of the training loss (0: none)")
    adversarial: float = option(
        0.0, "adversarial training (Miyato et al. 2017): also learn from each text with its word "
        "embeddings moved this far (L2 norm per text) in the direction that raises its loss "
        "most; slower per step, see docs/benchmarks.md, classification (0: off)")
    chars: bool = option(
        False, "add a character-RNN encoding of each token (its spelling) to its embedding")
    max_word_length: int = option(30, "characters of a token the char RNN reads (with --chars)")
    batch_size: int = option(32, "texts per batch")
    model: ClassifierOptions = section(ClassifierOptions, "model")
    transfer: TransferOptions = section(TransferOptions, "transfer")

    def __post_init__(self) -> None:
        model = self.model
        for name, value in (("min_freq", self.min_freq), ("max_word_length",
                            self.max_word_length), ("batch_size", self.batch_size),
                            ("embedding_size", model.embedding_size),
                            ("hidden_size", model.hidden_size), ("num_layers", model.num_layers),
                            ("char_dim", model.char_dim), ("char_hidden", model.char_hidden)):
            if value < 1:
                raise ValueError(f"--{name.replace('_', '-')}: expected an integer >= 1, "
                                 f"got {value}")
        for name, value in (("word_dropout", self.word_dropout),
                            ("embed_dropout", model.embed_dropout),
                            ("label_smoothing", self.label_smoothing)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"--{name.replace('_', '-')}: expected a value in [0, 1), "
                                 f"got {value}")
        if not 0.0 <= self.adversarial < float("inf"):
            raise ValueError(f"--adversarial: expected a finite value >= 0, got {self.adversarial}")


@dataclass
class FileOptions:
    """How ``eval`` and ``predict`` read a file (defaults: the first checkpoint's)."""

    format: str | None = option(None, "input format (eval default: the training options; "
                                      "predict default: plain text, one a line)", choices=FORMATS)
    text_column: str | None = option(None, "text column or field (default: the training one)")
    label_column: str | None = option(None, "label column or field (default: the training one)")
    header: bool | None = option(None, "tsv/csv: the first row is a header (default: the "
                                       "training one)")
    batch_size: int = option(64, "texts per batch")

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"--batch-size: expected an integer >= 1, got {self.batch_size}")


@dataclass
class EvalOptions(FileOptions):
    data: str = option("", "labelled file (required)")
    confusion_png: str | None = option(None, "save the confusion matrix as a PNG image")
    unknown_labels: str = option(
        "error", "a gold label the model never saw in training: stop with an error naming the "
        "file and line (error), or score it as a wrong prediction (wrong)", choices=UNKNOWN_LABELS)


@dataclass
class PredictOptions(FileOptions):
    input: str = option("-", "texts, one a line, or a file in --format (- = stdin)")
    output_format: str = option("tsv", "tsv: label<TAB>probability<TAB>text; jsonl: with every "
                                       "label's probability", choices=("tsv", "jsonl"))


@dataclass
class Loaded:
    """One classifier or an ensemble: members ``(model, vocab, chars)``, shared labels."""

    members: list
    labels: Vocabulary
    data: dict  # the (first) training file's reading options


@register("classify")
class Classify(Application):
    summary = "sequence classification (sentiment, topic, acceptability)"
    description = ("Train, evaluate and run an RNN text classifier (final hidden state, or "
                   "mean/max/attention pooling).")
    examples = EXAMPLES
    Config = ClassifyConfig
    EvalOptions = EvalOptions
    PredictOptions = PredictOptions
    batch_unit = "line"  # rnnkit serve merges concurrent requests (a label per line)
    word_embeddings = {"source": ("vocab.json", ("embedding.weight",))}

    def prepare(self, config: ClassifyConfig, context: PrepareContext):
        """Examples, vocabularies; without a validation file, up to 10 % of the training data
        (at most 1000 examples) is held out."""
        if not config.train:
            raise RnnkitError("--train: a training file is required")
        train = classify.read(config.train, asdict(config))
        if config.valid:
            valid = classify.read(config.valid, asdict(config))
        else:
            held = min(1000, len(train) // 10)
            if held < 1:
                raise RnnkitError(f"{config.train}: too few examples to hold out a validation "
                                  "set; give --valid")
            shuffled = random.Random(context.seed).sample(train, len(train))
            valid, train = shuffled[:held], shuffled[held:]
        vocab = Vocabulary.build((e.tokens for e in train), min_freq=config.min_freq,
                                 specials=(PAD, UNK))
        labels = label_vocabulary([e.label for e in train])
        chars = (CharVocab.build((t for e in train for t in e.tokens), config.max_word_length)
                 if config.chars else None)
        return train, valid, vocab, labels, chars

    def build_model(self, config: ClassifyConfig, data):
        from rnnkit.models.classifier import Classifier

        model = Classifier(_model_config(config, data))
        initialise(model, data[2], cell=config.model.cell, vectors=config.transfer.init_embeddings,
                   lm_path=config.transfer.init_from, features_path=config.transfer.lm_features,
                   load_lm=load_lm)
        return model

    def task(self, config: ClassifyConfig, data, seed: int) -> classify.ClassifyTask:
        train, valid, vocab, labels, chars = data
        task = classify.ClassifyTask(config, train, valid, vocab, labels,
                                     _model_config(config, data), seed, chars)
        return with_schedule(task, config.transfer.layer_lr_decay,
                             config.transfer.gradual_unfreezing)

    def load(self, checkpoint: Checkpoint) -> Loaded:
        return self.load_ensemble([checkpoint])

    def load_ensemble(self, checkpoints: list[Checkpoint]) -> Loaded:
        members, labels, data = classify.load_ensemble([c.given or str(c.directory)
                                                              for c in checkpoints])
        device = checkpoints[0].device
        members = [(model.to(device), vocab, chars) for model, vocab, chars in members]
        return Loaded(members, labels, data)

    def evaluate(self, loaded: Loaded, options: EvalOptions) -> dict:
        if not options.data:
            raise RnnkitError("--data: required (a labelled file)")
        examples = classify.read(options.data, _file_options(options, loaded.data))
        probs = classify.ensemble_probs(loaded.members, examples, options.batch_size)
        result = classify.score_probs(probs, examples, loaded.labels, options.data,
                                      unknown_labels=options.unknown_labels)
        if options.confusion_png:
            M.plot_confusion(result["confusion"], result["labels"], options.confusion_png,
                             title=f"{options.data}: accuracy {100 * result['accuracy']:.2f} %")
        return {"data": options.data, "members": len(loaded.members), **result}

    def format_metrics(self, result: dict) -> str:
        note = f" (ensemble of {result['members']})" if result["members"] > 1 else ""
        return "\n".join([
            f"{result['data']}: {result['examples']} examples{note}",
            f"accuracy {100 * result['accuracy']:.2f} %   macro-F1 "
            f"{100 * result['macro_f1']:.2f}",
            *M.prf_table("label", result["per_label"]),
            "confusion matrix (rows: gold, columns: predicted)",
            M.format_confusion(result["confusion"], result["labels"]),
        ])

    def predict(self, loaded: Loaded, options: PredictOptions):
        name, text = read_input(options.input)
        reading = _file_options(options, loaded.data)
        # Without --format: plain text, one a line. With --format label-text, the labels present
        # in the file are read past (and ignored); tsv/csv/jsonl read only the text column.
        reading["format"] = options.format or "label-text"
        examples = classify.read(name, reading, require_labels=options.format == "label-text",
                                 text=text)
        probs = classify.ensemble_probs(loaded.members, examples, options.batch_size)
        yield classify.format_predictions(examples, probs, loaded.labels, options.output_format)

    def export_graphs(self, loaded: Loaded):
        """tokens ``(B, T)``, lengths ``(B,)`` (with ``--chars`` also chars ``(B, T, C)``,
        char_lengths ``(B, T)``) → class probabilities ``(B, K)``."""
        import torch

        from rnnkit.apps.base import ExportGraph
        from rnnkit.models.exportable import ClassifierGraph, padded_example

        if len(loaded.members) != 1:
            raise RnnkitError("--checkpoint: export takes one classifier, not an ensemble")
        model, vocab, chars = loaded.members[0]
        model = model.cpu().eval()
        inputs = padded_example(len(vocab), vocab.pad_id, [5, 3],
                                len(chars.vocab) if chars is not None else 0,
                                chars.pad_id if chars is not None else 0)

        def reference(*args):
            return torch.softmax(model(*args), dim=-1)

        names = ["tokens", "lengths", "chars", "char_lengths"][: len(inputs)]
        axes = {"tokens": {0: "batch", 1: "length"}, "lengths": {0: "batch"},
                "chars": {0: "batch", 1: "length", 2: "width"},
                "char_lengths": {0: "batch", 1: "length"}, "probabilities": {0: "batch"}}
        return [ExportGraph("classifier", ClassifierGraph(model).eval(), inputs, names,
                            ["probabilities"], {k: v for k, v in axes.items()
                                                if k in names or k == "probabilities"},
                            reference, "ids from words.json (pad past each length); "
                            "probabilities in the order of labels.json")]

    def inspect(self, loaded: Loaded, config):
        """Class probabilities; the gradient flow of the model's own decision."""
        import torch

        from rnnkit.diagnostics import inspect as di

        (model, vocab, chars), notes = loaded.members[0], []
        words = di.limit_symbols(config.text.split(), config, notes)
        tokens = [w.lower() for w in words] if loaded.data.get("lowercase") else words
        batch = classify.collate([vocab.encode(tokens)], None, vocab,
                                 char_ids=None if chars is None else [chars.encode(tokens)],
                                 char_pad=0 if chars is None else chars.vocab.pad_id)
        with di.Capture(di.top_layer(model)) as capture, torch.no_grad():
            probs = torch.softmax(classify.logits_of(model, batch)[0].float(), dim=-1)  # (K,)
        names = loaded.labels.decode(list(range(len(probs))))
        ranked = sorted(zip(names, probs.tolist(), strict=True), key=lambda pair: -pair[1])
        best = probs.argmax().reshape(1)
        summary = "classes: " + "  ".join(f"{n} {p:.2f}" for n, p in ranked[: config.top_k])

        def loss_fn(m, _):
            return torch.nn.functional.cross_entropy(classify.logits_of(m, batch).float(), best)

        return di.InspectRun(model, words, capture.output, [summary] * len(words), loss_fn,
                             class_probs=ranked, words=True, notes=notes)


def _model_config(config: ClassifyConfig, data) -> ClassifierConfig:
    _, _, vocab, labels, chars = data
    return ClassifierConfig(vocab_size=len(vocab), num_classes=len(labels), pad_id=vocab.pad_id,
                            char_vocab_size=len(chars.vocab) if chars is not None else 0,
                            lm_features=lm_feature_config(config.transfer.lm_features, load_lm),
                            **asdict(config.model))


def _file_options(options: FileOptions, data: dict) -> dict:
    reading = dict(data)
    for key in ("format", "text_column", "label_column", "header"):
        if getattr(options, key) is not None:
            reading[key] = getattr(options, key)
    return reading
