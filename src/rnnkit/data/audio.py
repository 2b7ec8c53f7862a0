"""Audio for speech recognition: read WAV files, log-mel / MFCC features, SpecAugment, transcripts.

Reading uses ``soundfile`` (libsndfile): any sample rate, any channel count, PCM or float. The
channels are averaged to mono and the signal resampled to the feature rate with
``librosa.resample`` (soxr). Features come from ``librosa.feature.melspectrogram`` (the log of
the mel power, a small floor added) or ``librosa.feature.mfcc``; each utterance is then
normalised to zero mean and unit variance per feature (per-utterance mean/variance
normalisation). :func:`spec_augment` masks random frequency bands and time spans of a batch for
training (Park et al. 2019, without time warping). :func:`speed_perturb` resamples a recording to
play it faster or slower (Ko et al. 2015, Kaldi's 0.9/1.0/1.1 copies of the training set).

Transcripts come from a list file (``path<TAB>transcript`` per line, paths relative to the list
file) or a directory of WAV files (each with a ``.txt`` file of the same stem holding its
transcript, or named as in the Free Spoken Digit Dataset, ``{digit}_{speaker}_{take}.wav``, whose
transcript is the digit's English name). Every problem is an :class:`~rnnkit.errors.RnnkitError`
naming the file (and line).

Axes: T frames, F features per frame, B utterances, N samples.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from rnnkit.errors import RnnkitError

__all__ = ["FeatureConfig", "Utterance", "read_wav", "compute_features", "normalize", "frames_of",
           "load_frames", "speed_perturb", "spec_augment", "read_dataset", "require", "clean_text",
           "DIGIT_WORDS", "fsdd_take", "SILENCE_PEAK"]

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SILENCE_PEAK = 1e-4  # a signal whose peak |amplitude| (full scale 1.0) stays below is silent
_FSDD_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)$")


@dataclass(frozen=True)
class FeatureConfig:
    """How a waveform becomes frames: ``kind`` ``"logmel"`` (``n_mels`` per frame) or ``"mfcc"``
    (``n_mfcc`` per frame, from ``n_mels`` bands), a ``window_ms`` window every ``hop_ms``."""

    sample_rate: int = 16000
    kind: str = "logmel"
    n_mels: int = 40
    n_mfcc: int = 13
    window_ms: float = 25.0
    hop_ms: float = 10.0

    @property
    def size(self) -> int:
        """Features per frame (F)."""
        return self.n_mfcc if self.kind == "mfcc" else self.n_mels

    @property
    def win_length(self) -> int:
        return int(round(self.sample_rate * self.window_ms / 1000))

    @property
    def n_fft(self) -> int:
        """FFT size: the window length rounded up to a power of two."""
        return 1 << max(0, self.win_length - 1).bit_length()

    @property
    def hop_length(self) -> int:
        return max(1, int(round(self.sample_rate * self.hop_ms / 1000)))


@dataclass
class Utterance:
    """One recording and its transcript; ``where`` names it in messages (``list.tsv:3``)."""

    path: Path
    text: str
    where: str


def require(module: str):
    """The optional dependency ``module`` of the speech extra, or a clean error naming it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError:
        raise RnnkitError(f"rnnkit speech needs the {module} package: "
                          "pip install 'rnnkit[speech]'") from None


def read_wav(path: str | Path, sample_rate: int) -> np.ndarray:
    """The recording at ``path`` as mono float32 samples ``(N,)`` at ``sample_rate``.

    Raises :class:`RnnkitError` naming the file when it is not audio, is truncated, holds no
    samples or is silent."""
    soundfile = require("soundfile")
    if not Path(path).is_file():
        raise RnnkitError(f"{path}: audio file not found")
    try:
        info = soundfile.info(str(path))
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)  # (N, C)
    except (soundfile.LibsndfileError, RuntimeError, OSError) as err:
        raise RnnkitError(f"{path}: not a readable audio file ({_reason(err)})") from None
    if _truncated(info):
        raise RnnkitError(f"{path}: truncated WAV file (the header promises more samples than "
                          "the file holds)")
    if samples.shape[0] == 0:
        raise RnnkitError(f"{path}: the file holds 0 samples")
    mono = samples.mean(axis=1)  # (N,)
    if float(np.abs(mono).max()) < SILENCE_PEAK:
        raise RnnkitError(f"{path}: the recording is silent (peak amplitude below "
                          f"{SILENCE_PEAK:g})")
    if rate != sample_rate:
        mono = require("librosa").resample(mono, orig_sr=rate, target_sr=sample_rate)
    return np.ascontiguousarray(mono, dtype=np.float32)


def _reason(err: Exception) -> str:
    text = str(err)
    return text.split(": ", 1)[1] if text.startswith("Error opening") and ": " in text else text


def _truncated(info) -> bool:
    """libsndfile notes ``data : 16000 (should be 4956)`` when a WAV's data chunk is cut."""
    if info.format != "WAV":
        return False
    return any(line.startswith("data") and "should be" in line
               for line in info.extra_info.splitlines())


