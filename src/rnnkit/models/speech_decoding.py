r"""CTC decoding: greedy, prefix beam search (optionally held to a lexicon), transcript scores.

A CTC output ``log p_t(k | x)`` ``(T, V)`` (symbol 0 the blank) gives every frame-level path
``π`` a probability ``∏_t p_t(π_t)``; the collapse ``B`` merges repeats and drops blanks. The
probability of a transcript ``y`` is the sum over its paths, ``p(y | x) = Σ_{B(π) = y} ∏_t
p_t(π_t)``, which :func:`transcript_log_prob` computes exactly (the CTC forward algorithm,
``torch.nn.functional.ctc_loss``): the figure reported beside each transcript.

- :func:`greedy_decode`: the collapse of the best path (the arg-max of every frame).
- :func:`prefix_beam_search` (Hannun et al. 2014, no language model): keeps the ``beam_size``
  prefixes with the highest ``p(prefix | x_{1..t})``, tracked as two parts, paths ending in a
  blank and paths ending in the prefix's last symbol, so that repeats are merged correctly. With
  a ``lexicon`` (a set of words), a prefix survives only if each finished word is in it and the
  unfinished word begins some word of it; at the end the last word must be whole.

Axes: T frames, V symbols.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

import torch
from torch import Tensor
from torch.nn import functional as nnf

__all__ = ["greedy_decode", "prefix_beam_search", "prefix_beam_nbest", "transcript_log_prob",
           "Lexicon"]

_NEG_INF = -math.inf


def greedy_decode(log_probs: Tensor) -> list[int]:
    """Symbol ids (no blanks) of the best path through ``log_probs`` ``(T, V)``."""
    best = log_probs.argmax(-1).tolist()  # (T,)
    ids, previous = [], 0
    for symbol in best:
        if symbol != 0 and symbol != previous:
            ids.append(symbol)
        previous = symbol
    return ids


def transcript_log_prob(log_probs: Tensor, ids: list[int]) -> float:
    """``log p(y | x)`` of the transcript ``ids`` under ``log_probs`` ``(T, V)``, summed over
    all its paths; ``-inf`` when ``y`` needs more frames than there are."""
    targets = torch.tensor([ids], dtype=torch.long)
    loss = nnf.ctc_loss(log_probs.unsqueeze(1).double(), targets,
                        torch.tensor([log_probs.shape[0]]), torch.tensor([len(ids)]),
                        blank=0, reduction="sum", zero_infinity=False)
    return -float(loss)


class Lexicon:
    """The words a transcript may use, as symbol ids; ``space`` separates words."""

    def __init__(self, words: Iterable[list[int]], space: int) -> None:
        self.words = {tuple(w) for w in words}
        if not self.words or any(not w or space in w for w in self.words):
            raise ValueError("lexicon: expected non-empty words without the space symbol")
        self.prefixes = {w[:n] for w in self.words for n in range(len(w) + 1)}
        self.space = space

    def allows(self, prefix: tuple[int, ...], finished: bool = False) -> bool:
        """Whether the last word of ``prefix`` can still become a word (is one, if
        ``finished``); the words before it were checked as they ended."""
        last = prefix
        if self.space in prefix:
            last = prefix[len(prefix) - prefix[::-1].index(self.space):]
        return last in self.words if finished else last in self.prefixes


def _add(a: float, b: float) -> float:
    """log(e^a + e^b)."""
    if a == _NEG_INF:
        return b
    if b == _NEG_INF:
        return a
    high = max(a, b)
    return high + math.log1p(math.exp(-abs(a - b)))


def prefix_beam_search(log_probs: Tensor, beam_size: int = 8, lexicon: Lexicon | None = None,
                       prune: float = -12.0) -> list[int]:
    """The most probable transcript found by a prefix beam search over ``log_probs`` ``(T, V)``
    (symbols whose frame log-probability is below ``prune`` are not tried)."""
    return prefix_beam_nbest(log_probs, beam_size, lexicon, prune)[0]


def prefix_beam_nbest(log_probs: Tensor, beam_size: int = 8, lexicon: Lexicon | None = None,
                      prune: float = -12.0) -> list[list[int]]:
    """The transcripts of the final beam of :func:`prefix_beam_search`, most probable first;
    with a ``lexicon``, only those whose last word is whole (or, when none is, the best one)."""
    if beam_size < 1:
        raise ValueError(f"beam_size: expected >= 1, got {beam_size}")
    table = log_probs.double().tolist()  # T lists of V floats
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, _NEG_INF)}  # (blank, last)
    for frame in table:
        candidates = [k for k, value in enumerate(frame) if k != 0 and value >= prune]
        extended: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [_NEG_INF, _NEG_INF])
        for prefix, (blank, last) in beams.items():
            total = _add(blank, last)
            entry = extended[prefix]
            entry[0] = _add(entry[0], total + frame[0])  # a blank: the prefix stays
            if prefix:
                entry[1] = _add(entry[1], last + frame[prefix[-1]])  # the last symbol repeats
            for symbol in candidates:
                longer = prefix + (symbol,)
                if lexicon is not None and not _lexicon_step(lexicon, prefix, longer):
                    continue
                # after a non-blank ending in the same symbol, only a blank separates a repeat
                source = blank if prefix and symbol == prefix[-1] else total
                entry = extended[longer]
                entry[1] = _add(entry[1], source + frame[symbol])
        ranked = sorted(extended.items(), key=lambda item: -_add(*item[1]))
        beams = {prefix: (b, n) for prefix, (b, n) in ranked[:beam_size]}
    ranked = sorted(beams, key=lambda prefix: -_add(*beams[prefix]))
    possible = [p for p in ranked if _add(*beams[p]) > _NEG_INF] or ranked[:1]
    finished = [list(p) for p in possible if lexicon is None or lexicon.allows(p, finished=True)]
    return finished or [list(possible[0])]


def _lexicon_step(lexicon: Lexicon, prefix: tuple[int, ...], longer: tuple[int, ...]) -> bool:
    if longer[-1] == lexicon.space:
        return bool(prefix) and prefix[-1] != lexicon.space and lexicon.allows(prefix, True)
    return lexicon.allows(longer)
