"""Hand-written BPTT checked two ways: ``torch.autograd.gradcheck`` in float64, and parity with
an autograd reference loop over the cell equations (``reference_loop.py``)."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.func import functional_call

from layer_cases import CELLS, as_tuple, initial_state, ours_kwargs
from reference_loop import run_layer_stack

STEPS, BATCH, INPUT, HIDDEN = 4, 3, 2, 4
MIXED = [4, 1, 3]

TABLE = list(itertools.product(
    CELLS, [1, 2], [False, True], ["equal", "mixed"], [False, True]
))


def _layer(cell, num_layers, bidirectional):
    return CELLS[cell][0](INPUT, HIDDEN, num_layers=num_layers, bidirectional=bidirectional,
                          dtype=torch.float64, **ours_kwargs(cell))


@pytest.mark.parametrize("cell,num_layers,bidirectional,lengths_kind,with_hx", TABLE)
def test_gradcheck(cell, num_layers, bidirectional, lengths_kind, with_hx):
    layer = _layer(cell, num_layers, bidirectional)
    names = [n for n, _ in layer.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in layer.parameters()]
    x = torch.randn(STEPS, BATCH, INPUT, dtype=torch.float64, requires_grad=True)
    hx = as_tuple(initial_state(layer, BATCH, torch.float64)) if with_hx else ()
    hx = tuple(h.requires_grad_() for h in hx)
    lengths = MIXED if lengths_kind == "mixed" else None

    def run(x, *rest):
        states, weights = rest[: len(hx)], rest[len(hx):]
        state = None if not states else (states if len(states) == 2 else states[0])
        out, final = functional_call(layer, dict(zip(names, weights)), (x, state),
                                     {"lengths": lengths})
        return (out, *as_tuple(final))

    # Seeded inputs keep relu's pre-activations away from its kink at 0.
    assert torch.autograd.gradcheck(run, (x, *hx, *params), eps=1e-6, atol=1e-6, rtol=1e-4,
                                    fast_mode=num_layers == 2)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("lengths", [None, MIXED])
def test_matches_autograd_reference_loop(cell, bidirectional, lengths):
    layer = _layer(cell, 2, bidirectional)
    x = torch.randn(STEPS, BATCH, INPUT, dtype=torch.float64, requires_grad=True)
    hx = initial_state(layer, BATCH, torch.float64)
    out, final = layer(x, hx, lengths=lengths)
    ref_out, ref_final = run_layer_stack(layer, x, hx, lengths)
    torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-12)
    for a, b in zip(as_tuple(final), as_tuple(ref_final)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    weights = torch.randn_like(out)
    leaves = [x, *layer.parameters()]
    grads = torch.autograd.grad((out * weights).sum() + sum(s.sum() for s in as_tuple(final)),
                                leaves)
    ref = torch.autograd.grad(
        (ref_out * weights).sum() + sum(s.sum() for s in as_tuple(ref_final)), leaves)
    for name, a, b in zip(["input"] + [n for n, _ in layer.named_parameters()], grads, ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=lambda m, n=name: f"{n}: {m}")
