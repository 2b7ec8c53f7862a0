"""Connected-digit utterances built from isolated-digit recordings (a deterministic generator).

Each generated utterance takes one speaker, draws ``min_digits``–``max_digits`` digits uniformly,
and for each digit one of that speaker's recordings of it (uniformly, with replacement); the
recordings are joined with pauses of silence drawn uniformly from ``pause_s`` seconds, with one
such pause before the first and after the last. Everything is drawn from ``random.Random(seed)``
in a fixed order over sorted inputs, so the same recordings, count and seed give the same files.
Build training strings only from training recordings and test strings only from test recordings
(the caller passes the split): no recording is shared between them.

Output: ``out_dir/connected_{i:05d}.wav`` (16-bit PCM at ``sample_rate``) and
``out_dir/list.tsv`` (``file<TAB>transcript``, the digits as English words), for
:func:`rnnkit.data.audio.read_dataset`.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

import numpy as np

from rnnkit.data.audio import DIGIT_WORDS, fsdd_take, read_wav, require
from rnnkit.errors import RnnkitError

__all__ = ["build_connected"]


def build_connected(recordings: list[Path], out_dir: str | Path, count: int, *, seed: int,
                    sample_rate: int = 8000, min_digits: int = 2, max_digits: int = 5,
                    pause_s: tuple[float, float] = (0.05, 0.3)) -> Path:
    """Write ``count`` connected-digit utterances made of FSDD-named ``recordings`` into
    ``out_dir``; returns the path of its ``list.tsv``."""
    if not 1 <= min_digits <= max_digits:
        raise ValueError(f"min_digits/max_digits: expected 1 <= min <= max, got "
                         f"{min_digits}/{max_digits}")
    by_speaker = _by_speaker_and_digit(recordings)
    rng = random.Random(seed)
    speakers = sorted(by_speaker)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache: dict[Path, np.ndarray] = {}
    lines = []
    for number in range(count):
        speaker = rng.choice(speakers)
        digits = [rng.choice(sorted(by_speaker[speaker]))
                  for _ in range(rng.randint(min_digits, max_digits))]
        pieces = [rng.choice(by_speaker[speaker][d]) for d in digits]
        signal = _join(pieces, rng, pause_s, sample_rate, cache)
        name = f"connected_{number:05d}.wav"
        _write_pcm16(out_dir / name, signal, sample_rate)
        lines.append(f"{name}\t{' '.join(DIGIT_WORDS[d] for d in digits)}\n")
    listing = out_dir / "list.tsv"
    listing.write_text("".join(lines), encoding="utf-8")
    return listing


def _by_speaker_and_digit(recordings: list[Path]) -> dict[str, dict[int, list[Path]]]:
    grouped: dict[str, dict[int, list[Path]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(Path(p) for p in recordings):
        take = fsdd_take(path)
        if take is None:
            raise RnnkitError(f"{path}: not named {{digit}}_{{speaker}}_{{take}}.wav")
        grouped[take[1]][take[0]].append(path)
    if not grouped:
        raise RnnkitError("build_connected: no recordings given")
    return grouped


def _join(pieces: list[Path], rng: random.Random, pause_s: tuple[float, float],
          sample_rate: int, cache: dict[Path, np.ndarray]) -> np.ndarray:
    parts = [_pause(rng, pause_s, sample_rate)]
    for path in pieces:
        if path not in cache:
            cache[path] = read_wav(path, sample_rate)
        parts += [cache[path], _pause(rng, pause_s, sample_rate)]
    return np.concatenate(parts)


def _pause(rng: random.Random, pause_s: tuple[float, float], sample_rate: int) -> np.ndarray:
    return np.zeros(int(rng.uniform(*pause_s) * sample_rate), dtype=np.float32)


def _write_pcm16(path: Path, signal: np.ndarray, sample_rate: int) -> None:
    require("soundfile").write(str(path), np.clip(signal, -1.0, 1.0), sample_rate, subtype="PCM_16")
