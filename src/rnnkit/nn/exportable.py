r"""rnnkit recurrent layers as ``torch.nn`` modules that ``torch.jit`` and ``torch.onnx`` export.

rnnkit's :class:`~rnnkit.nn.LSTM`, :class:`~rnnkit.nn.GRU` and :class:`~rnnkit.nn.RNN` keep
``torch.nn``'s parameter names and layout (``weight_ih_l{k}{_reverse}``, gate order), so the same
``state_dict`` loads into ``torch.nn.LSTM/GRU/RNN``. Two mappings:

- :func:`to_torch`: the equivalent ``torch.nn`` layer, for inputs without padding (a language
  model step, a decoder step).
- :class:`PaddedRNN`: the layer over a padded batch with ``lengths`` ``(B,)``, without
  ``lengths=`` or packed sequences inside the graph. Each layer and direction is a one-layer
  ``torch.nn`` module holding that direction's weights; the backward direction reads each
  sequence reversed *within its own length* (a gather), so it starts at the sequence's real end
  and padding never reaches a real step. Outputs at padded steps are zero and the final states
  are those at each sequence's own last step, as rnnkit's ``lengths=`` gives them.

Axes: T steps, B batch, I input size, H hidden units, L layers, D directions.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["to_torch", "PaddedRNN", "reverse_padded"]

_MODES = {"LSTM": nn.LSTM, "GRU": nn.GRU, "RNN_TANH": nn.RNN, "RNN_RELU": nn.RNN}


def _make(layer: nn.Module, input_size: int, num_layers: int, bidirectional: bool,
          batch_first: bool) -> nn.Module:
    mode = getattr(layer, "mode", None)
    if mode not in _MODES:
        raise ValueError(f"layer: expected an rnnkit LSTM, GRU or RNN, got {type(layer).__name__}")
    if getattr(layer, "proj_size", 0):
        raise ValueError("layer: proj_size > 0 is not supported by the export mapping")
    if getattr(layer, "zoneout", 0) or getattr(layer, "layer_norm", False):
        raise ValueError(f"layer: {type(layer).__name__} with zoneout or layer normalisation has "
                         "no torch.nn equivalent; this recurrent layer cannot be exported")
    extra = {"nonlinearity": "relu" if mode == "RNN_RELU" else "tanh"} if mode.startswith(
        "RNN") else {}
    return _MODES[mode](input_size, layer.hidden_size, num_layers=num_layers, bias=layer.bias,
                        batch_first=batch_first, bidirectional=bidirectional, **extra)


def to_torch(layer: nn.Module) -> nn.Module:
    """The ``torch.nn`` layer equal to the rnnkit ``layer`` (same weights, same options), in
    eval mode; for inputs without padding."""
    twin = _make(layer, layer.input_size, layer.num_layers, layer.bidirectional,
                 layer.batch_first)
    _check_weights(layer, set(twin.state_dict()))
    twin.load_state_dict(layer.state_dict())
    return twin.eval()


def _check_weights(layer: nn.Module, expected: set[str]) -> None:
    """ValueError when ``layer`` holds weights a ``torch.nn`` layer has no place for (layer
    normalisation, …): mapping it would silently drop them."""
    extra = sorted(set(layer.state_dict()) - expected)
    if extra:
        raise ValueError(f"layer: {type(layer).__name__} holds weights torch.nn."
                         f"{type(layer).__name__} has no place for ({', '.join(extra[:4])}); "
                         "this recurrent layer cannot be exported")


def reverse_padded(x: Tensor, lengths: Tensor) -> Tensor:
    """x ``(B, T, ·)`` with each row's first ``lengths[b]`` steps reversed, padding left in
    place (its own inverse)."""
    steps = torch.arange(x.shape[1], device=x.device).unsqueeze(0)  # (1, T)
    last = lengths.to(x.device).unsqueeze(1) - 1  # (B, 1)
    index = torch.where(steps <= last, last - steps, steps)  # (B, T)
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[2]))


class PaddedRNN(nn.Module):
    """An rnnkit layer over padded batches, built of one-layer ``torch.nn`` modules.

    ``forward(x, lengths)``: x ``(B, T, I)`` (batch first), lengths ``(B,)`` int64 → outputs
    ``(B, T, D·H)`` (zero past each length) and the final states ``h`` ``(L·D, B, H)`` (and
    ``c`` for an LSTM, returned as a tuple ``(h, c)``), in ``torch.nn``'s order. A length of 0
    gives zeros (used for padded words of a character RNN). With ``cell_state=False`` an LSTM
    returns ``h`` alone: ``c`` at each row's own last step needs a step-by-step scan (a
    scripted loop), which a graph reading only ``h`` need not pay for.
    """

    def __init__(self, layer: nn.Module, cell_state: bool = True) -> None:
        super().__init__()
        self.lstm = getattr(layer, "mode", None) == "LSTM" and cell_state
        self.directions = 2 if layer.bidirectional else 1
        out = layer.hidden_size * self.directions
        parts = []
        state = layer.state_dict()
        used: set[str] = set()
        for index in range(layer.num_layers):
            for suffix in ("", "_reverse")[: self.directions]:
                size = layer.input_size if index == 0 else out
                part = _make(layer, size, 1, False, batch_first=True)
                names = {name: name.replace("_l0", f"_l{index}") + suffix
                         for name in part.state_dict()}
                used |= set(names.values())
                part.load_state_dict({name: state[key] for name, key in names.items()})
                parts.append(part.eval())
        _check_weights(layer, used)
        self.parts = nn.ModuleList(parts)

    def forward(self, x: Tensor, lengths: Tensor):
        mask = (torch.arange(x.shape[1], device=x.device).unsqueeze(0)
                < lengths.unsqueeze(1)).unsqueeze(-1).to(x.dtype)  # (B, T, 1)
        last = (lengths - 1).clamp(min=0)  # (B,)
        rows = torch.arange(x.shape[0], device=x.device)
        finals_h, finals_c = [], []
        for index, part in enumerate(self.parts):
            reverse = index % self.directions == 1
            source = reverse_padded(x, lengths) if reverse else x
            output, _ = part(source)  # (B, T, H)
            output = output * mask
            finals = output[rows, last]  # (B, H): the state after the last real step
            finals_h.append(finals)
            if self.lstm:
                finals_c.append(self._cell_state(part, source, lengths))
            if reverse:
                output = reverse_padded(output, lengths)
            if index % self.directions == 0:
                outputs = [output]
            else:
                outputs.append(output)
            if len(outputs) == self.directions:
                x = torch.cat(outputs, dim=2) if self.directions == 2 else outputs[0]
        h = torch.stack(finals_h)  # (L·D, B, H)
        return x, ((h, torch.stack(finals_c)) if self.lstm else h)

    @staticmethod
    def _cell_state(part: nn.Module, source: Tensor, lengths: Tensor) -> Tensor:
        """The LSTM's cell state after each row's last real step ``(B, H)`` (``torch.nn.LSTM``
        gives only the one after step T): a scripted scan, so the step count stays dynamic."""
        bias = part.bias
        zeros = torch.zeros_like(part.weight_hh_l0[:, 0])
        return _lstm_final_cell(source, lengths, part.weight_ih_l0, part.weight_hh_l0,
                                part.bias_ih_l0 if bias else zeros,
                                part.bias_hh_l0 if bias else zeros)


@torch.jit.script
def _lstm_final_cell(x: Tensor, lengths: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor,
                     b_hh: Tensor) -> Tensor:
    """c after each row's last real step: x ``(B, T, I)``, lengths ``(B,)`` → ``(B, H)``."""
    hidden = w_hh.shape[1]
    h = x.new_zeros(x.shape[0], hidden)
    c = x.new_zeros(x.shape[0], hidden)
    for t in range(x.shape[1]):
        gates = x[:, t] @ w_ih.t() + b_ih + h @ w_hh.t() + b_hh  # (B, 4H): i, f, g, o
        i, f, g, o = gates.chunk(4, 1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h_new = torch.sigmoid(o) * torch.tanh(c_new)
        real = (lengths > t).unsqueeze(1)
        c = torch.where(real, c_new, c)
        h = torch.where(real, h_new, h)
    return c
