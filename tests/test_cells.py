"""Single-step cells against torch.nn's cells through shared weights (float32)."""

from __future__ import annotations

import pytest
import torch

import rnnkit

CELLS = {
    "rnn_tanh": (rnnkit.RNNCell, torch.nn.RNNCell, {"nonlinearity": "tanh"}, 1),
    "rnn_relu": (rnnkit.RNNCell, torch.nn.RNNCell, {"nonlinearity": "relu"}, 1),
    "lstm": (rnnkit.LSTMCell, torch.nn.LSTMCell, {}, 2),
    "gru": (rnnkit.GRUCell, torch.nn.GRUCell, {}, 1),
}


def _pair(cell, bias):
    ours_cls, theirs_cls, extra, _ = CELLS[cell]
    theirs = theirs_cls(5, 6, bias=bias, **extra)
    ours = ours_cls(5, 6, bias=bias, **extra)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("unbatched", [False, True])
@pytest.mark.parametrize("with_hx", [False, True])
def test_cell_matches_torch(cell, bias, unbatched, with_hx):
    ours, theirs = _pair(cell, bias)
    shape = (5,) if unbatched else (3, 5)
    x = torch.randn(shape)
    state_shape = (6,) if unbatched else (3, 6)
    hx = None
    if with_hx:
        hx = tuple(torch.randn(state_shape) for _ in range(CELLS[cell][3]))
        hx = hx if len(hx) == 2 else hx[0]
    a = ours(x, hx)
    b = theirs(x, hx)
    a, b = (a if isinstance(a, tuple) else (a,)), (b if isinstance(b, tuple) else (b,))
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-5)
    loss_a = sum(u.sum() * (k + 1) for k, u in enumerate(a))
    loss_b = sum(v.sum() * (k + 1) for k, v in enumerate(b))
    ga = torch.autograd.grad(loss_a, list(ours.parameters()))
    gb = torch.autograd.grad(loss_b, list(theirs.parameters()))
    for u, v in zip(ga, gb):
        torch.testing.assert_close(u, v, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("cell", CELLS)
def test_cell_gradcheck(cell):
    ours, _ = _pair(cell, True)
    ours = ours.double()
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: ours(x), (x,))


def test_cell_stepped_over_a_sequence_equals_the_layer():
    layer = rnnkit.LSTM(5, 6)
    cell = rnnkit.LSTMCell(5, 6)
    cell.load_state_dict({k[:-3]: v for k, v in layer.state_dict().items()})
    x = torch.randn(4, 2, 5)
    out, (h_n, c_n) = layer(x)
    h = c = torch.zeros(2, 6)
    for t in range(4):
        h, c = cell(x[t], (h, c))
        torch.testing.assert_close(h, out[t], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(c, c_n[0], rtol=1e-6, atol=1e-6)
