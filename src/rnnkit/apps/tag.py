"""``rnnkit tag``: sequence labelling (POS tagging, NER) with a bidirectional word + character RNN.

The pieces (encoding, the Trainer's task, scoring) are in :mod:`rnnkit.tasks.tag`; this file is
the application: its options, how it prepares data, builds and loads the model, and what
``eval`` and ``predict`` do.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from rnnkit._io import read_input
from rnnkit.apps.base import Application, Checkpoint, PrepareContext
from rnnkit.apps.lm import load_lm
from rnnkit.apps.registry import register
from rnnkit.data.conll import read_tagged
from rnnkit.errors import RnnkitError
from rnnkit.models._config import renamed
from rnnkit.models.tagger import Tagger, TaggerConfig, TaggerOptions
from rnnkit.models.transfer import (
    TransferOptions,
    initialise,
    lm_feature_config,
    with_schedule,
)
from rnnkit.tasks import metrics as M
from rnnkit.tasks import tag
from rnnkit.tasks._labels import UNKNOWN_LABELS
from rnnkit.train.checkpoint import saved_model
from rnnkit.train.config import option, section

__all__ = ["Tag", "TagConfig", "TagModel"]

EXAMPLES = """\
  rnnkit tag train --train en-ud-train.conllu --valid en-ud-dev.conllu --out runs/pos
  rnnkit tag train --train eng.train --valid eng.testa --tag-column 4 --out runs/ner --max-epochs 20
  rnnkit tag train --config pos.toml --lr 3e-3          # flags override the TOML file
  rnnkit tag eval --checkpoint runs/pos --data en-ud-dev.conllu --json
  rnnkit tag predict --checkpoint runs/pos --input raw.conllu --output tagged.conllu
  printf 'The\\ncat\\nsat\\n' | rnnkit tag predict --checkpoint runs/pos --format conll

