"""Translation (and any sentence → sentence mapping, e.g. utterance → reply): parallel data →
:class:`~rnnkit.models.seq2seq.Seq2Seq` → greedy or beam-search output, scored with BLEU and
chrF (sacrebleu, on detokenized text) and perplexity.

Each side is tokenized by one of the language model's tokenizers (``bpe`` by default: byte-level
BPE decodes back to plain text, so BLEU is computed on detokenized output; ``word`` joins
tokens with spaces), shared by both sides or one per side. Model ids are the tokenizer's ids
shifted by three: 0 ``<pad>``, 1 ``<bos>``, 2 ``<eos>``.

A checkpoint directory holds ``model.safetensors``, ``config.json`` (model config and data
options) and ``src_tokenizer.json`` / ``tgt_tokenizer.json``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.nn import functional as nnf

from rnnkit.data.bucketing import BucketBatchSampler, pad_sequences
from rnnkit.data.parallel import NORMALIZATIONS, clean, filter_pairs, read_parallel
from rnnkit.data.tokenizers import Tokenizer, build_tokenizer, tokenizer_from_json
from rnnkit.errors import RnnkitError
from rnnkit.models._config import CELLS
from rnnkit.models.decoding import beam_search, greedy
from rnnkit.models.seq2seq import ATTENTIONS, Seq2Seq, Seq2SeqConfig
from rnnkit.train import StepOutput, TrainConfig, Trainer, TrainResult, seed_everything
from rnnkit.train import checkpoint as ckpt
from rnnkit.train.config import option as _opt
from rnnkit.train.trainer import resolve_device

__all__ = ["TranslateConfig", "Codec", "TranslateTask", "train", "load", "translate",
           "evaluate_pairs", "corpus_scores", "Translator"]

PAD_ID, BOS_ID, EOS_ID, SHIFT = 0, 1, 2, 3
SRC_TOKENIZER, TGT_TOKENIZER = "src_tokenizer.json", "tgt_tokenizer.json"


@dataclass
class TranslateConfig:
    """Data, model and decoding options of ``rnnkit translate train``."""

    train: str = _opt("", "training source file (plain or .gz), or a source<TAB>target file")
    train_tgt: str | None = _opt(None, "training target file, line-aligned with --train")
    valid: str | None = _opt(None, "validation source file or TSV (default: 500 held-out pairs)")
    valid_tgt: str | None = _opt(None, "validation target file, line-aligned with --valid")
    lowercase: bool = _opt(False, "lower-case both sides")
    normalize: str = _opt("NFC", "Unicode normalisation of both sides", NORMALIZATIONS)
    tokenizer: str = _opt("bpe", "token unit (of both sides unless --tgt-tokenizer)",
                          ("bpe", "word", "char"))
    tgt_tokenizer: str | None = _opt(None, "token unit of the target side (default: "
                                     "--tokenizer)", ("bpe", "word", "char"))
    vocab_size: int = _opt(8000, "bpe / word: vocabulary size per tokenizer")
    shared_vocab: bool = _opt(False, "one tokenizer trained on both sides")
    min_freq: int = _opt(1, "word / char: rarer tokens become <unk>")
    max_len: int = _opt(50, "drop training pairs with a side longer than this (tokens)")
    max_source_len: int = _opt(256, "longest source (tokens) the model accepts when run")
    cell: str = _opt("gru", "recurrent cell", tuple(CELLS))
    embed_dim: int = _opt(256, "embedding size")
    hidden_size: int = _opt(256, "hidden units (encoder: per direction)")
    num_layers: int = _opt(1, "layers of encoder and decoder")
    bidirectional: bool = _opt(True, "bidirectional encoder")
    attention: str = _opt("additive", "attention over the encoder states", ATTENTIONS)
    dropout: float = _opt(0.2, "dropout on embeddings, between layers and before the output")
    tie_embeddings: bool = _opt(False, "share the decoder embedding with the output layer")
    teacher_forcing: float = _opt(1.0, "probability of feeding the gold previous token")
    label_smoothing: float = _opt(0.0, "label smoothing of the training loss")
    batch_size: int = _opt(64, "sentence pairs per batch")
    max_tokens: int | None = _opt(None, "also cap a batch at this many padded source tokens")
    eval_bleu: int = _opt(500, "greedy BLEU on this many validation pairs at each evaluation "
                               "(0: loss only; then the best checkpoint is the lowest loss)")
    beam_size: int = _opt(5, "default beam size of eval and run (1: greedy)")
    alpha: float = _opt(0.6, "default length penalty exponent of beam search")
    max_len_a: float = _opt(1.5, "decode at most a·source length + b tokens: a")
    max_len_b: int = _opt(10, "decode at most a·source length + b tokens: b")

    def __post_init__(self) -> None:
        for name in ("vocab_size", "min_freq", "max_len", "max_source_len", "embed_dim",
                     "hidden_size", "num_layers", "batch_size", "beam_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')}: expected an integer >= 1, "
                                 f"got {getattr(self, name)}")
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


def build_codecs(sources: list[str], targets: list[str], config: TranslateConfig
                 ) -> tuple[Codec, Codec]:
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
    """The translation task as the :class:`~rnnkit.train.Trainer` sees it."""

    name, unit, perplexity = "translate", "tok", True

    def __init__(self, config: TranslateConfig, model_cfg: Seq2SeqConfig, codecs,
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
                              "data": self.config.data_options(),
                              "translate": asdict(self.config)},
                SRC_TOKENIZER: self.src.tokenizer.to_json(),
                TGT_TOKENIZER: self.tgt.tokenizer.to_json()}


def _read(path: str, target: str | None, config: TranslateConfig):
    return read_parallel(path, target, lowercase=config.lowercase, normalize=config.normalize)


def _encode_pairs(corpus, codecs) -> list[tuple[list[int], list[int]]]:
    return [(codecs[0].encode(s), codecs[1].encode(t))
            for s, t in zip(corpus.sources, corpus.targets, strict=True)]


def prepare_data(config: TranslateConfig, report: Callable[[str], None] = print,
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


def model_config(config: TranslateConfig, codecs) -> Seq2SeqConfig:
    try:
        return Seq2SeqConfig(
            codecs[0].vocab_size, codecs[1].vocab_size, cell=config.cell,
            embed_dim=config.embed_dim, hidden_size=config.hidden_size,
            num_layers=config.num_layers, bidirectional=config.bidirectional,
            attention=config.attention, dropout=config.dropout,
            tie_embeddings=config.tie_embeddings, pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID)
    except ValueError as err:
        raise RnnkitError(str(err)) from None


def train(config: TranslateConfig, train_config: TrainConfig, out_dir: str,
          resume: str | None = None, report: Callable[[str], None] = print) -> TrainResult:
    """Read the data, build tokenizers and an encoder–decoder, train it with the Trainer."""
    codecs = None
    if resume is not None:  # the saved tokenizers, so ids keep their meaning
        saved = load(ckpt.resolve_checkpoint(resume, prefer="last"), "cpu")
        codecs = (saved.src, saved.tgt)
    codecs, train_pairs, valid_pairs, valid_texts = prepare_data(config, report, codecs)
    seed_everything(train_config.seed)
    model_cfg = model_config(config, codecs)
    task = TranslateTask(config, model_cfg, codecs, train_pairs, valid_pairs, valid_texts,
                         train_config.seed)
    return Trainer(Seq2Seq(model_cfg), task, train_config, out_dir).fit(resume)


def load(checkpoint, device: str = "cpu", task: str = "translate") -> Translator:
    """The model (eval mode), codecs and data options of a translation checkpoint."""
    directory = ckpt.resolve_checkpoint(checkpoint)
    config = ckpt.read_config(directory, task)
    codecs = [Codec(tokenizer_from_json(ckpt.read_json(directory / name),
                                        source=str(directory / name)))
              for name in (SRC_TOKENIZER, TGT_TOKENIZER)]
    try:
        model = Seq2Seq(Seq2SeqConfig(**config["model"]))
    except (KeyError, TypeError, ValueError) as err:
        raise RnnkitError(f"checkpoint {directory}: bad model config: {err}") from None
    ckpt.load_weights(directory, model)
    model.to(resolve_device(device)).eval()
    return Translator(model, codecs[0], codecs[1], config.get("data", {}))
