"""``rnnkit vectors``: word vectors from a word-level language model, in the files gensim and
GloVe use; neighbours, analogies and word-similarity benchmarks.

``rnnkit vectors train`` trains a word LM (the ``lm`` application's model and task, with
word-level defaults: word tokens, adaptive softmax, one LSTM layer) and writes its embedding
matrix as ``OUT/vectors.txt`` each time validation improves (so it always holds the best
checkpoint's vectors). ``export`` takes the vectors out of any checkpoint with a vocabulary
(:mod:`rnnkit.apps.vectors_export`); ``neighbours``, ``analogy`` and ``evaluate`` work on any
word2vec / GloVe / binary file (:mod:`rnnkit.data.wordvec`, :mod:`rnnkit.models.wordvec`).
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnkit.apps.base import Application, Checkpoint, PrepareContext, Verb
from rnnkit.apps.lm import LM, LMModel, LMOptions, Loaded
from rnnkit.apps.registry import register
from rnnkit.apps.vectors_export import LAYERS, SIDES, checkpoint_vectors
from rnnkit.data.wordvec import (
    FORMATS,
    WordVectors,
    find_benchmarks,
    read_pairs,
    read_vectors,
    write_vectors,
)
from rnnkit.errors import RnnkitError
from rnnkit.models.lm import CELLS, SOFTMAX
from rnnkit.models.wordvec import PairScore, analogy, evaluate_pairs, neighbours, unit_rows
from rnnkit.tasks import lm
from rnnkit.train.config import option, section

__all__ = ["Vectors", "VectorsOptions", "VectorsModel", "similarity_table"]

EXAMPLES = """\
  rnnkit vectors train --train corpus.txt --valid valid.txt --out runs/vec --max-minutes 15
  rnnkit vectors export --checkpoint runs/vec --output vec.txt --format word2vec
  rnnkit vectors export --checkpoint runs/sst2 --output sst2.bin --format binary   # classify
  rnnkit vectors export --checkpoint runs/vec --layer hidden-mean --data corpus.txt \\
      --output ctx.txt
  rnnkit vectors neighbours --vectors vec.txt king money
  rnnkit vectors analogy --vectors vec.txt king man woman   # king - man + woman
  rnnkit vectors evaluate --vectors vec.txt --benchmarks ../shared/data/word-sim
  rnnkit vectors eval --checkpoint runs/vec --benchmarks ../shared/data/word-sim --json
"""


@dataclass(kw_only=True)
class VectorsModel(LMModel):
    """The word LM's model options, with word-level defaults."""

    cell: str = option("lstm", "recurrent cell", CELLS)
    embedding_size: int = option(300, "embedding size (the vectors' dimension)")
    hidden_size: int = option(512, "hidden units per layer")
    num_layers: int = option(1, "recurrent layers")
    dropout: float = option(0.3, "dropout on embeddings, between layers and before the output")
    softmax: str = option("adaptive", "output layer: adaptive or sampled (fast for large "
                                      "vocabularies; sampled: exact full softmax at evaluation) or "
                                      "full softmax", SOFTMAX)


@dataclass
class VectorsOptions(LMOptions):
    """``rnnkit vectors train``: the word LM's options and where its vectors go."""

    tokenizer: str = option("word", "token unit (word: the vectors are words)",
                            ("word", "char", "bpe"))
    vocab_size: int = option(50000, "at most this many words (the commonest)")
    min_freq: int = option(3, "rarer words become <unk> and get no vector")
    bptt: int = option(35, "steps per truncated-BPTT chunk")
    vectors_format: str = option("word2vec", "format of OUT/vectors.txt (binary: "
                                             "OUT/vectors.bin)", FORMATS)
    model: VectorsModel = section(VectorsModel, "model")


@dataclass
class ExportOptions:
    checkpoint: str = option("", "a run directory (its best/) or checkpoint of lm, vectors, "
                                 "classify, tag or translate (required)")
    format: str = option("word2vec", "file format", FORMATS)
    layer: str = option("embedding", "embedding: the input embedding matrix; hidden-mean: the "
                                     "LM's top-layer state averaged over --data", LAYERS)
    side: str = option("source", "translate checkpoints: which vocabulary", SIDES)
    data: str | None = option(None, "--layer hidden-mean: the text to average over")
    max_tokens: int | None = option(None, "--layer hidden-mean: read at most this many tokens")
    output: str = option("", "the vectors file to write, whole or not at all (required)")


@dataclass
class VectorsFile:
    vectors: str = option("", "a word2vec (text or binary) or GloVe file (required)")
    limit: int | None = option(None, "read only the first N vectors")


@dataclass
class NeighbourOptions(VectorsFile):
    words: tuple[str, ...] = option((), "words to look up (required)", positional=True)
    top_k: int = option(10, "neighbours per word")