def compute_features(samples: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Frames ``(T, F)`` of mono ``samples`` ``(N,)``: log-mel or MFCC, not yet normalised.
    A signal shorter than one window is padded with zeros to one window."""
    librosa = require("librosa")
    if samples.shape[0] < config.n_fft:
        samples = np.pad(samples, (0, config.n_fft - samples.shape[0]))
    mel = librosa.feature.melspectrogram(
        y=samples, sr=config.sample_rate, n_fft=config.n_fft, win_length=config.win_length,
        hop_length=config.hop_length, n_mels=config.n_mels, center=True)  # (n_mels, T)
    log_mel = np.log(mel + 1e-6)
    if config.kind == "mfcc":
        # mfcc expects a dB-scaled spectrogram: 10·log10 = (10 / ln 10)·ln
        frames = librosa.feature.mfcc(S=log_mel * (10 / np.log(10)), n_mfcc=config.n_mfcc)
    else:
        frames = log_mel
    return np.ascontiguousarray(frames.T, dtype=np.float32)  # (T, F)


def normalize(frames: np.ndarray) -> np.ndarray:
    """Per-utterance mean/variance normalisation of ``frames`` ``(T, F)``, per feature."""
    mean = frames.mean(axis=0, keepdims=True)
    std = frames.std(axis=0, keepdims=True)
    return (frames - mean) / (std + 1e-5)


def speed_perturb(samples: np.ndarray, sample_rate: int, factor: float) -> np.ndarray:
    """``samples`` ``(N,)`` played ``factor`` times as fast: ``N / factor`` samples at the same
    rate, tempo and pitch both scaled by ``factor`` (the recording is taken to be at
    ``factor · sample_rate`` and resampled to ``sample_rate``)."""
    if factor == 1.0:
        return samples
    resampled = require("librosa").resample(samples, orig_sr=round(sample_rate * factor),
                                            target_sr=sample_rate)
    return np.ascontiguousarray(resampled, dtype=np.float32)


def frames_of(samples: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """The normalised feature frames ``(T, F)`` of mono ``samples`` at the config's rate."""
    return normalize(compute_features(samples, config))


def load_frames(path: str | Path, config: FeatureConfig) -> np.ndarray:
    """The normalised feature frames ``(T, F)`` of the recording at ``path``."""
    return frames_of(read_wav(path, config.sample_rate), config)


def spec_augment(features: Tensor, lengths: Tensor, generator: torch.Generator, *,
                 freq_masks: int, freq_width: int, time_masks: int, time_width: int) -> Tensor:
    """A copy of ``features`` ``(B, T, F)`` with, per utterance, ``freq_masks`` bands of up to
    ``freq_width`` features and ``time_masks`` spans of up to ``time_width`` frames (within its
    own ``lengths``) set to 0, the normalised mean."""
    masked = features.clone()
    batch, _, size = features.shape
    for row in range(batch):
        length = int(lengths[row])
        for _ in range(freq_masks):
            start, width = _span(size, freq_width, generator)
            masked[row, :, start:start + width] = 0.0
        for _ in range(time_masks):
            start, width = _span(length, min(time_width, length // 5), generator)
            masked[row, start:start + width, :] = 0.0
    return masked


def _span(extent: int, max_width: int, generator: torch.Generator) -> tuple[int, int]:
    """A random (start, width) with 0 ≤ width ≤ max_width inside ``range(extent)``."""
    if max_width < 1 or extent < 1:
        return 0, 0
    width = int(torch.randint(0, max_width + 1, (1,), generator=generator))
    start = int(torch.randint(0, max(1, extent - width + 1), (1,), generator=generator))
    return start, width


# ---------------------------------------------------------------------- transcripts


def fsdd_take(path: str | Path) -> tuple[int, str, int] | None:
    """(digit, speaker, take) of an FSDD file name like ``7_jackson_32.wav``, else None."""
    match = _FSDD_NAME.match(Path(path).stem)
    if match is None:
        return None
    return int(match.group(1)), match.group(2), int(match.group(3))


def clean_text(text: str) -> str:
    """A transcript as the model sees it: lower case, runs of white space made one space."""
    return " ".join(text.lower().split())


def read_dataset(source: str, option: str) -> list[Utterance]:
    """The utterances of ``source``: a list file (``path<TAB>transcript`` lines) or a directory
    of WAV files; ``option`` (``--train``) names it in messages."""
    path = Path(source)
    if path.is_dir():
        return _read_directory(path)
    if not path.exists():
        raise RnnkitError(f"{option} {source}: no such file or directory")
    return _read_list(path)


def _read_directory(directory: Path) -> list[Utterance]:
    files = sorted(directory.glob("*.wav"))
    if not files:
        raise RnnkitError(f"{directory}: no .wav files in this directory")
    utterances = []
    for wav in files:
        sidecar = wav.with_suffix(".txt")
        if sidecar.exists():
            text = clean_text(sidecar.read_text(encoding="utf-8"))
        elif (take := fsdd_take(wav)) is not None:
            text = DIGIT_WORDS[take[0]]
        else:
            raise RnnkitError(f"{wav}: no transcript ({sidecar.name} missing, and the name is "
                              "not {digit}_{speaker}_{take}.wav)")
        if not text:
            raise RnnkitError(f"{sidecar}: empty transcript")
        utterances.append(Utterance(wav, text, str(wav)))
    return utterances


def _read_list(path: Path) -> list[Utterance]:
    utterances = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise RnnkitError(f"{path}: not a UTF-8 text list (path<TAB>transcript per line)") from None
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        where = f"{path}:{number}"
        name, tab, text = line.partition("\t")
        if not tab or not clean_text(text):
            raise RnnkitError(f"{where}: expected 'path<TAB>transcript'")
        audio = (path.parent / name.strip()).resolve()
        if not audio.is_file():
            raise RnnkitError(f"{where}: audio file {name.strip()} not found")
        utterances.append(Utterance(audio, clean_text(text), where))
    if not utterances:
        raise RnnkitError(f"{path}: no utterances (expected 'path<TAB>transcript' lines)")
    return utterances
