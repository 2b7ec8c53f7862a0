r"""Recurrent language model: embedding → rnnkit RNN/LSTM/GRU stack → dropout → output layer.

.. math::
    e_t = E x_t, \qquad s_t = \mathrm{RNN}(e_t, s_{t-1}), \qquad o_t = V\,\mathrm{drop}(s_t)

``o_t`` are the logits of the next token x_{t+1}. With ``tie_weights`` the output layer reuses the
embedding matrix (V = E); when the hidden size differs from the embedding size, a linear map
H → embedding size comes before it. Axes: T steps, B batch, E embedding size, H hidden size,
V vocabulary size, L layers. Tensors are time-major ``(T, B, ·)``.

For large word vocabularies ``softmax="adaptive"`` replaces the output layer by
``torch.nn.AdaptiveLogSoftmaxWithLoss`` (Grave et al., 2017: frequent tokens in a small head,
rare ones in cheaper clusters); the model then returns log-probabilities instead of logits, which
every consumer of logits (cross-entropy, softmax sampling) reads the same way. ``bidirectional``
adds a backward LM (its own recurrent stack over the reversed chunk, sharing the embedding and
the output layer, as ELMo does): it trains with the forward one; generation, perplexity and
export use the forward LM; :meth:`LanguageModel.contextual` gives both directions' states.

``softmax="sampled"`` keeps the full output layer but trains it with a sampled softmax (Jean et
al., 2015): each batch scores its targets against ``softmax_samples`` words drawn once for the
whole batch from a log-uniform (Zipf) distribution over the frequency-sorted vocabulary,
``q(k) = log((k + 2) / (k + 1)) / log(V + 1)``, every score corrected by ``− log(S · q)`` (S the
number drawn) and a drawn word equal to the target masked out (TensorFlow's
``sampled_softmax_loss``). The cost of the output layer falls from V to S words per token, and
every row of the output matrix that is scored, the targets' and the drawn ones', gets a
gradient: with ``tie_weights`` that matrix is the embedding, so each word's vector also learns
from the contexts that predict it, not only from what follows it. In eval mode (validation,
perplexity, generation) the loss is the exact full softmax.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from rnnkit._options import option
from rnnkit.models._config import (
    CellOptions,
    check_cell_options,
    recurrent_stack,
)

__all__ = ["LMModelOptions", "LMConfig", "LanguageModel", "CELLS", "SOFTMAX", "SOFTMAX_SAMPLES",
           "default_cutoffs"]

CELLS = ("lstm", "gru", "rnn_tanh", "rnn_relu")
SOFTMAX = ("full", "adaptive", "sampled")
SOFTMAX_SAMPLES = 1024  # the sampled softmax's draws per batch unless told otherwise


def check_samples_flag(softmax: str, samples: int) -> None:
    """``--softmax-samples`` other than its default without ``--softmax sampled`` would be
    ignored: ``ValueError`` instead."""
    if softmax != "sampled" and samples != SOFTMAX_SAMPLES:
        raise ValueError(f"--softmax-samples: only with --softmax sampled (got --softmax "
                         f"{softmax})")


def default_cutoffs(vocab_size: int) -> tuple[int, ...]:
    """Adaptive-softmax clusters for a vocabulary sorted by frequency: a head of the 2,000
    commonest tokens, then 10,000, 50,000 (those below the vocabulary size); half the vocabulary
    for a small one."""
    cuts = tuple(c for c in (2000, 10000, 50000) if c < vocab_size - 1)
    return cuts or (vocab_size // 2,)


@dataclass(kw_only=True)
class LMModelOptions(CellOptions):
    """The options a user chooses (``rnnkit lm train``'s ``model`` section, flags ``--cell``,
    ``--embedding-size``, …; ``cutoffs`` as the flag's comma-separated text);
    :class:`LMConfig` adds the vocabulary size. Keyword-only."""

    cell: str = option("lstm", "recurrent cell", CELLS)
    embedding_size: int = option(128, "embedding size")
    hidden_size: int = option(512, "hidden units per layer")
    num_layers: int = option(2, "recurrent layers")
    dropout: float = option(0.2, "dropout on embeddings, between layers and before the output")
    tie_weights: bool = option(False, "share the embedding matrix with the output layer")
    softmax: str = option("full", "output layer: full softmax; adaptive or sampled (faster for "
                                  "large word vocabularies; sampled: full softmax at evaluation)",
                          SOFTMAX)
    cutoffs: str = option("", "adaptive softmax: comma-separated cluster boundaries in the "
                              "frequency-sorted vocabulary (default: 2000,10000,50000 below its "
                              "size)")
    bidirectional: bool = option(False, "also train a backward LM (ELMo-style contextual "
                                        "vectors); perplexity is the forward LM's")
    softmax_samples: int = option(SOFTMAX_SAMPLES, "sampled softmax: words drawn per batch "
                                                   "(log-uniform over the frequency-sorted "
                                                   "vocabulary)")

    def __post_init__(self) -> None:
        super().__post_init__()  # the cell options, before the run directory is made
        check_samples_flag(self.softmax, self.softmax_samples)


@dataclass
class LMConfig(LMModelOptions):
    """Shape of a :class:`LanguageModel`: the vocabulary size positional, the options by
    keyword (``LMConfig(100, cell="gru")``). ``cutoffs`` here are the adaptive softmax's class
    boundaries as integers (empty: chosen from ``vocab_size``)."""

    vocab_size: int
    cutoffs: tuple[int, ...] = field(default=(), kw_only=True)  # the option's text, parsed

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"--cell: expected one of {', '.join(CELLS)}, got {self.cell!r}")
        for name in ("vocab_size", "embedding_size", "hidden_size", "num_layers"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name.replace('_', '-')}: must be > 0, "
                                 f"got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"--dropout: must be in [0, 1), got {self.dropout}")
        self._check_softmax()
        check_cell_options(self, "--")

    def _check_softmax(self) -> None:
        if self.softmax not in SOFTMAX:
            raise ValueError(f"--softmax: expected one of {', '.join(SOFTMAX)}, "
                             f"got {self.softmax!r}")
        self.cutoffs = tuple(int(c) for c in self.cutoffs)
        if self.softmax != "adaptive" and self.cutoffs:
            raise ValueError("--cutoffs: only with --softmax adaptive")
        check_samples_flag(self.softmax, self.softmax_samples)
        if self.softmax == "sampled" and not 0 < self.softmax_samples < self.vocab_size:
            raise ValueError(f"--softmax-samples: expected 1 to {self.vocab_size - 1} (below the "
                             f"vocabulary size; use --softmax full otherwise), "
                             f"got {self.softmax_samples}")
        if self.softmax != "adaptive":
            return
        if self.tie_weights:
            raise ValueError("--tie-weights: not with --softmax adaptive (it has its own output "
                             "clusters)")
        if self.vocab_size < 4:
            raise ValueError(f"--softmax adaptive: needs a vocabulary of at least 4 tokens, got "
                             f"{self.vocab_size}")
        if not self.cutoffs:
            self.cutoffs = default_cutoffs(self.vocab_size)
        cuts = self.cutoffs
        if list(cuts) != sorted(set(cuts)) or cuts[0] <= 0 or cuts[-1] > self.vocab_size - 1:
            raise ValueError(f"--cutoffs: expected increasing values in [1, {self.vocab_size - 1}]"
                             f" (the vocabulary has {self.vocab_size} tokens), got {list(cuts)}")

    def to_json(self) -> dict:
        return asdict(self)


def _recurrent(cfg: LMConfig) -> nn.Module:
    """The time-major stack (one direction; ``cfg.bidirectional`` is a second LM, not this)."""
    return recurrent_stack(cfg, cfg.embedding_size, batch_first=False)


class LanguageModel(nn.Module):
    """Next-token model; ``forward(tokens (T, B), hidden)`` → logits ``(T, B, V)``, hidden."""

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_size)
        self.rnn = _recurrent(config)
        self.dropout = nn.Dropout(config.dropout)
        out_size = config.hidden_size
        self.bridge = None
        if config.tie_weights and config.hidden_size != config.embedding_size:
            self.bridge = nn.Linear(config.hidden_size, config.embedding_size, bias=False)
            out_size = config.embedding_size
        if config.softmax == "adaptive":
            self.decoder = None
            self.adaptive = nn.AdaptiveLogSoftmaxWithLoss(out_size, config.vocab_size,
                                                          list(config.cutoffs))
        else:
            self.decoder = nn.Linear(out_size, config.vocab_size)
            if config.tie_weights:
                self.decoder.weight = self.embedding.weight
        self.rnn_backward = _recurrent(config) if config.bidirectional else None
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)

    def forward(self, tokens: Tensor, hidden=None, targets: Tensor | None = None,
                backward: bool = True):
        """tokens ``(T, B)`` int64; hidden as the recurrent layer's (None = zeros).

        Without ``targets``: the forward LM's scores ``(T, B, V)`` (logits; log-probabilities
        with the adaptive softmax) and the new hidden state. With ``targets`` ``(T, B)`` (the
        next tokens): the summed next-token loss (nats) and the hidden state; a bidirectional
        model adds, with ``backward``, the backward LM's summed loss of predicting each input
        token from the tokens after it in the chunk (its state starts from zeros per chunk)."""
        embedded = self.dropout(self.embedding(tokens))  # (T, B, E)
        output, hidden = self.rnn(embedded, hidden)  # (T, B, H)
        output = self.dropout(output)
        if targets is None:
            return self._scores(output), hidden  # (T, B, V)
        loss = self._loss_sum(output, targets)
        if self.rnn_backward is not None and backward:
            reversed_inputs = self.dropout(self.embedding(targets.flip(0)))  # right to left
            back, _ = self.rnn_backward(reversed_inputs)  # (T, B, H)
            loss = loss + self._loss_sum(self.dropout(back), tokens.flip(0))
        return loss, hidden

    def _scores(self, output: Tensor) -> Tensor:
        if self.decoder is None:
            flat = self.adaptive.log_prob(output.flatten(0, 1).float())  # (T·B, V)
            return flat.view(*output.shape[:2], -1)
        if self.bridge is not None:
            output = self.bridge(output)  # (T, B, E)
        return self.decoder(output)

    def _loss_sum(self, output: Tensor, targets: Tensor) -> Tensor:
        if self.config.softmax == "sampled" and self.training:
            return self._sampled_loss_sum(output, targets)
        if self.decoder is None:
            out = self.adaptive(output.flatten(0, 1).float(), targets.flatten())
            return out.loss * targets.numel()
        return nn.functional.cross_entropy(self._scores(output).flatten(0, 1).float(),
                                           targets.flatten(), reduction="sum")

    def _sampled_loss_sum(self, output: Tensor, targets: Tensor) -> Tensor:
        """Summed sampled-softmax loss of ``targets`` ``(T, B)`` (module docstring)."""
        weight, bias = self.decoder.weight, self.decoder.bias
        hidden = output.flatten(0, 1).to(weight.dtype)  # (N, H); float32 under autocast
        if self.bridge is not None:
            hidden = self.bridge(hidden)  # (N, E)
        flat = targets.flatten()  # (N,)
        drawn = self._draw(hidden.device)  # (S,)
        true = (hidden * weight[flat]).sum(-1) + bias[flat] - self._log_expected(flat)  # (N,)
        scores = torch.addmm(bias[drawn] - self._log_expected(drawn), hidden, weight[drawn].t())
        scores = scores.masked_fill(drawn[None, :] == flat[:, None], float("-inf"))  # (N, S)
        logits = torch.cat([true[:, None], scores], dim=1)  # the target is class 0
        return -torch.log_softmax(logits, dim=1)[:, 0].sum()

    def _draw(self, device: torch.device) -> Tensor:
        """``softmax_samples`` word ids, drawn with replacement from the log-uniform q."""
        log_range = math.log(self.config.vocab_size + 1)
        drawn = torch.rand(self.config.softmax_samples, device=device).mul_(log_range).exp_()
        return drawn.sub_(1).long().clamp_(0, self.config.vocab_size - 1)

    def _log_expected(self, ids: Tensor) -> Tensor:
        """``log(S · q(id))``: the log of how often ``_draw`` is expected to draw each id."""
        log_range = math.log(self.config.vocab_size + 1)
        q = torch.log1p(1 / (ids.to(self.decoder.weight.dtype) + 1)) / log_range
        return torch.log(q * self.config.softmax_samples)

    def contextual(self, tokens: Tensor) -> list[Tensor]:
        """Contextual vectors of each token of ``tokens`` ``(T, B)`` from zero states (ELMo's
        layers): ``[embedding (T, B, E), top layer (T, B, H)]``, the top layer of a
        bidirectional model being the forward state after reading the token joined with the
        backward state after reading it from the right: ``(T, B, 2H)``."""
        embedded = self.embedding(tokens)
        forward, _ = self.rnn(embedded)
        if self.rnn_backward is None:
            return [embedded, forward]
        back, _ = self.rnn_backward(embedded.flip(0))
        return [embedded, torch.cat([forward, back.flip(0)], dim=-1)]


def detach_hidden(hidden):
    """Cut the graph behind a carried state (truncated BPTT)."""
    if hidden is None:
        return None
    if isinstance(hidden, tuple):
        return tuple(h.detach() for h in hidden)
    return hidden.detach()