@dataclass
class AnalogyOptions(VectorsFile):
    words: tuple[str, ...] = option((), "A B C: the words nearest to A - B + C (king man "
                                        "woman)", positional=True)
    top_k: int = option(5, "answers")


@dataclass
class EvaluateOptions(VectorsFile):
    benchmarks: str = option("", "a similarity set (WORD1 WORD2 SCORE lines) or a directory "
                                 "of *.txt sets (required)")
    case_sensitive: bool = option(False, "match words as written (default: case-insensitive, "
                                         "as gensim)")
    json: bool = option(False, "print the scores as one JSON object")


@dataclass
class CheckpointEval:
    benchmarks: str = option("", "a similarity set or a directory of *.txt sets (required)")
    case_sensitive: bool = option(False, "match words as written")


@dataclass
class CheckpointNeighbours:
    words: tuple[str, ...] = option((), "words to look up (required)", positional=True)
    top_k: int = option(10, "neighbours per word")


@dataclass
class Prepared(lm.Prepared):
    out_dir: Path | None = None
    writes: bool = True


class _VectorsTask(lm.LanguageModelTask):
    """The LM task; each validation that improves on the best so far rewrites the vectors."""

    name = "vectors"

    def __init__(self, config, model_config, data: Prepared, seed: int) -> None:
        super().__init__(config, model_config, data, seed)
        self.out_dir, self.writes, self.best = data.out_dir, data.writes, math.inf

    def evaluate(self, model) -> dict[str, float]:
        metrics = super().evaluate(model)
        if self.writes and self.out_dir is not None and metrics["valid_loss"] < self.best:
            self.best = metrics["valid_loss"]
            vectors = _embedding_vectors(model, self.tokenizer)
            binary = self.config.vectors_format == "binary"
            write_vectors(self.out_dir / ("vectors.bin" if binary else "vectors.txt"), vectors,
                          self.config.vectors_format)
        return metrics


def _embedding_vectors(model, tokenizer) -> WordVectors:
    from rnnkit.apps.vectors_export import _keep, _vocab_tokens

    tokens, specials = _vocab_tokens(tokenizer.to_json(), "tokenizer")
    matrix = model.embedding.weight.detach().float().cpu().numpy()
    return _keep(tokens, specials, matrix)


@register("vectors")
class Vectors(Application):
    summary = "word vectors: train (word LM), export, neighbours, analogies, similarity"
    description = ("Word vectors from rnnkit models, in word2vec / GloVe files: train a word LM "
                   "and export its embeddings, query neighbours and analogies, score "
                   "word-similarity sets.")
    examples = EXAMPLES
    Config = VectorsOptions
    EvalOptions = CheckpointEval
    PredictOptions = CheckpointNeighbours
    # a tied output layer may have kept the shared matrix under its own name
    word_embeddings = {"source": (lm.TOKENIZER_FILE, ("embedding.weight", "decoder.weight"))}

    def prepare(self, config: VectorsOptions, context: PrepareContext) -> Prepared:
        data = LM().prepare(config, context)
        return Prepared(data.tokenizer, data.train_tokens, data.valid_tokens,
                        data.chars_per_token, context.out_dir, context.shard.is_main)

    def build_model(self, config: VectorsOptions, data: Prepared):
        return LM().build_model(config, data)

    def task(self, config: VectorsOptions, data: Prepared, seed: int) -> _VectorsTask:
        from rnnkit.apps.lm import _model_config

        return _VectorsTask(config, _model_config(config, data.tokenizer.vocab_size), data,
                            seed)

    def load(self, checkpoint: Checkpoint) -> Loaded:
        return LM().load(checkpoint)

    def evaluate(self, loaded: Loaded, options: CheckpointEval) -> dict[str, Any]:
        """Spearman's ρ ×100 and coverage of the checkpoint's embedding on each set."""
        vectors = _embedding_vectors(loaded.model, loaded.tokenizer)
        return _scores_json(similarity_scores(vectors, options.benchmarks,
                                              not options.case_sensitive))

    def format_metrics(self, metrics: dict) -> str:
        return similarity_table(metrics)

    def predict(self, loaded: Loaded, options: CheckpointNeighbours):
        words = _words(options.words)
        if not words:
            raise RnnkitError("no words given: name one or more (rnnkit vectors predict "
                              "--checkpoint DIR king queen)")
        vectors = _embedding_vectors(loaded.model, loaded.tokenizer)
        yield from _neighbour_lines(vectors, words, options.top_k, "the checkpoint")

    def verbs(self) -> list[Verb]:
        return [
            Verb("export", "write a checkpoint's word vectors (word2vec, GloVe, binary)",
                 ExportOptions, _export, checkpoint=False),
            Verb("neighbours", "nearest words by cosine similarity", NeighbourOptions,
                 _neighbours, checkpoint=False),
            Verb("analogy", "A is to B as C is to ?: the words nearest to A - B + C",
                 AnalogyOptions, _analogy, checkpoint=False),
            Verb("evaluate", "Spearman's rho on word-similarity sets, with coverage",
                 EvaluateOptions, _evaluate, checkpoint=False),
        ]


