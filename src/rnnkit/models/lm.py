r"""Recurrent language model: embedding → rnnkit RNN/LSTM/GRU stack → dropout → output layer.

.. math::
    e_t = E x_t, \qquad s_t = \mathrm{RNN}(e_t, s_{t-1}), \qquad o_t = V\,\mathrm{drop}(s_t)

``o_t`` are the logits of the next token x_{t+1}. With ``tie_weights`` the output layer reuses the
embedding matrix (V = E); when the hidden size differs from the embedding size, a linear map
H → embedding size comes before it. Axes: T steps, B batch, E embedding size, H hidden size,
V vocabulary size, L layers. Tensors are time-major ``(T, B, ·)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import Tensor, nn

from rnnkit.nn import GRU, LSTM, RNN

__all__ = ["LMConfig", "LanguageModel", "CELLS"]

CELLS = ("lstm", "gru", "rnn_tanh", "rnn_relu")


@dataclass
class LMConfig:
    """Shape of a :class:`LanguageModel`."""

    vocab_size: int
    cell: str = "lstm"
    embedding_size: int = 128
    hidden_size: int = 512
    num_layers: int = 2
    dropout: float = 0.2  # on the embedding, between layers and before the output layer
    tie_weights: bool = False

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"--cell: expected one of {', '.join(CELLS)}, got {self.cell!r}")
        for name in ("vocab_size", "embedding_size", "hidden_size", "num_layers"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name.replace('_', '-')}: must be > 0, "
                                 f"got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"--dropout: must be in [0, 1), got {self.dropout}")

    def to_json(self) -> dict:
        return asdict(self)


def _recurrent(cfg: LMConfig) -> nn.Module:
    dropout = cfg.dropout if cfg.num_layers > 1 else 0.0
    args = (cfg.embedding_size, cfg.hidden_size, cfg.num_layers)
    if cfg.cell == "lstm":
        return LSTM(*args, dropout=dropout)
    if cfg.cell == "gru":
        return GRU(*args, dropout=dropout)
    nonlinearity = "tanh" if cfg.cell == "rnn_tanh" else "relu"
    return RNN(*args, nonlinearity=nonlinearity, dropout=dropout)


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
        self.decoder = nn.Linear(out_size, config.vocab_size)
        if config.tie_weights:
            self.decoder.weight = self.embedding.weight
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)

    def forward(self, tokens: Tensor, hidden=None):
        """tokens ``(T, B)`` int64; hidden as the recurrent layer's (None = zeros)."""
        embedded = self.dropout(self.embedding(tokens))  # (T, B, E)
        output, hidden = self.rnn(embedded, hidden)  # (T, B, H)
        output = self.dropout(output)
        if self.bridge is not None:
            output = self.bridge(output)  # (T, B, E)
        return self.decoder(output), hidden  # (T, B, V)


def detach_hidden(hidden):
    """Cut the graph behind a carried state (truncated BPTT)."""
    if hidden is None:
        return None
    if isinstance(hidden, tuple):
        return tuple(h.detach() for h in hidden)
    return hidden.detach()

