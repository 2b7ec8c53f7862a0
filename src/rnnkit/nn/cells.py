"""Single-step cells, drop-in for ``torch.nn.RNNCell``, ``LSTMCell`` and ``GRUCell``.

A cell is one step of the corresponding layer: it runs the same math (:mod:`rnnkit.functional`)
over a sequence of length one. Input ``(B, I)`` or unbatched ``(I,)``; state ``(B, H)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from rnnkit import functional as F
from rnnkit.errors import LayerError
from rnnkit.functional.cells import spec
from rnnkit.nn import _checks as checks

__all__ = ["RNNCell", "LSTMCell", "GRUCell"]


class _CellBase(nn.Module):
    gates = spec("RNN_TANH").blocks

    def __init__(self, input_size: int, hidden_size: int, bias: bool, device, dtype) -> None:
        super().__init__()
        checks.check_constructor("CELL", input_size, hidden_size, 1, 0.0, 0, "auto", ("auto",))
        # torch.nn's cells take any truthy bias (its own test suite passes one positionally)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        factory = {"device": device, "dtype": dtype}
        rows = self.gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(rows, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(rows, hidden_size, **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(rows, **factory))
            self.bias_hh = nn.Parameter(torch.empty(rows, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")

    def _prepare(self, input: Tensor, hx, count: int):  # noqa: A002
        """Validate; return the input as ``(1, B, I)``, the states ``(B, H)`` and unbatched."""
        checks.check_transforms()
        if not isinstance(input, Tensor):
            raise TypeError(f"input: expected a Tensor, got {type(input).__name__}")
        if input.dim() not in (1, 2):
            raise LayerError(f"input: expected a 1D (unbatched) or 2D (batched) tensor, "
                             f"got {input.dim()}D with shape {tuple(input.shape)}")
        if input.shape[-1] != self.input_size:
            raise LayerError(f"input: expected last dimension input_size = {self.input_size}, "
                             f"got shape {tuple(input.shape)}")
        if not input.is_floating_point():
            raise TypeError(f"input: expected a floating-point tensor, got {input.dtype}")
        checks.check_dtype(input, self.weight_ih)
        unbatched = input.dim() == 1
        x = input.reshape(1, input.shape[0] if input.dim() == 2 else 1, self.input_size)
        batch = x.shape[1]
        if hx is None:
            states = tuple(x.new_zeros(batch, self.hidden_size) for _ in range(count))
        else:
            if count == 2 and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
                raise TypeError(f"hx: expected a tuple (h, c), got {type(hx).__name__}")
            given = tuple(hx) if count == 2 else (hx,)
            states = self._check_states(given, batch, unbatched, x)
        return x, states, unbatched

    def _check_states(self, given, batch: int, unbatched: bool, x: Tensor):
        names = ("hx[0] (h)", "hx[1] (c)") if len(given) == 2 else ("hx",)
        want = (self.hidden_size,) if unbatched else (batch, self.hidden_size)
        states = []
        for state, name in zip(given, names):
            if not isinstance(state, Tensor):
                raise TypeError(f"{name}: expected a Tensor, got {type(state).__name__}")
            if tuple(state.shape) != want:
                raise LayerError(f"{name}: expected shape {want}, got {tuple(state.shape)}")
            if state.dtype != x.dtype or state.device != x.device:
                raise TypeError(f"{name}: expected {x.dtype} on {x.device} (the input's), "
                                f"got {state.dtype} on {state.device}")
            states.append(state.reshape(batch, self.hidden_size))
        return tuple(states)

    def _empty(self, x: Tensor, states: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """An empty batch (B = 0): the states ``(0, H)`` as they are, as torch.nn, joined to the
        input and the weights so that backward runs (to zero gradients)."""
        anchor = x.sum() * 0 + sum(p.sum() for p in self.parameters()) * 0
        return tuple(state + anchor for state in states)

    def _schedule(self, x: Tensor):
        return F.make_schedule(1, x.shape[1], None, x.device, reverse=False)

    @staticmethod
    def _finish(state: Tensor, unbatched: bool) -> Tensor:
        return state.squeeze(0) if unbatched else state


class RNNCell(_CellBase):
    r"""One Elman step :math:`h' = f(W_{ih} x + b_{ih} + W_{hh} h + b_{hh})`, as nn.RNNCell."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device=None, dtype=None) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, device, dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:  # noqa: A002
        x, (h,), unbatched = self._prepare(input, hx, 1)
        if x.shape[1] == 0:
            return self._empty(x, (h,))[0]
        _, h_new = F.elman(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh,
                           self._schedule(x), self.nonlinearity)
        return self._finish(h_new, unbatched)


class LSTMCell(_CellBase):
    """One LSTM step, gate order (i, f, g, o), as torch.nn.LSTMCell. Returns ``(h', c')``."""

    gates = spec("LSTM").blocks

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 device=None, dtype=None) -> None:
        super().__init__(input_size, hidden_size, bias, device, dtype)

    def forward(self, input: Tensor, hx=None) -> tuple[Tensor, Tensor]:  # noqa: A002
        x, (h, c), unbatched = self._prepare(input, hx, 2)
        if x.shape[1] == 0:
            return self._empty(x, (h, c))
        _, h_new, c_new = F.lstm(x, h, c, self.weight_ih, self.weight_hh, self.bias_ih,
                                 self.bias_hh, None, self._schedule(x))
        return self._finish(h_new, unbatched), self._finish(c_new, unbatched)


class GRUCell(_CellBase):
    """One GRU step, gate order (r, z, n), as torch.nn.GRUCell."""

    gates = spec("GRU").blocks

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 device=None, dtype=None) -> None:
        super().__init__(input_size, hidden_size, bias, device, dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:  # noqa: A002
        x, (h,), unbatched = self._prepare(input, hx, 1)
        if x.shape[1] == 0:
            return self._empty(x, (h,))[0]
        _, h_new = F.gru(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh,
                         self._schedule(x))
        return self._finish(h_new, unbatched)
