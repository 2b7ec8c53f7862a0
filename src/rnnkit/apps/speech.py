"""``rnnkit speech``: speech recognition with CTC, WAV in, text and its probability out.

Data (``--train``, ``--valid``, ``eval --data``): a directory of WAV files (transcripts in
``.txt`` files of the same stem, or FSDD names ``{digit}_{speaker}_{take}.wav``) or a list file
of ``path<TAB>transcript`` lines (see :mod:`rnnkit.data.audio`). Features: log-mel or MFCC,
normalised per utterance, SpecAugment masks in training. Model: :mod:`rnnkit.models.speech`
(strided convolutions, a bidirectional RNN stack, CTC over the characters of the training
transcripts). Decoding: greedy or prefix beam search, optionally held to the training words
(:mod:`rnnkit.models.speech_decoding`); every transcript comes with ``log p(text | audio)``.

Commands: ``train``; ``eval`` (CER, WER, utterance accuracy, real-time factor); ``transcribe``
(and ``predict``, the same) printing ``file<TAB>text<TAB>log_prob<TAB>prob`` per file; ``report``
(an HTML page: the spectrogram, the per-frame CTC posteriors, the top layer's units).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from rnnkit.apps import Application, Checkpoint, PrepareContext, Verb, register
from rnnkit.data.audio import (
    FeatureConfig,
    Utterance,
    frames_of,
    load_frames,
    read_dataset,
    read_wav,
    require,
    spec_augment,
    speed_perturb,
)
from rnnkit.data.bucketing import BucketBatchSampler
from rnnkit.errors import RnnkitError
from rnnkit.models.speech import SpeechModelConfig, SpeechRecognizer, ctc_loss, output_lengths
from rnnkit.models.speech_decoding import (
    Lexicon,
    greedy_decode,
    prefix_beam_nbest,
    transcript_log_prob,
)
from rnnkit.train import StepOutput
from rnnkit.train.config import option, section

__all__ = ["Speech", "SpeechConfig", "Alphabet"]


@dataclass
class SpeechConfig:
    train: str = option("", "training data: a directory of WAV files or a list file "
                            "(path<TAB>transcript per line)")
    valid: str = option("", "validation data, as --train (default: 5 % of --train, held out)")
    sample_rate: int = option(16000, "audio is resampled to this rate (Hz)")
    features: str = option("logmel", "frame features", ("logmel", "mfcc"))
    n_mels: int = option(40, "mel bands")
    n_mfcc: int = option(13, "MFCC coefficients (--features mfcc)")
    window_ms: float = option(25.0, "analysis window (ms)")
    hop_ms: float = option(10.0, "frame shift (ms)")
    freq_masks: int = option(2, "SpecAugment: frequency masks per training utterance")
    freq_mask_width: int = option(8, "SpecAugment: widest frequency mask (features)")
    time_masks: int = option(2, "SpecAugment: time masks per training utterance")
    time_mask_width: int = option(10, "SpecAugment: longest time mask (frames; at most 1/5 "
                                      "of the utterance)")
    speed_perturb: str = option("", "speed perturbation: extra copies of each training "
                                    "utterance played at these speeds, comma-separated (e.g. "
                                    "0.9,1.1, as Kaldi recipes do); empty: none")
    batch_size: int = option(32, "utterances per batch")
    model: SpeechModelConfig = section(SpeechModelConfig, "model")

    def __post_init__(self) -> None:
        for name in ("sample_rate", "n_mels", "n_mfcc", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')}: must be >= 1, "
                                 f"got {getattr(self, name)}")
        if not 0 < self.hop_ms <= self.window_ms:
            raise ValueError(f"--hop-ms: must be in (0, --window-ms], got {self.hop_ms}")
        if self.features == "mfcc" and self.n_mfcc > self.n_mels:
            raise ValueError(f"--n-mfcc: must be <= --n-mels ({self.n_mels}), got {self.n_mfcc}")
        self.speeds()  # a clear error now, not after the audio is read

    def speeds(self) -> tuple[float, ...]:
        """1.0 and the ``--speed-perturb`` factors: the speeds each training utterance is used
        at."""
        factors = []
        for part in (p.strip() for p in self.speed_perturb.split(",")):
            if not part:
                continue
            try:
                factor = float(part)
            except ValueError:
                raise ValueError(f"--speed-perturb: {part!r} is not a number (expected factors "
                                 "such as 0.9,1.1)") from None
            if not 0.5 <= factor <= 2.0:
                raise ValueError(f"--speed-perturb: factors must be in [0.5, 2], got {part}")
            if factor != 1.0 and factor not in factors:
                factors.append(factor)
        return (1.0, *factors)

    def feature_config(self) -> FeatureConfig:
        return FeatureConfig(self.sample_rate, self.features, self.n_mels, self.n_mfcc,
                             self.window_ms, self.hop_ms)


@dataclass
class EvalOptions:
    data: str = option("", "utterances to score, as --train (default: the run's --valid)")
    beam_size: int = option(1, "1: greedy decoding; more: prefix beam search")
    lexicon: bool = option(False, "beam search only builds words seen in training")
    batch_size: int = option(32, "utterances per forward pass")


@dataclass
class TranscribeOptions:
    files: tuple[str, ...] = option((), "WAV files, or directories of them", positional=True)
    audio: str = option("", "more WAV files or directories, separated by commas")
    beam_size: int = option(1, "1: greedy decoding; more: prefix beam search")
    lexicon: bool = option(False, "beam search only builds words seen in training")


@dataclass
class ReportOptions:
    audio: str = option("", "the WAV file to show")


class Alphabet:
    """Characters ↔ CTC symbol ids (0 is the blank), and the words of the training transcripts."""

    def __init__(self, characters: list[str], words: list[str]) -> None:
        self.characters, self.words = characters, words
        self.ids = {c: i + 1 for i, c in enumerate(characters)}

    @classmethod
    def build(cls, utterances: list[Utterance]) -> Alphabet:
        text = [u.text for u in utterances]
        characters = sorted({c for t in text for c in t})
        return cls(characters, sorted({w for t in text for w in t.split()}))

    def __len__(self) -> int:
        return len(self.characters) + 1

    def encode(self, utterance: Utterance) -> list[int]:
        for column, char in enumerate(utterance.text, 1):
            if char not in self.ids:
                raise RnnkitError(f"{utterance.where}: transcript character {char!r} (column "
                                  f"{column}) is not in the alphabet of the training "
                                  f"transcripts ({''.join(self.characters)!r})")
        return [self.ids[c] for c in utterance.text]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.characters[i - 1] for i in ids)

    def lexicon(self) -> Lexicon:
        if " " not in self.ids:
            return Lexicon([[self.ids[c] for c in w] for w in self.words], space=-1)
        return Lexicon([[self.ids[c] for c in w] for w in self.words], space=self.ids[" "])

    def to_json(self) -> dict[str, list[str]]:
        return {"characters": self.characters, "words": self.words}

    @classmethod
    def from_json(cls, data: dict[str, list[str]]) -> Alphabet:
        return cls(list(data["characters"]), list(data["words"]))


@dataclass
class Prepared:
    """Features ``(T, F)`` and symbol ids of each training and validation utterance."""

    alphabet: Alphabet
    train: list[tuple[np.ndarray, list[int]]]
    valid: list[tuple[np.ndarray, list[int]]]
    num_features: int


def featurize(utterances: list[Utterance], alphabet: Alphabet, config: SpeechConfig,
              speeds: tuple[float, ...] = (1.0,)) -> list[tuple[np.ndarray, list[int]]]:
    """(frames, ids) of each utterance at each of ``speeds`` (1.0 first); an utterance too short
    for its transcript is refused, a sped-up copy too short for it is left out."""
    features = config.feature_config()
    items = []
    for utterance in utterances:
        ids = alphabet.encode(utterance)
        needed = len(ids) + sum(a == b for a, b in zip(ids, ids[1:], strict=False))
        samples = read_wav(utterance.path, features.sample_rate)  # read once, sped up per speed
        for speed in speeds:
            frames = frames_of(speed_perturb(samples, features.sample_rate, speed), features)
            out = int(output_lengths(torch.tensor([frames.shape[0]]), config.model.subsample))
            if out >= needed:
                items.append((frames, ids))
            elif speed == 1.0:
                raise RnnkitError(f"{utterance.where}: {utterance.path.name} is too short for "
                                  f"its transcript ({out} output frames, CTC needs {needed})")
    return items


def pad_frames(frames: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames ``(B, T, F)`` padded with zeros, and lengths ``(B,)``."""
    tensors = [torch.from_numpy(f) for f in frames]
    return pad_sequence(tensors, batch_first=True), torch.tensor([len(f) for f in frames])


