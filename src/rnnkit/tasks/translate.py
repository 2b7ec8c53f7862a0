"""Translation (and any sentence → sentence mapping, e.g. utterance → reply): the pieces of the
``translate`` application (:mod:`rnnkit.apps.translate`): parallel data → token ids, the
Trainer's task for a :class:`~rnnkit.models.seq2seq.Seq2Seq`, greedy or beam-search output,
scores (BLEU and chrF through sacrebleu on detokenized text, and perplexity).

Each side is tokenized by one of the language model's tokenizers (``bpe`` by default: byte-level
BPE decodes back to plain text, so BLEU is computed on detokenized output; ``word`` joins
tokens with spaces), shared by both sides or one per side. Model ids are the tokenizer's ids
shifted by three: 0 ``<pad>``, 1 ``<bos>``, 2 ``<eos>``.

A checkpoint directory holds ``model.safetensors``, ``config.json`` (model config, data and
decoding options) and ``src_tokenizer.json`` / ``tgt_tokenizer.json``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional as nnf

from rnnkit.data.bucketing import BucketBatchSampler, pad_sequences
from rnnkit.data.parallel import clean, filter_pairs, read_parallel
from rnnkit.data.tokenizers import Tokenizer, build_tokenizer, tokenizer_from_json
from rnnkit.errors import RnnkitError
from rnnkit.models.decoding import beam_search, greedy
from rnnkit.models.seq2seq import Seq2Seq, Seq2SeqConfig
from rnnkit.train import StepOutput
from rnnkit.train import checkpoint as ckpt

__all__ = ["Codec", "Translator", "TranslateTask", "build_codecs", "prepare_data", "translate",
           "evaluate_pairs", "corpus_scores", "pair_loss"]

PAD_ID, BOS_ID, EOS_ID, SHIFT = 0, 1, 2, 3
SRC_TOKENIZER, TGT_TOKENIZER = "src_tokenizer.json", "tgt_tokenizer.json"


class Codec:
    """Text ↔ model ids of one side: a tokenizer, ids shifted past ``<pad> <bos> <eos>``."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size + SHIFT

    def encode(self, text: str) -> list[int]:
        return [int(i) + SHIFT for i in self.tokenizer.encode(text)]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode([i - SHIFT for i in ids if i >= SHIFT])

    @classmethod
    def from_json(cls, data: Any, source: str) -> Codec:
        """The codec of a tokenizer saved with ``tokenizer.to_json()`` (``source`` names it in
        errors)."""
        return cls(tokenizer_from_json(data, source=source))


def build_codecs(sources: list[str], targets: list[str], config: Any) -> tuple[Codec, Codec]:
    """Tokenizers trained on the training pairs, as ``config`` (``tokenizer``,
    ``tgt_tokenizer``, ``shared_vocab``, ``vocab_size``, ``min_freq``) says."""
    def make(texts, kind):
        return build_tokenizer(kind, texts, vocab_size=config.vocab_size,
                               min_freq=config.min_freq)

    if config.shared_vocab:
        shared = Codec(make(sources + targets, config.tokenizer))
        return shared, shared
    return (Codec(make(sources, config.tokenizer)),
            Codec(make(targets, config.tgt_tokenizer or config.tokenizer)))


def collate(pairs: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
    """``src`` ``(B, S)``, ``src_lengths`` ``(B,)``, ``tgt_in`` = ``<bos> y``, ``tgt_out`` =
    ``y <eos>`` ``(B, T)``."""
    src, src_lengths = pad_sequences([s for s, _ in pairs], PAD_ID)
    tgt_in, _ = pad_sequences([[BOS_ID, *t] for _, t in pairs], PAD_ID)
    tgt_out, _ = pad_sequences([[*t, EOS_ID] for _, t in pairs], PAD_ID)
    return {"src": src, "src_lengths": src_lengths, "tgt_in": tgt_in, "tgt_out": tgt_out}


def batch_loss(model: Seq2Seq, batch: dict, teacher_forcing: float = 1.0,
               label_smoothing: float = 0.0, reduction: str = "mean") -> tuple[torch.Tensor, int]:
    """Cross-entropy over the real target tokens (``<eos>`` included) and their number."""
    device = next(model.parameters()).device
    logits = model(batch["src"].to(device), batch["src_lengths"], batch["tgt_in"].to(device),
                   teacher_forcing)  # (B, T, V)
    targets = batch["tgt_out"].to(device)  # (B, T)
    loss = nnf.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(),
                             ignore_index=PAD_ID, label_smoothing=label_smoothing,
                             reduction=reduction)
    return loss, int((targets != PAD_ID).sum())


