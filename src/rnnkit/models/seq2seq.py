r"""Encoder–decoder (sequence to sequence) with optional attention.

The primer's translation setup: the output starts only after the whole source was read. A
(bi)directional RNN encoder reads the source ``x_1 … x_S``; its final state, through a bridge,
is the decoder's first state, so the first target word already depends on the whole input:

.. math::
    s_0^{(l)} = \tanh(W_b^{(l)} [\overrightarrow{h}^{(l)}_S ; \overleftarrow{h}^{(l)}_1] + b_b)

The decoder RNN reads the previous target token ``y_{t-1}`` (``<bos>`` first) and updates
``s_t``. With ``attention="none"`` the output layer sees ``s_t`` alone. With attention it also
sees a context vector over all encoder states ``o_1 … o_S`` (Luong's placement: scores from the
decoder's new state, so teacher-forced training runs the decoder RNN over the whole target in one
call):

.. math::
    e_{t,i} = v^\top \tanh(W_q s_t + W_k o_i)         \quad\text{(additive, Bahdanau)}

    e_{t,i} = s_t^\top W_k o_i                          \quad\text{(dot, Luong "general")}

    \alpha_{t,i} = \mathrm{softmax}_i(e_{t,i}),\ e_{t,i} = -\infty \text{ at padded } i,\quad
    c_t = \sum_i \alpha_{t,i} o_i,\quad \tilde{s}_t = \tanh(W_c [s_t ; c_t])

and ``logits_t = V \tilde{s}_t + b``. With ``tie_embeddings`` ``V`` is the decoder's embedding
matrix (``\tilde{s}_t`` then has the embedding size). Teacher forcing with a ratio below 1 feeds
the model's own previous prediction instead of the gold token at random steps (step by step).

Axes: B batch, S source steps, T target steps, E embedding, H hidden units, D directions,
V vocabulary, L layers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from rnnkit._options import option
from rnnkit.models._config import CELLS, CellOptions, check_model_config, recurrent_stack

__all__ = ["Seq2SeqOptions", "Seq2SeqConfig", "Seq2Seq", "Memory", "ATTENTIONS"]

ATTENTIONS = ("none", "additive", "dot")


@dataclass(kw_only=True)
class Seq2SeqOptions(CellOptions):
    """The options a user chooses (``rnnkit translate train``'s ``model`` section, flags
    ``--cell``, ``--embedding-size``, …); :class:`Seq2SeqConfig` adds the vocabulary sizes and
    special ids that come from the data. Keyword-only."""

    cell: str = option("gru", "recurrent cell", choices=tuple(CELLS))
    embedding_size: int = option(256, "embedding size", aliases=("embed_dim",))
    hidden_size: int = option(256, "hidden units (encoder: per direction)")
    num_layers: int = option(1, "layers of encoder and decoder")
    bidirectional: bool = option(True, "bidirectional encoder")
    attention: str = option("additive", "attention over the encoder states", choices=ATTENTIONS)
    dropout: float = option(0.2, "dropout on embeddings, between layers and before the output")
    tie_embeddings: bool = option(False, "share the decoder embedding with the output layer")


@dataclass
class Seq2SeqConfig(Seq2SeqOptions):
    """Sizes and options of a :class:`Seq2Seq` model: the vocabulary sizes and special ids
    positional, the options by keyword."""

    src_vocab_size: int
    tgt_vocab_size: int
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2

    def __post_init__(self) -> None:
        check_model_config(self, ("src_vocab_size", "tgt_vocab_size", "embedding_size",
                                  "hidden_size", "num_layers"))
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention: expected one of {', '.join(ATTENTIONS)}, "
                             f"got {self.attention!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Memory:
    """What the decoder reads from the encoder: ``outputs`` ``(B, S, D·H)``, their attention
    ``keys`` ``(B, S, H)`` (None without attention) and ``mask`` ``(B, S)`` (True = real)."""

    outputs: Tensor
    keys: Tensor | None
    mask: Tensor

    def select(self, index: Tensor) -> Memory:
        """Rows ``index`` of every tensor (beam search repeats and reorders the batch)."""
        keys = None if self.keys is None else self.keys.index_select(0, index)
        return Memory(self.outputs.index_select(0, index), keys, self.mask.index_select(0, index))


State = Tensor | tuple[Tensor, Tensor]  # (L, B, H), or (h, c) for LSTM


class Seq2Seq(nn.Module):
    """Bi-RNN encoder → bridge → RNN decoder (+ attention) → target-token logits."""

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.config = config
        cfg = config
        self.directions = 2 if cfg.bidirectional else 1
        memory_size = self.directions * cfg.hidden_size
        self.src_embedding = nn.Embedding(cfg.src_vocab_size, cfg.embedding_size,
                                          padding_idx=cfg.pad_id)
        self.tgt_embedding = nn.Embedding(cfg.tgt_vocab_size, cfg.embedding_size,
                                          padding_idx=cfg.pad_id)
        self.encoder = recurrent_stack(cfg, cfg.embedding_size, bidirectional=cfg.bidirectional)
        self.decoder = recurrent_stack(cfg, cfg.embedding_size)
        self.bridge = nn.Linear(memory_size, cfg.hidden_size)
        if cfg.cell == "lstm":
            self.bridge_cell = nn.Linear(memory_size, cfg.hidden_size)
        out_size = cfg.embedding_size if cfg.tie_embeddings else cfg.hidden_size
        if cfg.attention != "none":
            self.key = nn.Linear(memory_size, cfg.hidden_size, bias=cfg.attention == "additive")
            if cfg.attention == "additive":
                self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size, bias=False)
                self.score = nn.Linear(cfg.hidden_size, 1, bias=False)
            self.combine = nn.Linear(cfg.hidden_size + memory_size, out_size)
        elif cfg.tie_embeddings:
            self.combine = nn.Linear(cfg.hidden_size, out_size)
        self.dropout = nn.Dropout(cfg.dropout)
        self.output = nn.Linear(out_size, cfg.tgt_vocab_size)
        if cfg.tie_embeddings:
            self.output.weight = self.tgt_embedding.weight

    # ------------------------------------------------------------------ encoder

    def encode(self, src: Tensor, lengths: Tensor) -> tuple[Memory, State]:
        """src ``(B, S)``, lengths ``(B,)`` (each ≥ 1) → memory and the decoder's first state."""
        embedded = self.dropout(self.src_embedding(src))  # (B, S, E)
        outputs, final = self.encoder(embedded, lengths=lengths.cpu())  # (B, S, D·H)
        mask = torch.arange(src.shape[1], device=src.device)[None, :] < lengths.to(src.device)[
            :, None]  # (B, S)
        keys = self.key(outputs) if self.config.attention != "none" else None  # (B, S, H)
        if isinstance(final, tuple):
            state = (torch.tanh(self.bridge(self._join(final[0]))), self.bridge_cell(
                self._join(final[1])))
        else:
            state = torch.tanh(self.bridge(self._join(final)))  # (L, B, H)
        return Memory(outputs, keys, mask), state

    def _join(self, final: Tensor) -> Tensor:
        """``(L·D, B, H)`` → ``(L, B, D·H)``: both directions of each layer side by side."""
        layers, batch = self.config.num_layers, final.shape[1]
        return final.view(layers, self.directions, batch, -1).permute(0, 2, 1, 3).reshape(
            layers, batch, -1)

    # ------------------------------------------------------------------ decoder

    def attend(self, hidden: Tensor, memory: Memory) -> tuple[Tensor, Tensor]:
        """hidden ``(B, T, H)`` → context ``(B, T, D·H)``, weights ``(B, T, S)`` (0 at padding)."""
        if self.config.attention == "additive":
            query = self.query(hidden)  # (B, T, H)
            energy = self.score(torch.tanh(query[:, :, None] + memory.keys[:, None])).squeeze(-1)
        else:
            energy = hidden @ memory.keys.transpose(1, 2)  # (B, T, S)
        energy = energy.masked_fill(~memory.mask[:, None, :], float("-inf"))
        weights = torch.softmax(energy, dim=-1)  # (B, T, S)
        return weights @ memory.outputs, weights

    def project(self, hidden: Tensor, memory: Memory) -> tuple[Tensor, Tensor | None]:
        """Decoder states ``(B, T, H)`` → logits ``(B, T, V)`` and attention ``(B, T, S)``."""
        weights = None
        if self.config.attention != "none":
            context, weights = self.attend(hidden, memory)
            hidden = torch.tanh(self.combine(torch.cat([hidden, context], dim=-1)))
        elif self.config.tie_embeddings:
            hidden = torch.tanh(self.combine(hidden))
        return self.output(self.dropout(hidden)), weights

    def decode(self, tgt_in: Tensor, state: State, memory: Memory
               ) -> tuple[Tensor, State, Tensor | None]:
        """Teacher-forced decoder over ``tgt_in`` ``(B, T)`` → logits ``(B, T, V)``, last state,
        attention ``(B, T, S)``. Also one step of decoding with ``T = 1``."""
        embedded = self.dropout(self.tgt_embedding(tgt_in))  # (B, T, E)
        hidden, state = self.decoder(embedded, state)  # (B, T, H)
        logits, weights = self.project(hidden, memory)
        return logits, state, weights

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor,
                teacher_forcing: float = 1.0) -> Tensor:
        """Logits ``(B, T, V)`` of ``tgt_in`` = ``<bos> y_1 … y_{T-1}``; the gold token is fed
        at each step with probability ``teacher_forcing``, else the model's own prediction."""
        memory, state = self.encode(src, src_lengths)
        if teacher_forcing >= 1.0:
            return self.decode(tgt_in, state, memory)[0]
        steps, logits = [], None
        for t in range(tgt_in.shape[1]):
            token = tgt_in[:, t]
            if t > 0:
                own = logits[:, 0].argmax(-1)
                use_gold = torch.rand(token.shape, device=token.device) < teacher_forcing
                token = torch.where(use_gold, token, own)
            logits, state, _ = self.decode(token[:, None], state, memory)
            steps.append(logits)
        return torch.cat(steps, dim=1)