class SpeechTask:
    """The Trainer's task: bucketed batches, SpecAugment, CTC loss, greedy CER/WER."""

    monitor, monitor_mode, unit = "valid_cer", "min", "utt"

    def __init__(self, config: SpeechConfig, data: Prepared, seed: int) -> None:
        self.config, self.data, self.seed = config, data, seed

    def train_batches(self, epoch: int, shard):
        lengths = [len(frames) for frames, _ in self.data.train]
        sampler = BucketBatchSampler(lengths, self.config.batch_size, seed=self.seed)
        sampler.set_epoch(epoch)
        batches = sampler.batches()[shard.rank::shard.world_size]
        return [(indices, self.seed * 1_000_003 + epoch * 100_003 + number)
                for number, indices in enumerate(batches)]

    def step(self, model, batch) -> StepOutput:
        indices, batch_seed = batch
        frames, lengths = pad_frames([self.data.train[i][0] for i in indices])
        c = self.config
        frames = spec_augment(frames, lengths, torch.Generator().manual_seed(batch_seed),
                              freq_masks=c.freq_masks, freq_width=c.freq_mask_width,
                              time_masks=c.time_masks, time_width=c.time_mask_width)
        device = next(model.parameters()).device
        log_probs, out_lengths = model(frames.to(device), lengths)
        loss = ctc_loss(log_probs.float().cpu(), out_lengths,
                        [self.data.train[i][1] for i in indices])
        return StepOutput(loss, len(indices))

    def evaluate(self, model) -> dict[str, float]:
        items = self.data.valid
        decoded, losses = [], []
        for start in range(0, len(items), 64):
            chunk = items[start:start + 64]
            log_probs, out_lengths = _forward(model, [f for f, _ in chunk])
            losses.append(float(ctc_loss(log_probs, out_lengths, [i for _, i in chunk]))
                          * len(chunk))
            decoded += [greedy_decode(log_probs[row, :n]) for row, n in enumerate(out_lengths)]
        alphabet = self.data.alphabet
        scores = error_rates([alphabet.decode(i) for _, i in items],
                             [alphabet.decode(d) for d in decoded])
        return {"valid_loss": sum(losses) / len(items), "valid_cer": scores["cer"],
                "valid_wer": scores["wer"], "valid_accuracy": scores["utterance_accuracy"]}

    def checkpoint_files(self) -> dict[str, Any]:
        return {"config.json": {"num_features": self.data.num_features,
                                "num_symbols": len(self.data.alphabet)},
                "alphabet.json": self.data.alphabet.to_json()}