@dataclass
class Translator:
    """A loaded model with its codecs and decoding defaults."""

    model: Seq2Seq
    src: Codec
    tgt: Codec
    data: dict[str, Any]

    def decode_options(self, beam_size: int | None = None, alpha: float | None = None,
                       max_len_a: float | None = None, max_len_b: int | None = None) -> dict:
        options = {"beam_size": beam_size, "alpha": alpha, "max_len_a": max_len_a,
                   "max_len_b": max_len_b}
        return {k: self.data.get(k) if v is None else v for k, v in options.items()}

    def prepare(self, text: str) -> str:
        return clean(text, lowercase=self.data.get("lowercase", False),
                     normalize=self.data.get("normalize", "NFC"))


def translate(translator: Translator, texts: Sequence[str], *, beam_size: int = 5,
              alpha: float = 0.6, max_len_a: float = 1.5, max_len_b: int = 10,
              batch_size: int = 64, where: Callable[[int], str] | None = None,
              alignments: list[dict] | None = None) -> list[str]:
    """One output per input text (empty text → empty output); batches sorted by length.

    A source longer than the checkpoint's ``max_source_len`` raises ``RnnkitError`` naming it
    through ``where(index)`` (default: "line N"). With a list as ``alignments``, one
    ``{"source": pieces, "output": pieces, "attention": rows}`` per text is appended to it (the
    attention weight of every output token over the source tokens; empty without attention)."""
    where = where or (lambda i: f"line {i + 1}")
    limit = translator.data.get("max_source_len", 256)
    encoded = [translator.src.encode(translator.prepare(text)) for text in texts]
    for index, ids in enumerate(encoded):
        if len(ids) > limit:
            raise RnnkitError(f"{where(index)}: source has {len(ids)} tokens, more than the "
                              f"model's limit of {limit} (max_source_len)")
    found: list = [([], None)] * len(texts)
    todo = sorted((i for i, ids in enumerate(encoded) if ids), key=lambda i: len(encoded[i]))
    device = next(translator.model.parameters()).device
    options = {"max_len_a": max_len_a, "max_len_b": max_len_b, "alpha": alpha,
               "return_attention": alignments is not None}
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        src, lengths = pad_sequences([encoded[i] for i in chunk], PAD_ID)
        if beam_size == 1:
            hyps = greedy(translator.model, src.to(device), lengths, **options)
        else:
            hyps = beam_search(translator.model, src.to(device), lengths, beam_size=beam_size,
                               **options)
        weights = hyps.attention or [None] * len(chunk)
        for i, tokens, attention in zip(chunk, hyps.tokens, weights, strict=True):
            found[i] = (tokens, attention)
    if alignments is not None:
        alignments.extend(_alignment(translator, ids, tokens, attention)
                          for ids, (tokens, attention) in zip(encoded, found, strict=True))
    return [translator.tgt.decode(tokens).strip() for tokens, _ in found]


def _alignment(translator: Translator, src_ids, tgt_ids, attention) -> dict:
    rows = [] if attention is None else [[round(float(w), 4) for w in row] for row in attention]
    return {"source": [translator.src.decode([i]) for i in src_ids],
            "output": [translator.tgt.decode([i]) for i in tgt_ids], "attention": rows}