# ---------------------------------------------------------------------- verbs


def _read(options: VectorsFile) -> WordVectors:
    if not options.vectors:
        raise RnnkitError("--vectors: required (a word2vec, GloVe or binary vectors file)")
    return read_vectors(options.vectors, limit=options.limit)


def _export(_: None, options: ExportOptions) -> None:
    if not options.checkpoint:
        raise RnnkitError("--checkpoint: required (a run directory or checkpoint with a "
                          "vocabulary)")
    if not options.output or options.output == "-":
        raise RnnkitError("--output: required (the vectors file to write)")
    vectors = checkpoint_vectors(options.checkpoint, options.layer, options.side, options.data,
                                 options.max_tokens)
    try:
        write_vectors(options.output, vectors, options.format)
    except OSError as err:
        raise RnnkitError(f"--output {options.output}: cannot write: {err.strerror}") from None
    print(f"rnnkit: wrote {len(vectors)} vectors of dimension {vectors.dim} to "
          f"{options.output} ({options.format})", file=sys.stderr)
    return None


def _neighbour_lines(vectors: WordVectors, words: list[str], k: int, source: str):
    unit = unit_rows(vectors.matrix)
    found = 0
    for word in words:
        if word not in vectors.index:
            print(f"rnnkit: note: {word!r} is not in {source} ({len(vectors)} words)",
                  file=sys.stderr)
            continue
        found += 1
        near = neighbours(vectors, word, k, unit)
        yield word + ": " + ", ".join(f"{w} {s:.3f}" for w, s in near) + "\n"
    if not found:
        raise RnnkitError(f"none of the words is in {source}: {', '.join(map(repr, words))}")


def _words(given: tuple[str, ...]) -> list[str]:
    """The words of the bare arguments (one argument may also hold several, split at spaces
    or commas: "king,queen")."""
    return [word for part in given for word in part.replace(",", " ").split()]


def _neighbours(_: None, options: NeighbourOptions):
    words = _words(options.words)
    if not words:
        raise RnnkitError("no words given: name one or more (rnnkit vectors neighbours "
                          "--vectors vec.txt king queen)")
    vectors = _read(options)
    return _neighbour_lines(vectors, words, options.top_k, options.vectors)


def _analogy(_: None, options: AnalogyOptions):
    words = _words(options.words)
    if len(words) != 3:
        raise RnnkitError(f"analogy: expected three words A B C (king man woman), got "
                          f"{len(words)}")
    vectors = _read(options)
    missing = [w for w in words if w not in vectors.index]
    if missing:
        raise RnnkitError(f"analogy {' '.join(words)}: {', '.join(map(repr, missing))} not in "
                          f"{options.vectors} ({len(vectors)} words); no answer")
    answers = analogy(vectors, *words, k=options.top_k)
    a, b, c = words
    return [f"{a} - {b} + {c}: " + ", ".join(f"{w} {s:.3f}" for w, s in answers) + "\n"]


def similarity_scores(vectors: WordVectors, benchmarks: str,
                      case_insensitive: bool = True) -> list[PairScore]:
    """One :class:`PairScore` per similarity set of ``benchmarks`` (a file or directory)."""
    if not benchmarks:
        raise RnnkitError("--benchmarks: required (a similarity set or a directory of them)")
    unit = unit_rows(vectors.matrix)
    return [evaluate_pairs(vectors, read_pairs(path), path.stem, case_insensitive, unit)
            for path in find_benchmarks(benchmarks)]


def _scores_json(scores: list[PairScore]) -> dict[str, Any]:
    return {s.name: {"spearman": None if math.isnan(s.spearman) else round(100 * s.spearman, 2),
                     "pairs": s.pairs, "covered": s.covered,
                     "oov_percent": round(s.oov_ratio, 2)} for s in scores}


def similarity_table(metrics: dict[str, Any]) -> str:
    """``metrics`` of :func:`_scores_json` as an aligned table."""
    lines = [f"{'set':<20} {'rho x100':>9} {'covered':>13}"]
    for name, row in metrics.items():
        rho = "n/a" if row["spearman"] is None else f"{row['spearman']:.1f}"
        lines.append(f"{name:<20} {rho:>9} {row['covered']:>6}/{row['pairs']:<6}")
    return "\n".join(lines)


def _evaluate(_: None, options: EvaluateOptions):
    vectors = _read(options)
    metrics = _scores_json(similarity_scores(vectors, options.benchmarks,
                                             not options.case_sensitive))
    if options.json:
        return [json.dumps(metrics, sort_keys=True) + "\n"]
    return [similarity_table(metrics) + "\n"]
