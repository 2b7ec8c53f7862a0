r"""Decoding a :class:`~rnnkit.models.seq2seq.Seq2Seq`: greedy and batched beam search.

Both read a padded source batch and return, per sentence, the target ids (without ``<bos>`` and
``<eos>``), the log-probability ``log p(y | x)`` (the ``<eos>`` step included) and the score
hypotheses are ranked by, ``log p(y | x) / lp(|y|)`` with the GNMT length penalty

.. math::
    lp(n) = \left(\frac{5 + n}{6}\right)^{\alpha}

(``α = 0``: no penalty; larger ``α`` favours longer outputs). A sentence of ``S`` source tokens
gets at most ``max_len_a · S + max_len_b`` target tokens (``<eos>`` included); one that reaches
the limit ends there without ``<eos>``.

Beam search keeps ``beam_size`` live hypotheses per sentence. Each step it takes the ``2k`` best
extensions: those ending in ``<eos>`` and ranked within the first ``k`` are finished, the best
``k`` others live on; a sentence is done when ``k`` hypotheses finished or its limit is reached.
With ``k = 1`` this is exactly greedy decoding. Beam search may still lose the greedy
hypothesis on the way (the search is not exact), so by default the greedy hypothesis is one of
the candidates: beam search never returns a lower score than greedy.

Axes: B sentences, K beam size, S source steps, V target vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rnnkit.models.seq2seq import Seq2Seq

__all__ = ["Hypotheses", "greedy", "beam_search", "length_penalty", "max_lengths"]


@dataclass
class Hypotheses:
    """One decoded output per source sentence."""

    tokens: list[list[int]]  # target ids, without <bos>/<eos>
    scores: Tensor  # (B,) log_probs / lp(len): what hypotheses are ranked by
    log_probs: Tensor  # (B,) log p(y | x), the <eos> step included
    attention: list[Tensor] | None = None  # per sentence (len(tokens), S): weights per output


def length_penalty(length: int | Tensor, alpha: float) -> float | Tensor:
    """GNMT length penalty ``((5 + length) / 6) ** alpha``."""
    return ((5 + length) / 6) ** alpha


def max_lengths(lengths: Tensor, max_len_a: float, max_len_b: int) -> list[int]:
    """Per sentence, the most target tokens (``<eos>`` included): ``a · S + b``, at least 1."""
    return [max(1, int(max_len_a * int(n) + max_len_b)) for n in lengths]


def _select_state(state, index: Tensor):
    if isinstance(state, tuple):
        return tuple(s.index_select(1, index) for s in state)
    return state.index_select(1, index)


@torch.no_grad()
def greedy(model: Seq2Seq, src: Tensor, lengths: Tensor, *, max_len_a: float = 1.5,
           max_len_b: int = 10, alpha: float = 0.0,
           return_attention: bool = False) -> Hypotheses:
    """The likeliest token at every step. src ``(B, S)``, lengths ``(B,)``."""
    cfg = model.config
    return_attention = return_attention and cfg.attention != "none"
    memory, state = model.encode(src, lengths)
    batch = src.shape[0]
    limits = max_lengths(lengths, max_len_a, max_len_b)
    token = torch.full((batch,), cfg.bos_id, dtype=torch.long, device=src.device)
    log_probs = torch.zeros(batch, device=src.device)
    outputs: list[list[int]] = [[] for _ in range(batch)]
    weights: list[list[Tensor]] = [[] for _ in range(batch)]
    done = [False] * batch
    for t in range(max(limits)):
        logits, state, attention = model.decode(token[:, None], state, memory)
        best_lp, token = torch.log_softmax(logits[:, 0].float(), -1).max(-1)  # (B,)
        active = torch.tensor([not d for d in done], device=src.device)
        log_probs += torch.where(active, best_lp, torch.zeros_like(best_lp))
        for b, tok in enumerate(token.tolist()):
            if done[b]:
                continue
            if tok == cfg.eos_id:
                done[b] = True
                continue
            outputs[b].append(tok)
            if return_attention:
                weights[b].append(attention[b, 0])
            done[b] = t + 1 >= limits[b]
        if all(done):
            break
    scores = log_probs / torch.tensor([length_penalty(len(o), alpha) for o in outputs],
                                      device=src.device)
    return Hypotheses(outputs, scores, log_probs,
                      _stack_attention(weights, lengths) if return_attention else None)


def _stack_attention(weights: list[list[Tensor]], lengths: Tensor) -> list[Tensor]:
    return [torch.stack(rows)[:, : int(n)] if rows else torch.zeros(0, int(n))
            for rows, n in zip(weights, lengths, strict=True)]


@dataclass
class _Finished:
    score: float
    log_prob: float
    tokens: list[int]
    attention: Tensor | None


@torch.no_grad()
def beam_search(model: Seq2Seq, src: Tensor, lengths: Tensor, *, beam_size: int = 5,
                max_len_a: float = 1.5, max_len_b: int = 10, alpha: float = 0.6,
                return_attention: bool = False, keep_greedy: bool = True) -> Hypotheses:
    """Batched beam search (see the module docstring). src ``(B, S)``, lengths ``(B,)``."""
    if beam_size < 1:
        raise ValueError(f"beam_size: expected an integer >= 1, got {beam_size}")
    cfg, device, k = model.config, src.device, beam_size
    return_attention = return_attention and cfg.attention != "none"
    batch = src.shape[0]
    memory, state = model.encode(src, lengths)
    rows = torch.arange(batch, device=device).repeat_interleave(k)  # (B·K,)
    memory, state = memory.select(rows), _select_state(state, rows)
    limits = max_lengths(lengths, max_len_a, max_len_b)
    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # one live hypothesis at first: the k copies would repeat it
    history = torch.zeros(batch * k, 0, dtype=torch.long, device=device)
    attn_history = torch.zeros(batch * k, 0, src.shape[1], device=device)
    token = torch.full((batch * k,), cfg.bos_id, dtype=torch.long, device=device)
    finished: list[list[_Finished]] = [[] for _ in range(batch)]
    done = [False] * batch
    for t in range(max(limits)):
        logits, state, attention = model.decode(token[:, None], state, memory)
        log_p = torch.log_softmax(logits[:, 0].float(), -1)  # (B·K, V)
        vocab = log_p.shape[-1]
        candidates = (scores[:, :, None] + log_p.view(batch, k, vocab)).view(batch, -1)
        top_scores, top_index = candidates.topk(min(2 * k, k * vocab), dim=-1)  # (B, 2K)
        step = _Step(top_scores.tolist(), (top_index // vocab).tolist(),
                     (top_index % vocab).tolist())
        if return_attention:
            attn_history = torch.cat([attn_history, attention], dim=1)  # (B·K, t+1, S)
        parents, next_tokens, next_scores = [], [], []
        for b in range(batch):
            alive = [] if done[b] else _advance(b, t, step, k, cfg.eos_id, limits[b], history,
                                                attn_history if return_attention else None,
                                                finished[b], alpha)
            done[b] = done[b] or len(finished[b]) >= k or t + 1 >= limits[b]
            alive += [(float("-inf"), 0, cfg.pad_id)] * (k - len(alive))
            for score, beam, tok in alive:
                parents.append(b * k + beam)
                next_tokens.append(tok)
                next_scores.append(score)
        if all(done):
            break
        index = torch.tensor(parents, device=device)
        token = torch.tensor(next_tokens, device=device)
        scores = torch.tensor(next_scores, device=device).view(batch, k)
        state = _select_state(state, index)
        history = torch.cat([history.index_select(0, index), token[:, None]], dim=1)
        if return_attention:
            attn_history = attn_history.index_select(0, index)
    result = _best(finished, lengths, return_attention)
    if keep_greedy and k > 1:
        result = _better(result, greedy(model, src, lengths, max_len_a=max_len_a,
                                        max_len_b=max_len_b, alpha=alpha,
                                        return_attention=return_attention))
    return result


@dataclass
class _Step:
    scores: list[list[float]]  # (B, 2K) best extension scores
    beams: list[list[int]]  # which live hypothesis each extends
    tokens: list[list[int]]  # with which token


def _advance(b, t, step: _Step, k, eos, limit, history, attn_history, finished, alpha):
    """Finish the hypotheses of sentence ``b`` that end here; the next live ones."""
    alive = []
    last = t + 1 >= limit
    for rank, (score, beam, tok) in enumerate(zip(step.scores[b], step.beams[b], step.tokens[b])):
        if score == float("-inf"):
            break
        if tok == eos or last:
            if rank < k:
                row = b * k + beam
                tokens = history[row].tolist() + ([] if tok == eos else [tok])
                attn = None
                if attn_history is not None:
                    attn = attn_history[row, : len(tokens)]
                finished.append(_Finished(score / length_penalty(len(tokens), alpha), score,
                                          tokens, attn))
        elif len(alive) < k:
            alive.append((score, beam, tok))
    return alive


def _best(finished: list[list[_Finished]], lengths: Tensor, return_attention: bool
          ) -> Hypotheses:
    best = [max(options, key=lambda f: f.score) for options in finished]
    attention = None
    if return_attention:
        attention = [f.attention[:, : int(n)] for f, n in zip(best, lengths, strict=True)]
    return Hypotheses([f.tokens for f in best], torch.tensor([f.score for f in best]),
                      torch.tensor([f.log_prob for f in best]), attention)


def _better(beam: Hypotheses, other: Hypotheses) -> Hypotheses:
    """Per sentence, whichever of the two scores higher (ties: ``beam``)."""
    take = (other.scores.cpu() > beam.scores.cpu()).tolist()
    pick = lambda a, b: [y if t else x for x, y, t in zip(a, b, take, strict=True)]  # noqa: E731
    attention = None
    if beam.attention is not None and other.attention is not None:
        attention = pick(beam.attention, other.attention)
    return Hypotheses(pick(beam.tokens, other.tokens),
                      torch.where(torch.tensor(take), other.scores.cpu(), beam.scores.cpu()),
                      torch.where(torch.tensor(take), other.log_probs.cpu(),
                                  beam.log_probs.cpu()), attention)