def corpus_scores(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    """Corpus BLEU (cased and lower-cased) and chrF of detokenized text (sacrebleu)."""
    try:
        import sacrebleu
    except ImportError:
        raise RnnkitError("BLEU and chrF need sacrebleu: pip install 'rnnkit[apps]' "
                          "(or pip install sacrebleu)") from None
    return {"bleu": sacrebleu.corpus_bleu(hypotheses, [references]).score,
            "bleu_lc": sacrebleu.corpus_bleu(hypotheses, [references], lowercase=True).score,
            "chrf": sacrebleu.corpus_chrf(hypotheses, [references]).score}


def pair_loss(model: Seq2Seq, pairs: list[tuple[list[int], list[int]]], batch_size: int = 64
              ) -> float:
    """Mean per-token cross-entropy (nats) of the target given the source, teacher-forced."""
    total, count = 0.0, 0
    for start in range(0, len(pairs), batch_size):
        loss, n = batch_loss(model, collate(pairs[start : start + batch_size]),
                             reduction="sum")
        total, count = total + float(loss), count + n
    return total / max(count, 1)


def evaluate_pairs(translator: Translator, sources: list[str], references: list[str], *,
                   batch_size: int = 64, where: Callable[[int], str] | None = None,
                   **decoding) -> tuple[dict[str, Any], list[str]]:
    """BLEU, chrF, loss and perplexity of ``translator`` on aligned sources and references,
    and the outputs."""
    started = time.perf_counter()
    with torch.no_grad():
        hypotheses = translate(translator, sources, batch_size=batch_size, where=where,
                               **decoding)
        pairs = [(translator.src.encode(translator.prepare(s)), translator.tgt.encode(r))
                 for s, r in zip(sources, references, strict=True)]
        pairs = [(s, t) for s, t in pairs if s]
        loss = pair_loss(translator.model, pairs, batch_size)
    result = corpus_scores(hypotheses, references)
    result.update(loss=loss, perplexity=math.exp(min(loss, 50.0)), sentences=len(sources),
                  seconds=time.perf_counter() - started, **decoding)
    return result, hypotheses


class TranslateTask:
    """The translation task as the :class:`~rnnkit.train.Trainer` sees it. ``config`` is the
    application's :class:`~rnnkit.apps.translate.TranslateConfig` (batching, loss and
    validation options, and ``data_options()`` for the checkpoint)."""

    name, unit, perplexity = "translate", "tok", True

    def __init__(self, config: Any, model_cfg: Seq2SeqConfig, codecs,
                 train_pairs, valid_pairs, valid_texts, seed: int = 0) -> None:
        self.config, self.model_cfg, self.seed = config, model_cfg, seed
        self.src, self.tgt = codecs
        self.train_pairs, self.valid_pairs = train_pairs, valid_pairs
        self.valid_sources, self.valid_refs = valid_texts
        self.monitor = "valid_bleu" if config.eval_bleu else "valid_loss"
        self.monitor_mode = "max" if config.eval_bleu else "min"

    def train_batches(self, epoch: int, shard):
        sampler = BucketBatchSampler([len(s) + len(t) for s, t in self.train_pairs],
                                     self.config.batch_size, max_tokens=self.config.max_tokens,
                                     seed=self.seed)
        sampler.set_epoch(epoch)
        batches = sampler.batches()[shard.rank :: shard.world_size]
        return [collate([self.train_pairs[i] for i in batch]) for batch in batches]

    def step(self, model, batch) -> StepOutput:
        loss, count = batch_loss(model, batch, self.config.teacher_forcing,
                                 self.config.label_smoothing)
        return StepOutput(loss, count)

    def evaluate(self, model) -> dict[str, float]:
        loss = pair_loss(model, self.valid_pairs, 2 * self.config.batch_size)
        metrics = {"valid_loss": loss, "valid_ppl": math.exp(min(loss, 50.0))}
        if self.config.eval_bleu:
            count = self.config.eval_bleu
            translator = Translator(model, self.src, self.tgt, self.config.data_options())
            hyps = translate(translator, self.valid_sources[:count], beam_size=1,
                             max_len_a=self.config.max_len_a, max_len_b=self.config.max_len_b,
                             batch_size=2 * self.config.batch_size)
            scores = corpus_scores(hyps, self.valid_refs[:count])
            metrics.update(valid_bleu=scores["bleu"], valid_chrf=scores["chrf"])
        return metrics

    def checkpoint_files(self) -> dict:
        return {ckpt.CONFIG: {"model": self.model_cfg.to_dict(),
                              "data": self.config.data_options()},
                SRC_TOKENIZER: self.src.tokenizer.to_json(),
                TGT_TOKENIZER: self.tgt.tokenizer.to_json()}


def _read(path: str, target: str | None, config: Any):
    return read_parallel(path, target, lowercase=config.lowercase, normalize=config.normalize)


def _encode_pairs(corpus, codecs) -> list[tuple[list[int], list[int]]]:
    return [(codecs[0].encode(s), codecs[1].encode(t))
            for s, t in zip(corpus.sources, corpus.targets, strict=True)]


def prepare_data(config: Any, report: Callable[[str], None] = print,
                 codecs: tuple[Codec, Codec] | None = None):
    """(codecs, train pairs, valid pairs, (valid sources, valid references)) as ids/texts;
    ``codecs`` are built on the training data unless given."""
    if not config.train:
        raise RnnkitError("--train: a training file is required (source file with "
                          "--train-tgt, or a source<TAB>target file)")
    corpus = _read(config.train, config.train_tgt, config)
    valid = _read(config.valid, config.valid_tgt, config) if config.valid else None
    if valid is None:  # hold out the last pairs (said in the log)
        held = min(500, len(corpus) // 10)
        if held < 1:
            raise RnnkitError(f"--train {corpus.name}: {len(corpus)} pairs are too few to hold "
                              "out validation pairs; give more data or --valid")
        report(f"no --valid: the last {held} training pairs are held out for validation")
        valid = type(corpus)(corpus.sources[-held:], corpus.targets[-held:], "held out")
        corpus = type(corpus)(corpus.sources[:-held], corpus.targets[:-held], corpus.name)
    codecs = codecs or build_codecs(corpus.sources, corpus.targets, config)
    pairs = _encode_pairs(corpus, codecs)
    kept, _ = filter_pairs([s for s, _ in pairs], [t for _, t in pairs], config.max_len,
                           lambda message: report(f"{corpus.name}: {message}"))
    if not kept:
        raise RnnkitError(f"--train {corpus.name}: no pair is left after the length filter "
                          f"(--max-len {config.max_len})")
    valid_pairs = [(s, t) for s, t in _encode_pairs(valid, codecs) if s and t]
    if not valid_pairs:
        raise RnnkitError(f"--valid {valid.name}: no pair with text on both sides")
    return codecs, [pairs[i] for i in kept], valid_pairs, (valid.sources, valid.targets)
