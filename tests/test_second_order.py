"""Second-order gradients (create_graph=True: gradient penalties, Hessian-vector products,
MAML) are right for every cell and backend, or the test fails (issue 24, item 1): gradgradcheck
in float64, and the double backward of rnnkit's layers against torch.nn's."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

import rnnkit
from rnnkit import functional as F

BACKENDS = ["reference", "native"]
CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]


def _native_or_skip(backend):
    if backend == "native":
        from rnnkit import native

        if native.library() is None:
            pytest.skip(f"no compiled library: {native.problem()}")


def _call(cell, backend, lengths, reverse):
    """A function of (x, h0, [c0], weights...) running one layer of ``cell``."""
    schedule = F.make_schedule(4, 3, lengths, torch.device("cpu"), reverse)

    def run(x, h0, c0, w_ih, w_hh, b_ih, b_hh):
        if cell == "lstm":
            out, h, c = F.lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, None, schedule, backend)
            return out, h, c
        if cell == "gru":
            return F.gru(x, h0, w_ih, w_hh, b_ih, b_hh, schedule, backend)
        return F.elman(x, h0, w_ih, w_hh, b_ih, b_hh, schedule, cell[4:], backend)

    return run


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("lengths, reverse", [(None, False), (torch.tensor([4, 2, 3]), True)])
def test_gradgradcheck(cell, backend, lengths, reverse):
    _native_or_skip(backend)
    torch.manual_seed(0)
    gates = {"lstm": 4, "gru": 3}.get(cell, 1)
    H, I = 3, 2

    def t(*shape):
        return (torch.randn(*shape, dtype=torch.float64) * 0.5).requires_grad_()

    inputs = (t(4, 3, I), t(3, H), t(3, H), t(gates * H, I), t(gates * H, H), t(gates * H),
              t(gates * H))
    run = _call(cell, backend, lengths, reverse)
    assert gradcheck(run, inputs, atol=1e-6)
    assert gradgradcheck(run, inputs, atol=1e-5)


@pytest.mark.parametrize("ours, theirs", [(rnnkit.LSTM, torch.nn.LSTM), (rnnkit.GRU, torch.nn.GRU),
                                          (rnnkit.RNN, torch.nn.RNN)])
def test_a_gradient_penalty_matches_torch_nn(ours, theirs):
    torch.manual_seed(1)
    reference = theirs(3, 4, num_layers=2, bidirectional=True).double()
    layer = ours(3, 4, num_layers=2, bidirectional=True).double()
    layer.load_state_dict(reference.state_dict())
    x = torch.randn(5, 2, 3, dtype=torch.float64)

    def penalty(module):
        inp = x.clone().requires_grad_()
        out, _ = module(inp)
        (grad_x,) = torch.autograd.grad(out.pow(2).sum(), inp, create_graph=True)
        grad_x.pow(2).sum().backward()
        return [p.grad.clone() for p in module.parameters()]

    for got, want in zip(penalty(layer), penalty(reference), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-7, atol=1e-9)