files: CoNLL-U (.conllu; --tag-column upos, xpos, or any column name or number) or
CoNLL-2003-style column files (word first, tag in the last column or --tag-column N, blank
line between sentences). predict fills the tag column and leaves every other column as it was.
"""

FORMATS = ("conllu", "conll")


TagModel = TaggerOptions  # the model section, declared with the model


@dataclass
class TagConfig:
    """Data options of the tagger, and its model options in ``model``."""

    train: str = option("", "training file (.conllu, or a column file)")
    valid: str = option("", "validation file, evaluated after each epoch", aliases=("dev",))
    format: str | None = option(
        None, "file format: conllu or conll (default: from the extension)", choices=FORMATS)
    tag_column: str | None = option(
        None, "tag column: a CoNLL-U name (upos, xpos, …) or a 1-based number (default: upos; "
        "last column for conll files)")
    min_freq: int = option(2, "words seen fewer times are <unk>")
    lowercase: bool = option(
        True, "lower-case words for the word embedding (the char RNN keeps case)")
    word_dropout: float = option(
        0.25,
        "with --min-freq 1: probability of replacing a word seen once by <unk> while training "
        "(with a higher --min-freq such words are <unk> already)")
    chars: bool = option(True, "add a character-RNN encoding of each word")
    max_word_length: int = option(30, "characters of a word the char RNN reads")
    batch_size: int = option(32, "sentences per batch")
    max_tokens: int | None = option(None, "also cap a batch at this many padded words")
    model: TaggerOptions = section(TaggerOptions, "model")
    transfer: TransferOptions = section(TransferOptions, "transfer")

    def __post_init__(self) -> None:
        for name in ("min_freq", "max_word_length", "batch_size"):
            _at_least_one(name, getattr(self, name))
        for name in ("embedding_size", "hidden_size", "num_layers"):
            _at_least_one(name, getattr(self.model, name))
        if not 0.0 <= self.word_dropout < 1.0:
            raise ValueError(f"--word-dropout: expected a value in [0, 1), got {self.word_dropout}")


def _at_least_one(name: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"--{name.replace('_', '-')}: expected an integer >= 1, got {value}")


@dataclass
class FileOptions:
    """How ``eval`` and ``predict`` read a file (defaults: the training file's)."""

    format: str | None = option(None, "file format (default: from the extension, else the "
                                      "training one)", choices=FORMATS)
    tag_column: str | None = option(None, "tag column (default: the training one)")
    batch_size: int = option(64, "sentences per batch")

    def __post_init__(self) -> None:
        _at_least_one("batch_size", self.batch_size)


@dataclass
class EvalOptions(FileOptions):
    data: str = option("", "gold-tagged file (required)")
    unknown_labels: str = option(
        "error", "a gold tag the model never saw in training: stop with an error naming the file "
        "and line (error), or score it as a wrong prediction (wrong)", choices=UNKNOWN_LABELS)


@dataclass
class PredictOptions(FileOptions):
    input: str = option("-", "file to tag (- = stdin)")


@dataclass
class Loaded:
    model: Tagger
    vocabs: tag.TagVocabs
    data: dict  # the training file's format and tag column


@register("tag")
class Tag(Application):
    summary = "sequence labelling: POS tagging, NER"
    description = "Train, evaluate and run a bidirectional RNN tagger (word + character RNN)."
    examples = EXAMPLES
    Config = TagConfig
    EvalOptions = EvalOptions
    PredictOptions = PredictOptions
    batch_unit = "block"  # rnnkit serve merges concurrent requests (sentence blocks)
    word_embeddings = {"source": ("words.json", ("embedding.weight",))}

    def prepare(self, config: TagConfig, context: PrepareContext):
        if not config.train:
            raise RnnkitError("--train: a training file is required")
        train_doc = tag.read_gold(config.train, asdict(config))
        valid_doc = tag.read_gold(config.valid, asdict(config)) if config.valid else None
        # valid tags unseen in training count as wrong; on resume the same data rebuilds the
        # same vocabularies (they depend on the training file and options only)
        return train_doc, valid_doc, tag.TagVocabs.build(train_doc, config)

    def build_model(self, config: TagConfig, data) -> Tagger:
        model = Tagger(_model_config(config, data[2]))
        initialise(model, data[2].words, cell=config.model.cell,
                   vectors=config.transfer.init_embeddings, lm_path=config.transfer.init_from,
                   features_path=config.transfer.lm_features, load_lm=load_lm)
        return model

    def task(self, config: TagConfig, data, seed: int) -> tag.TagTask:
        train_doc, valid_doc, vocabs = data
        task = tag.TagTask(config, train_doc, valid_doc, vocabs, _model_config(config, vocabs),
                           seed)
        return with_schedule(task, config.transfer.layer_lr_decay,
                             config.transfer.gradual_unfreezing)

    def load(self, checkpoint: Checkpoint) -> Loaded:
        saved = checkpoint.saved
        data = saved.get("data", {})
        vocabs = tag.read_vocabs(checkpoint, data)
        sizes = {"vocab_size": ("words.json", len(vocabs.words)),
                 "num_tags": ("tags.json", len(vocabs.tags))}
        if vocabs.chars is not None:
            sizes["char_vocab_size"] = ("chars.json", len(vocabs.chars))
        config = saved_model(TaggerConfig, checkpoint.directory, saved, sizes, renamed)
        return Loaded(checkpoint.load_weights(Tagger(config)), vocabs, data)

    def evaluate(self, loaded: Loaded, options: EvalOptions) -> dict:
        if not options.data:
            raise RnnkitError("--data: required (a gold-tagged file)")
        fmt, column = _file_options(options, loaded.data, options.data)
        doc = read_tagged(options.data, fmt=fmt, tag_column=column)
        result = tag.evaluate_document(loaded.model, doc, loaded.vocabs,
                                       batch_size=options.batch_size,
                                       unknown_labels=options.unknown_labels)
        return {"data": options.data, **result}

    def format_metrics(self, result: dict) -> str:
        lines = [f"{result['data']}: {result['sentences']} sentences, {result['tokens']} tokens",
                 f"token accuracy {100 * result['accuracy']:.2f} %"]
        if "span_f1" in result:
            lines.append(f"span precision {100 * result['span_precision']:.2f}  recall "
                         f"{100 * result['span_recall']:.2f}  F1 {100 * result['span_f1']:.2f}")
        return "\n".join(lines + M.prf_table("tag", result["per_tag"]))

    def predict(self, loaded: Loaded, options: PredictOptions):
        name, text = read_input(options.input)
        fmt, column = _file_options(options, loaded.data, name)
        doc = read_tagged(name, fmt=fmt, tag_column=column, require_tags=False, text=text)
        yield tag.predict_document(loaded.model, doc, loaded.vocabs, None, options.batch_size)

    def export_graphs(self, loaded: Loaded):
        """words ``(B, T)``, lengths ``(B,)`` (with a character RNN also chars ``(B, T, C)``,
        char_lengths ``(B, T)``) → tag scores ``(B, T, K)``."""
        from rnnkit.apps.base import ExportGraph
        from rnnkit.models.exportable import TaggerGraph, padded_example

        model, vocabs = loaded.model.cpu().eval(), loaded.vocabs
        chars = vocabs.chars
        inputs = padded_example(len(vocabs.words), vocabs.words.pad_id, [5, 3],
                                len(chars) if chars is not None else 0,
                                chars.pad_id if chars is not None else 0)
        names = ["words", "lengths", "chars", "char_lengths"][: len(inputs)]
        axes = {"words": {0: "batch", 1: "length"}, "lengths": {0: "batch"},
                "chars": {0: "batch", 1: "length", 2: "width"},
                "char_lengths": {0: "batch", 1: "length"}, "scores": {0: "batch", 1: "length"}}
        return [ExportGraph("tagger", TaggerGraph(model).eval(), inputs, names, ["scores"],
                            {k: v for k, v in axes.items() if k in names or k == "scores"},
                            model, "ids from words.json (lower-cased if the config says so) "
                            "and chars.json; argmax of scores over tags.json")]

    def inspect(self, loaded: Loaded, config):
        """Per-word labels with their top-k; the gradient flow of the model's own labels."""
        import torch

        from rnnkit.diagnostics import inspect as di

        model, vocabs, notes = loaded.model, loaded.vocabs, []
        words = di.limit_symbols(config.text.split(), config, notes)
        norm = [w.lower() if vocabs.lowercase else w for w in words]
        chars = vocabs.chars.encode(words) if vocabs.chars is not None else []
        batch = tag.collate([tag.Encoded(vocabs.words.encode(norm), chars, [None] * len(words))],
                            vocabs)
        with di.Capture(di.top_layer(model)) as capture, torch.no_grad():
            probs = torch.softmax(tag.forward(model, batch)[0].float(), dim=-1)  # (T, K)
        best = probs.argmax(-1)
        labels = vocabs.tags.decode(best.tolist())
        predictions, table = [], []
        for t, word in enumerate(words):
            text, cells = di.top_k_cells(probs[t], config.top_k,
                                         lambda i: vocabs.tags.decode([i])[0])
            predictions.append(text.replace("next: ", "labels: "))
            table.append([str(t), word, labels[t], f"{float(probs[t, best[t]]):.2f}", *cells[1:]])

        def loss_fn(m, _):
            return torch.nn.functional.cross_entropy(tag.forward(m, batch)[0].float(), best)

        header = ["t", "word", "label", "p", *[f"#{k + 2}" for k in range(config.top_k - 1)]]
        return di.InspectRun(model, words, capture.output, predictions, loss_fn, labels=labels,
                             table=table, table_title="Per-word labels", table_header=header,
                             words=True, notes=notes)


def _model_config(config: TagConfig, vocabs: tag.TagVocabs) -> TaggerConfig:
    return TaggerConfig(
        vocab_size=len(vocabs.words), num_tags=len(vocabs.tags),
        char_vocab_size=len(vocabs.chars) if vocabs.chars is not None else 0,
        pad_id=vocabs.words.pad_id,
        lm_features=lm_feature_config(config.transfer.lm_features, load_lm),
        **asdict(config.model))


def _file_options(options: FileOptions, data: dict, path: str) -> tuple[str, str | None]:
    """(format, tag column): the flags, else ``.conllu`` → CoNLL-U, else the training ones."""
    trained = data.get("format") or "conllu"
    fmt = options.format or ("conllu" if path.lower().endswith(".conllu") else trained)
    if options.tag_column is not None:
        return fmt, options.tag_column
    return fmt, data.get("tag_column") if fmt == trained else None
