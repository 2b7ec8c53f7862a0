r"""Polyphonic piano-roll model: an RNN over time steps, and a distribution over the next step.

The input at step t is the roll of step t−1 (zeros at t = 0), so step 0 is predicted too:

.. math::
    s_t = \mathrm{RNN}(x_{t-1}, s_{t-1}), \qquad
    -\log p(x_t \mid x_{<t}) = \mathrm{NLL}(x_t; s_t)

Two output distributions over the P pitches of a step (``distribution``):

- ``bernoulli``: independent Bernoulli per pitch, logits ``V s_t + b`` (Boulanger-Lewandowski
  et al. 2012's RNN baseline; Chung et al. 2014).
- ``nade``: the pitches of a step jointly, in pitch order, by a NADE whose biases come from the
  RNN state (RNN-NADE, Boulanger-Lewandowski et al. 2012):

  .. math::
      c_t = c + W_c s_t, \quad b_t = b + W_b s_t, \quad
      g_k = \sigma(c_t + \textstyle\sum_{j<k} x_{t,j} W_{j}), \quad
      p(x_{t,k} = 1 \mid x_{t,<k}) = \sigma(b_{t,k} + V_k \cdot g_k)

  (W, V: ``(P, N)``, N the NADE's hidden size). Training and scoring are one pass (a cumulative
  sum over pitches); sampling walks the pitches in order.

Axes: B batch, T time steps, P pitches, H hidden size, N NADE hidden size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as nnf

from rnnkit._options import option
from rnnkit.models._config import (
    CELLS,
    CellOptions,
    check_model_config,
    recurrent_stack,
)

__all__ = ["PianoRollOptions", "PianoRollConfig", "PianoRollRNN", "bernoulli_nll", "OUTPUTS"]

OUTPUTS = ("bernoulli", "nade")


@dataclass(kw_only=True)
class PianoRollOptions(CellOptions):
    """The options a user chooses (the piano-roll part of ``rnnkit music train``'s ``model``
    section); :class:`PianoRollConfig` adds the number of pitches. Keyword-only."""

    cell: str = option("lstm", "recurrent cell", tuple(CELLS))
    hidden_size: int = option(128, "hidden units per layer")
    num_layers: int = option(1, "stacked recurrent layers")
    dropout: float = option(0.0, "dropout on the RNN outputs and between layers")
    distribution: str = option("bernoulli", "piano roll: distribution of a step (independent "
                               "Bernoulli per pitch, or RNN-NADE over the pitches jointly)",
                               OUTPUTS)
    nade_hidden: int = option(64, "piano roll, --distribution nade: hidden units of the NADE")


@dataclass
class PianoRollConfig(PianoRollOptions):
    """Shape of a :class:`PianoRollRNN`: the number of pitches positional, the options by
    keyword."""

    pitches: int

    def __post_init__(self) -> None:
        check_model_config(self, ("pitches", "hidden_size", "num_layers", "nade_hidden"))
        if self.distribution not in OUTPUTS:
            raise ValueError(f"distribution: expected one of {', '.join(OUTPUTS)}, "
                             f"got {self.distribution!r}")


def bernoulli_nll(logits: Tensor, target: Tensor) -> Tensor:
    """−log p of each step's whole multi-hot vector under independent Bernoullis:
    ``(…, P)`` logits and 0/1 targets → ``(…)`` nats."""
    return nnf.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(-1)


class BernoulliHead(nn.Module):
    """Independent Bernoulli per pitch."""

    def __init__(self, hidden_size: int, pitches: int) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden_size, pitches)

    def nll(self, states: Tensor, target: Tensor) -> Tensor:
        """``(B, T, H)`` states, ``(B, T, P)`` targets → ``(B, T)`` nats."""
        return bernoulli_nll(self.linear(states), target)

    def sample(self, state: Tensor, temperature: float, generator: torch.Generator) -> Tensor:
        """``(B, H)`` → a sampled step ``(B, P)``."""
        probs = torch.sigmoid(self.linear(state) / temperature)
        return torch.bernoulli(probs, generator=generator)


class NadeHead(nn.Module):
    """A NADE over the pitches of a step, its biases set by the RNN state (RNN-NADE)."""

    def __init__(self, hidden_size: int, pitches: int, nade_hidden: int) -> None:
        super().__init__()
        self.to_visible = nn.Linear(hidden_size, pitches)  # b_t
        self.to_hidden = nn.Linear(hidden_size, nade_hidden)  # c_t
        self.weight_in = nn.Parameter(torch.randn(pitches, nade_hidden) * 0.05)  # W
        self.weight_out = nn.Parameter(torch.randn(pitches, nade_hidden) * 0.05)  # V

    def logits(self, states: Tensor, target: Tensor) -> Tensor:
        """Logits of p(x_k = 1 | x_<k) for every pitch k: ``(B, T, H)``, ``(B, T, P)`` →
        ``(B, T, P)``."""
        pushed = target.unsqueeze(-1) * self.weight_in  # (B, T, P, N)
        before = torch.cumsum(pushed, dim=-2) - pushed  # sum over j < k, (B, T, P, N)
        hidden = torch.sigmoid(self.to_hidden(states).unsqueeze(-2) + before)  # (B, T, P, N)
        return self.to_visible(states) + (hidden * self.weight_out).sum(-1)  # (B, T, P)

    def nll(self, states: Tensor, target: Tensor) -> Tensor:
        return bernoulli_nll(self.logits(states, target), target)

    def sample(self, state: Tensor, temperature: float, generator: torch.Generator) -> Tensor:
        """``(B, H)`` → a step ``(B, P)``, sampled pitch by pitch."""
        bias = self.to_visible(state)  # (B, P)
        activation = self.to_hidden(state)  # (B, N)
        step = torch.zeros_like(bias)
        for k in range(bias.shape[1]):
            hidden = torch.sigmoid(activation)
            logit = bias[:, k] + hidden @ self.weight_out[k]  # (B,)
            step[:, k] = torch.bernoulli(torch.sigmoid(logit / temperature), generator=generator)
            activation = activation + step[:, k : k + 1] * self.weight_in[k]
        return step


class PianoRollRNN(nn.Module):
    """``forward(rolls (B, T, P), lengths (B,))`` → per-step NLL ``(B, T)`` (zeros past each
    length)."""

    def __init__(self, config: PianoRollConfig) -> None:
        super().__init__()
        self.config = config
        self.rnn = recurrent_stack(config, config.pitches)
        self.dropout = nn.Dropout(config.dropout)
        if config.distribution == "nade":
            self.head = NadeHead(config.hidden_size, config.pitches, config.nade_hidden)
        else:
            self.head = BernoulliHead(config.hidden_size, config.pitches)

    def forward(self, rolls: Tensor, lengths: Tensor) -> Tensor:
        inputs = nnf.pad(rolls, (0, 0, 1, 0))[:, :-1]  # x_{t-1}, zeros at t = 0, (B, T, P)
        states, _ = self.rnn(inputs, lengths=lengths)  # (B, T, H)
        nll = self.head.nll(self.dropout(states), rolls)  # (B, T)
        mask = torch.arange(rolls.shape[1], device=rolls.device) < lengths.unsqueeze(1)
        return nll * mask.to(nll.dtype)

    @torch.no_grad()
    def generate(self, prime: Tensor, steps: int, temperature: float,
                 generator: torch.Generator) -> Tensor:
        """``prime`` ``(B, T0, P)`` (T0 may be 0), then ``steps`` sampled steps → ``(B, T0 +
        steps, P)``."""
        batch, pitches = prime.shape[0], self.config.pitches
        previous = prime.new_zeros(batch, 1, pitches)
        hidden, out = None, [prime]
        for index in range(prime.shape[1]):
            _, hidden = self.rnn(previous, hidden)
            previous = prime[:, index : index + 1]
        for _ in range(steps):
            state, hidden = self.rnn(previous, hidden)  # (B, 1, H)
            previous = self.head.sample(state[:, 0], temperature, generator).unsqueeze(1)
            out.append(previous)
        return torch.cat(out, dim=1)
