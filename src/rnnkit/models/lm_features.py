r"""A frozen language model's states as extra inputs of a task model (ELMo's use of a biLM,
Peters et al. 2018): each word's input becomes ``x_t = [E w_t ; c_t ; e_t ; →h_t ; ←h_t]``, its
own embedding (and character features) joined by the LM's embedding of the word and the states
of the forward LM after reading ``w_1 … w_t`` and of the backward LM after reading
``w_T … w_t`` (each text on its own, from zero states, as ``LanguageModel.contextual``).

The LM is frozen: no gradient reaches it, and it always runs as in evaluation (no dropout,
zoneout). Unlike ``--init-from``, which fine-tunes the LM's weights into the task model's own,
the task model keeps its own embedding and recurrent layers and learns how to use the LM's
features; its checkpoint holds a copy of the LM (no reference to the LM's file).

Axes: B texts, T words, V the task's word vocabulary, E_lm and H_lm the LM's embedding and
hidden sizes, F = E_lm + H_lm (+ H_lm with a backward LM) the features per word.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.nn.exportable import reverse_padded

__all__ = ["LMFeatureSizes", "LMFeatures", "join_lm_features", "lm_config", "lm_states"]


@dataclass(kw_only=True)
class LMFeatureSizes:
    """The LM-features field of the tagger's and the classifier's configs (keyword-only, as
    :class:`~rnnkit.models._config.CellOptions`): the frozen LM's own config
    (:class:`~rnnkit.models.lm.LMConfig` as a dict), or None (the default): no LM features."""

    lm_features: dict | None = None


def lm_config(saved: dict[str, Any]):
    """The :class:`~rnnkit.models.lm.LMConfig` of an ``lm_features`` dict (a JSON list of
    cutoffs back to a tuple; keys it does not know: ``ValueError`` naming them)."""
    from rnnkit.models.lm import LMConfig

    known = {f.name for f in fields(LMConfig)}
    unknown = sorted(set(saved) - known)
    if unknown:
        raise ValueError(f"lm_features: unknown LM config keys {unknown}")
    values = dict(saved)
    values["cutoffs"] = tuple(values.get("cutoffs") or ())
    return LMConfig(**values)


class LMFeatures(nn.Module):
    """The frozen LM (``embedding``, ``rnn``, ``rnn_backward`` named as in
    :class:`~rnnkit.models.lm.LanguageModel`, so its weights load by name) and ``ids``
    ``(V,)``: each task word's row in the LM's vocabulary (the LM's ``<unk>`` for words it
    lacks; filled by :func:`rnnkit.models.transfer.init_lm_features`)."""

    def __init__(self, saved: dict[str, Any], vocab_size: int) -> None:
        from rnnkit.models.lm import _recurrent

        super().__init__()
        cfg = lm_config(saved)
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embedding_size)
        self.rnn = _recurrent(cfg)
        self.rnn_backward = _recurrent(cfg) if cfg.bidirectional else None
        self.register_buffer("ids", torch.zeros(vocab_size, dtype=torch.long))
        directions = 2 if cfg.bidirectional else 1
        self.output_size = cfg.embedding_size + directions * cfg.hidden_size
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> LMFeatures:
        """Frozen: always as in evaluation, whatever the task model's mode."""
        return super().train(False)

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """tokens ``(B, T)`` (task word ids), lengths ``(B,)`` → features ``(B, T, F)``; rows
        past a text's end are not meaningful (the task model masks them)."""
        with torch.no_grad():
            return lm_states(self, self.rnn, self.rnn_backward, tokens, lengths)


def lm_states(features: nn.Module, rnn: nn.Module, rnn_backward: nn.Module | None,
              tokens: Tensor, lengths: Tensor) -> Tensor:
    """``[e_t ; →h_t ; ←h_t]`` ``(B, T, F)`` of ``features``' embedding and ids through the
    time-major stacks ``rnn`` and ``rnn_backward`` (the LM's own, or their ``torch.nn`` twins
    in an exported graph): the backward LM reads each text reversed within its length."""
    embedded = features.embedding(features.ids[tokens])  # (B, T, E_lm)
    forward, _ = rnn(embedded.transpose(0, 1))  # (T, B, H_lm)
    parts = [embedded, forward.transpose(0, 1)]
    if rnn_backward is not None:
        backward, _ = rnn_backward(reverse_padded(embedded, lengths).transpose(0, 1))
        parts.append(reverse_padded(backward.transpose(0, 1), lengths))  # reading order
    return torch.cat(parts, dim=-1)


def join_lm_features(inputs: Tensor, features: LMFeatures | None, tokens: Tensor,
                     lengths: Tensor) -> Tensor:
    """``inputs`` ``(B, T, D)`` with the LM's features appended (with ``features``):
    ``(B, T, D + F)``."""
    if features is None:
        return inputs
    return torch.cat([inputs, features(tokens, lengths).to(inputs.dtype)], dim=-1)
