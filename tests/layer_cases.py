"""The table of layer configurations the parity and gradcheck tests run over."""

from __future__ import annotations

import os

import pytest
import torch

import rnnkit

# name -> (rnnkit class, torch class, extra constructor kwargs for both)
CELLS = {
    "rnn_tanh": (rnnkit.RNN, torch.nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (rnnkit.RNN, torch.nn.RNN, {"nonlinearity": "relu"}),
    "rnn_tanh_native": (rnnkit.RNN, torch.nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu_native": (rnnkit.RNN, torch.nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (rnnkit.LSTM, torch.nn.LSTM, {}),
    "lstm_native": (rnnkit.LSTM, torch.nn.LSTM, {}),
    "lstm_proj": (rnnkit.LSTM, torch.nn.LSTM, {"proj_size": 3}),
    "gru": (rnnkit.GRU, torch.nn.GRU, {}),
    "gru_native": (rnnkit.GRU, torch.nn.GRU, {}),
}
# Both loops of each cell on the CPU are tested: "auto" would pick the compiled one wherever it
# builds.
_BACKEND = {
    "rnn_tanh": "reference",
    "rnn_relu": "reference",
    "rnn_tanh_native": "native",
    "rnn_relu_native": "native",
    "lstm": "reference",
    "lstm_native": "native",
    "gru": "reference",
    "gru_native": "native",
}


def ours_kwargs(cell: str) -> dict:
    """Constructor kwargs for the rnnkit layer of ``cell``: CELLS' extras and its backend.

    The compiled loop's cases skip where it cannot be built here (no C++ compiler), unless
    RNNKIT_REQUIRE_NATIVE=1 (CI sets it), where they fail with the reason instead.
    """
    backend = _BACKEND.get(cell)
    if backend == "native" and os.environ.get("RNNKIT_REQUIRE_NATIVE") != "1":
        from rnnkit.native import problem

        if problem() is not None:
            pytest.skip(f"the native backend is unavailable: {problem()}")
    extra = dict(CELLS[cell][2])
    if backend is not None:
        extra["backend"] = backend
    return extra


def make_pair(cell: str, input_size: int, hidden_size: int, dtype=torch.float32, **kwargs):
    """An rnnkit layer and a torch.nn layer with the same weights."""
    ours_cls, theirs_cls, extra = CELLS[cell]
    theirs = theirs_cls(input_size, hidden_size, dtype=dtype, **extra, **kwargs)
    ours = ours_cls(input_size, hidden_size, dtype=dtype, **ours_kwargs(cell), **kwargs)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def initial_state(layer, batch: int, dtype=torch.float32, unbatched: bool = False):
    """A random hx of the right structure for ``layer``."""
    count = layer.num_layers * (2 if layer.bidirectional else 1)
    out = layer.proj_size or layer.hidden_size
    shape = (count, out) if unbatched else (count, batch, out)
    h = torch.randn(shape, dtype=dtype)
    if isinstance(layer, (rnnkit.LSTM, torch.nn.LSTM)):
        cshape = (count, layer.hidden_size) if unbatched else (count, batch, layer.hidden_size)
        return h, torch.randn(cshape, dtype=dtype)
    return h


def as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


def clone_state(state, requires_grad: bool = True):
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach().clone().requires_grad_(requires_grad) for s in state)
    return state.detach().clone().requires_grad_(requires_grad)