def _forward(model, frames: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """CTC log-probabilities ``(B, T', V)`` on the CPU and output lengths of a list of frames."""
    padded, lengths = pad_frames(frames)
    device = next(model.parameters()).device
    log_probs, out_lengths = model(padded.to(device), lengths)
    return log_probs.float().cpu(), out_lengths


def error_rates(references: list[str], hypotheses: list[str]) -> dict[str, float]:
    """Corpus CER and WER (edit operations / reference length, by ``jiwer``) and the share of
    exactly right transcripts."""
    jiwer = require("jiwer")
    exact = sum(r == h for r, h in zip(references, hypotheses, strict=True))
    return {"cer": float(jiwer.cer(references, hypotheses)),
            "wer": float(jiwer.wer(references, hypotheses)),
            "utterance_accuracy": exact / len(references)}


@dataclass
class Loaded:
    """A trained model (``model``), or an ensemble: ``model`` and the ``others`` members, all
    with the same alphabet, features and frame rate."""

    model: SpeechRecognizer
    alphabet: Alphabet
    config: SpeechConfig
    others: tuple[SpeechRecognizer, ...] = ()

    @property
    def models(self) -> list[SpeechRecognizer]:
        return [self.model, *self.others]


@register("speech")
class Speech(Application):
    summary = "speech recognition: WAV in, text and its probability out (CTC)"
    description = (
        "Speech recognition with CTC. Data (--train, --valid, eval --data): a directory of WAV "
        "files (transcripts in .txt files of the same stem, or FSDD names "
        "{digit}_{speaker}_{take}.wav) or a list file of path<TAB>transcript lines. Log-mel or "
        "MFCC features normalised per utterance, SpecAugment in training; strided convolutions, "
        "a bidirectional GRU/LSTM stack, CTC over the characters of the training transcripts. "
        "Greedy or prefix beam search decoding (--beam-size, --lexicon); each transcript comes "
        "with log p(text | audio).")
    examples = """  rnnkit speech train --train train.tsv --valid valid.tsv --out runs/speech
  rnnkit speech eval --checkpoint runs/speech --data data/test.tsv --beam-size 8 --json
  rnnkit speech transcribe --checkpoint runs/speech one.wav two.wav recordings/
  rnnkit speech report --checkpoint runs/speech --audio one.wav --output one.html
"""
    Config = SpeechConfig
    EvalOptions = EvalOptions
    PredictOptions = TranscribeOptions
    # rnnkit serve: a WAV file sent with the request goes where --audio would name one
    serve_uploads = {"predict": {"audio": ".wav"}, "transcribe": {"audio": ".wav"}}

    def prepare(self, config: SpeechConfig, context: PrepareContext) -> Prepared:
        if not config.train:
            raise RnnkitError("--train: required (a directory of WAV files or a list file)")
        train = read_dataset(config.train, "--train")
        if config.valid:
            valid = read_dataset(config.valid, "--valid")
        else:
            train, valid = _hold_out(train)
        if context.resume is not None:
            alphabet = Alphabet.from_json(context.resume.read_json("alphabet.json"))
        else:
            alphabet = Alphabet.build(train)
        return Prepared(alphabet, featurize(train, alphabet, config, config.speeds()),
                        featurize(valid, alphabet, config), config.feature_config().size)

    def build_model(self, config: SpeechConfig, data: Prepared) -> SpeechRecognizer:
        return SpeechRecognizer(data.num_features, len(data.alphabet), config.model)

    def task(self, config: SpeechConfig, data: Prepared, seed: int) -> SpeechTask:
        return SpeechTask(config, data, seed)

    def load(self, checkpoint: Checkpoint) -> Loaded:
        alphabet = Alphabet.from_json(checkpoint.read_json("alphabet.json"))
        config: SpeechConfig = checkpoint.options
        model = SpeechRecognizer(config.feature_config().size, len(alphabet), config.model)
        return Loaded(checkpoint.load_weights(model), alphabet, config)

    def load_ensemble(self, checkpoints: list[Checkpoint]) -> Loaded:
        """Models with the same alphabet, features and subsampling (e.g. trained with other
        seeds): each decodes its candidates, and the ensemble picks the candidate with the highest
        mixture probability ``log((1/M) Σ_m p_m(text | audio))``, reported as its log_prob."""
        first, *others = self.load_members(checkpoints, {
            "its alphabet (alphabet.json)": lambda m: m.alphabet.to_json(),
            "its features or frame rate (--subsample)":
                lambda m: (m.config.feature_config(), m.config.model.subsample)})
        return Loaded(first.model, first.alphabet, first.config,
                      tuple(m.model for m in others))

    def evaluate(self, loaded: Loaded, options: EvalOptions) -> dict[str, Any]:
        source = options.data or loaded.config.valid
        if not source:
            raise RnnkitError("--data: required (the run had no --valid)")
        utterances = read_dataset(source, "--data")
        for utterance in utterances:
            loaded.alphabet.encode(utterance)  # characters outside the alphabet: a clear error
        started = time.perf_counter()
        results, seconds = [], 0.0
        for start in range(0, len(utterances), options.batch_size):
            chunk = utterances[start:start + options.batch_size]
            results += transcribe(loaded, [u.path for u in chunk], options)
            seconds += sum(r["seconds"] for r in results[-len(chunk):])
        elapsed = time.perf_counter() - started
        metrics: dict[str, Any] = error_rates([u.text for u in utterances],
                                              [r["text"] for r in results])
        metrics.update(utterances=len(utterances), audio_seconds=round(seconds, 2),
                       real_time_factor=elapsed / seconds,
                       mean_log_prob=sum(r["log_prob"] for r in results) / len(results))
        return metrics

    def predict(self, loaded: Loaded, options: TranscribeOptions):
        return _transcribe_lines(loaded, options)

    def export_graphs(self, loaded: Loaded):
        """frames ``(B, T, F)``, lengths ``(B,)`` → CTC log-probabilities ``(B, T', V)`` and
        out_lengths ``(B,)`` (the acoustic model; greedy or beam decoding stays outside)."""
        from rnnkit.apps.base import ExportGraph
        from rnnkit.models.exportable import MethodGraph
        from rnnkit.nn.exportable import PaddedRNN

        model = loaded.model.cpu().eval()
        frames = torch.randn(2, 40, loaded.config.feature_config().size,
                             generator=torch.Generator().manual_seed(0))
        lengths = torch.tensor([40, 27])
        graph = MethodGraph(model, rnn=PaddedRNN(model.rnn, cell_state=False))
        return [ExportGraph("acoustic", graph.eval(), (frames, lengths), ["frames", "lengths"],
                            ["log_probs", "out_lengths"],
                            {"frames": {0: "batch", 1: "frames"}, "lengths": {0: "batch"},
                             "log_probs": {0: "batch", 1: "out_frames"},
                             "out_lengths": {0: "batch"}}, model,
                            "frames: features of rnnkit.data.audio.load_frames with the "
                            "config's feature options; symbol 0 the CTC blank, k the k-th "
                            "character of alphabet.json; decoding stays outside")]

    def verbs(self) -> list[Verb]:
        return [Verb("transcribe", "print the transcript of each WAV file and its probability",
                     TranscribeOptions, _transcribe_lines),
                Verb("report", "an HTML page for one WAV file: spectrogram, per-frame CTC "
                               "posteriors, hidden units (write it with --output FILE.html)",
                     ReportOptions, _report)]


    def inspect(self, loaded: Loaded, config):
        """``rnnkit inspect --text FILE.wav``: the page of the ``report`` verb for that file."""
        from rnnkit.apps.speech_report import fill_report
        from rnnkit.diagnostics.report import Report

        _one_model(loaded)
        paths = audio_paths(config.text.strip())
        if len(paths) != 1:
            raise RnnkitError(f"the speech report shows one WAV file, got {len(paths)}")
        report = Report(title=f"rnnkit speech: {paths[0].name}", symbols=[], units=[])
        fill_report(loaded, paths[0], report)
        return report


def _hold_out(train: list[Utterance]) -> tuple[list[Utterance], list[Utterance]]:
    """5 % of the training utterances (at least 1, chosen with a fixed seed) for validation."""
    if len(train) < 2:
        raise RnnkitError("--valid: required when --train holds fewer than 2 utterances")
    order = list(range(len(train)))
    random.Random(0).shuffle(order)
    held = set(order[:max(1, len(train) // 20)])
    return ([u for i, u in enumerate(train) if i not in held],
            [u for i, u in enumerate(train) if i in held])


def transcribe(loaded: Loaded, paths: list[Path], options) -> list[dict[str, Any]]:
    """Per file: ``text``, ``log_prob`` (``log p(text | audio)``) and ``seconds`` of audio."""
    features = loaded.config.feature_config()
    frames = [load_frames(path, features) for path in paths]
    with torch.no_grad():
        outputs = [_forward(model, frames) for model in loaded.models]
    lexicon = loaded.alphabet.lexicon() if options.lexicon else None
    results = []
    for row, length in enumerate(outputs[0][1].tolist()):
        members = [log_probs[row, :length] for log_probs, _ in outputs]  # M × (T', V)
        ids, log_prob = _decode(members, options.beam_size, lexicon)
        results.append({"text": loaded.alphabet.decode(ids), "log_prob": log_prob,
                        "seconds": (len(frames[row]) - 1) * features.hop_ms / 1000})
    return results


def _decode(members: list[torch.Tensor], beam_size: int, lexicon: Lexicon | None,
            ) -> tuple[list[int], float]:
    """The transcript of one utterance and its log-probability, from the CTC outputs ``(T', V)``
    of one model or of an ensemble's members. An ensemble gathers each member's candidates
    (greedy, or its final beam) and keeps the one of highest mixture probability."""
    def candidates(log_probs: torch.Tensor) -> list[list[int]]:
        if beam_size > 1 or lexicon is not None:
            return prefix_beam_nbest(log_probs, max(1, beam_size), lexicon)
        return [greedy_decode(log_probs)]

    if len(members) == 1:
        ids = candidates(members[0])[0]
        return ids, transcript_log_prob(members[0], ids)
    pool = {tuple(ids) for log_probs in members for ids in candidates(log_probs)}
    scored = []
    for ids in sorted(pool):
        each = torch.tensor([transcript_log_prob(m, list(ids)) for m in members],
                            dtype=torch.float64)
        scored.append((float(torch.logsumexp(each, 0)) - float(np.log(len(members))), ids))
    log_prob, best = max(scored, key=lambda item: item[0])
    return list(best), log_prob


def audio_paths(text: str, files: tuple[str, ...] = ()) -> list[Path]:
    """The WAV files named by the bare arguments ``files`` and by ``--audio`` (comma-separated);
    a directory stands for its ``*.wav`` files."""
    paths: list[Path] = []
    for part in [*files, *(p.strip() for p in text.split(","))]:
        if not part:
            continue
        path = Path(part)
        paths += sorted(path.glob("*.wav")) if path.is_dir() else [path]
    if not paths:
        raise RnnkitError("no audio given: name WAV files or directories (or --audio a.wav,b.wav)")
    return paths


def _transcribe_lines(loaded: Loaded, options: TranscribeOptions):
    if options.beam_size < 1:
        raise RnnkitError(f"--beam-size: must be >= 1, got {options.beam_size}")
    for path in audio_paths(options.audio, options.files):
        result = transcribe(loaded, [path], options)[0]
        probability = float(np.exp(result["log_prob"]))
        yield f"{path}\t{result['text']}\t{result['log_prob']:.4f}\t{probability:.4f}\n"


def _report(loaded: Loaded, options: ReportOptions):
    from rnnkit.apps.speech_report import speech_report

    _one_model(loaded)
    paths = audio_paths(options.audio)
    if len(paths) != 1:
        raise RnnkitError(f"--audio: the report shows one file, got {len(paths)}")
    yield speech_report(loaded, paths[0])


def _one_model(loaded: Loaded) -> None:
    if loaded.others:
        raise RnnkitError("--checkpoint: the report shows one model's posteriors; give one "
                          "--checkpoint")
