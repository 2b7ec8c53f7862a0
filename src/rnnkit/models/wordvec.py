"""Word-vector maths: cosine neighbours, analogies (3CosAdd), Spearman's ρ on word-similarity
sets, and the PPMI + SVD count baseline (Levy, Goldberg & Dagan, 2015).

Everything works on a :class:`~rnnkit.data.wordvec.WordVectors` (words, float32 matrix, index).
``evaluate_pairs`` follows gensim's ``KeyedVectors.evaluate_word_pairs`` exactly (case-insensitive
lookup where the first spelling in file order wins, pairs with a missing word dropped and
counted, Spearman's ρ with average ranks for ties), so the two give the same numbers on the same
file.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from rnnkit.data.wordvec import SimilarityPair, WordVectors

__all__ = ["unit_rows", "neighbours", "analogy", "rank_average", "spearman", "PairScore",
           "evaluate_pairs", "cooccurrence", "ppmi_svd"]


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (a zero row stays zero)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


def _nearest(unit: np.ndarray, query: np.ndarray, words: Sequence[str], exclude: set[int],
             k: int) -> list[tuple[str, float]]:
    norm = float(np.linalg.norm(query))
    scores = unit @ (query / norm if norm > 0 else query)
    if exclude:
        scores[list(exclude)] = -np.inf
    k = min(k, len(words) - len(exclude))
    if k <= 0:
        return []
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    return [(words[i], float(scores[i])) for i in top]


def neighbours(vectors: WordVectors, word: str, k: int = 10,
               unit: np.ndarray | None = None) -> list[tuple[str, float]]:
    """The ``k`` words of highest cosine similarity to ``word`` (itself left out).
    ``KeyError`` for a word without a vector."""
    unit = unit_rows(vectors.matrix) if unit is None else unit
    i = vectors.index[word]
    return _nearest(unit, unit[i], vectors.words, {i}, k)


def analogy(vectors: WordVectors, a: str, b: str, c: str, k: int = 1,
            unit: np.ndarray | None = None) -> list[tuple[str, float]]:
    """3CosAdd: the words nearest to ``a - b + c`` of unit vectors ("king man woman" →
    queen), the three inputs left out; the ranking of gensim's
    ``most_similar(positive=[a, c], negative=[b])``. ``KeyError`` names a missing word."""
    unit = unit_rows(vectors.matrix) if unit is None else unit
    ids = [vectors.index[w] for w in (a, b, c)]
    query = unit[ids[0]] - unit[ids[1]] + unit[ids[2]]
    return _nearest(unit, query, vectors.words, set(ids), k)


def rank_average(values: Sequence[float]) -> np.ndarray:
    """Ranks from 1, ties given the average of the ranks they span (scipy's ``rankdata``)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    sorted_values = values[order]
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's ρ: Pearson's correlation of the average ranks (NaN with < 2 pairs or a
    constant side)."""
    if len(x) != len(y):
        raise ValueError(f"spearman: {len(x)} and {len(y)} values")
    if len(x) < 2:
        return math.nan
    rx, ry = rank_average(x), rank_average(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = math.sqrt(float(rx @ rx) * float(ry @ ry))
    return float(rx @ ry) / denominator if denominator > 0 else math.nan


@dataclass
class PairScore:
    """Spearman's ρ of one similarity set over the pairs whose words both have vectors."""

    name: str
    spearman: float
    pairs: int  # in the file
    covered: int  # both words have vectors

    @property
    def oov_ratio(self) -> float:
        """Share of pairs dropped, in % (gensim's third return value)."""
        return 100.0 * (self.pairs - self.covered) / self.pairs if self.pairs else 0.0


def _case_folded(vectors: WordVectors) -> dict[str, int]:
    """Upper-cased word → row; the first spelling in file order wins (gensim's rule)."""
    folded: dict[str, int] = {}
    for i, word in enumerate(vectors.words):
        folded.setdefault(word.upper(), i)
    return folded


def evaluate_pairs(vectors: WordVectors, pairs: Iterable[SimilarityPair], name: str = "",
                   case_insensitive: bool = True,
                   unit: np.ndarray | None = None) -> PairScore:
    """Cosine of each covered pair against the human scores: Spearman's ρ and coverage."""
    unit = unit_rows(vectors.matrix) if unit is None else unit
    lookup = _case_folded(vectors) if case_insensitive else vectors.index
    gold, model, total = [], [], 0
    for pair in pairs:
        total += 1
        a, b = (pair.a.upper(), pair.b.upper()) if case_insensitive else (pair.a, pair.b)
        if a not in lookup or b not in lookup:
            continue
        gold.append(pair.score)
        model.append(float(unit[lookup[a]] @ unit[lookup[b]]))
    return PairScore(name, spearman(gold, model), total, len(gold))


# ---------------------------------------------------------------------- PPMI + SVD baseline


def cooccurrence(sentences: Iterable[Sequence[int]], vocab_size: int, window: int = 5,
                 weighted: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Symmetric word-context counts within ``window`` words of each other in a sentence
    (ids < 0 are skipped words, which still take their place), each pair weighted by
    ``(window - distance + 1) / window`` with ``weighted`` (word2vec's dynamic window on
    average). Returns ``(rows, cols, counts)`` of the nonzero cells."""
    sentences = [np.asarray(s, dtype=np.int64) for s in sentences]
    keys, weights = [], []
    for distance in range(1, window + 1):
        weight = (window - distance + 1) / window if weighted else 1.0
        lefts, rights = [], []
        for ids in sentences:
            if len(ids) > distance:
                lefts.append(ids[:-distance])
                rights.append(ids[distance:])
        if not lefts:
            continue
        left, right = np.concatenate(lefts), np.concatenate(rights)
        keep = (left >= 0) & (right >= 0)
        left, right = left[keep], right[keep]
        keys += [left * vocab_size + right, right * vocab_size + left]
        weights += [np.full(2 * len(left), weight)]
    if not keys:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    all_keys = np.concatenate(keys)
    unique, inverse = np.unique(all_keys, return_inverse=True)
    counts = np.bincount(inverse, weights=np.concatenate(weights))
    return unique // vocab_size, unique % vocab_size, counts


def ppmi_svd(sentences: Sequence[Sequence[int]], vocab_size: int, dim: int = 300,
             window: int = 5, alpha: float = 0.75, power: float = 0.5,
             seed: int = 0) -> np.ndarray:
    """Word vectors ``(vocab_size, dim)`` from the positive pointwise mutual information of
    word-context counts, context distribution smoothed by ``alpha`` (Levy et al., 2015),
    factored by a truncated SVD (``torch.svd_lowrank`` on the sparse matrix); rows are
    ``U · Σ^power``."""
    rows, cols, counts = cooccurrence(sentences, vocab_size, window)
    total = counts.sum()
    if total == 0:
        raise ValueError("ppmi_svd: no co-occurrences (sentences too short or empty)")
    word_sums = np.bincount(rows, weights=counts, minlength=vocab_size)
    context_sums = np.bincount(cols, weights=counts, minlength=vocab_size) ** alpha
    pmi = (np.log(counts) + np.log(context_sums.sum()) - np.log(word_sums[rows])
           - np.log(context_sums[cols]))
    keep = pmi > 0
    indices = torch.from_numpy(np.stack([rows[keep], cols[keep]]))
    matrix = torch.sparse_coo_tensor(indices, torch.from_numpy(pmi[keep]).float(),
                                     (vocab_size, vocab_size),
                                     check_invariants=True).coalesce()
    dim = min(dim, vocab_size - 1)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        u, s, _ = torch.svd_lowrank(matrix, q=min(dim + 20, vocab_size), niter=6)
    finally:
        torch.random.set_rng_state(state)
    u, s = u[:, :dim], s[:dim]
    return (u * s.pow(power)).numpy().astype(np.float32)
