"""rnnkit layers against torch.nn through shared weights: outputs, final states and the
gradients of the input, hx and every parameter, over a table of options (float32).

Tolerances: values rtol = atol = 1e-5, gradients rtol = atol = 1e-4 (the issue's bounds)."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from layer_cases import CELLS, as_tuple, clone_state, initial_state, make_pair

VALUE_TOL = {"rtol": 1e-5, "atol": 1e-5}
GRAD_TOL = {"rtol": 1e-4, "atol": 1e-4}
STEPS, BATCH, INPUT, HIDDEN = 7, 4, 5, 6
MIXED = [7, 3, 5, 1]

OPTIONS = list(itertools.product(
    CELLS,  # cell
    [True, False],  # bias
    [False, True],  # batch_first
    [False, True],  # bidirectional
    [1, 3],  # num_layers
))


def _loss(output, state):
    """Weights every output element and final state differently, so every gradient is tested."""
    total = (output * torch.linspace(-1, 1, output.numel()).view_as(output)).sum()
    for s in as_tuple(state):
        total = total + (s * torch.linspace(1, 2, s.numel()).view_as(s)).sum()
    return total


def _compare(ours, theirs, run_ours, run_theirs, leaves_ours, leaves_theirs):
    out_o, st_o = run_ours()
    out_t, st_t = run_theirs()
    torch.testing.assert_close(out_o, out_t, **VALUE_TOL, msg=lambda m: f"output: {m}")
    for a, b in zip(as_tuple(st_o), as_tuple(st_t)):
        torch.testing.assert_close(a, b, **VALUE_TOL, msg=lambda m: f"final state: {m}")
    grads_o = torch.autograd.grad(_loss(out_o, st_o), leaves_ours + list(ours.parameters()))
    grads_t = torch.autograd.grad(_loss(out_t, st_t), leaves_theirs + list(theirs.parameters()))
    names = [f"leaf {k}" for k in range(len(leaves_ours))] + [n for n, _ in ours.named_parameters()]
    for name, a, b in zip(names, grads_o, grads_t):
        torch.testing.assert_close(a, b, **GRAD_TOL, msg=lambda m, n=name: f"grad of {n}: {m}")


@pytest.mark.parametrize("cell,bias,batch_first,bidirectional,num_layers", OPTIONS)
@pytest.mark.parametrize("with_hx", [False, True])
def test_padded_equal_lengths(cell, bias, batch_first, bidirectional, num_layers, with_hx):
    ours, theirs = make_pair(cell, INPUT, HIDDEN, bias=bias, batch_first=batch_first,
                             bidirectional=bidirectional, num_layers=num_layers)
    shape = (BATCH, STEPS, INPUT) if batch_first else (STEPS, BATCH, INPUT)
    x = torch.randn(shape)
    hx = initial_state(ours, BATCH) if with_hx else None
    x_o, x_t = x.clone().requires_grad_(), x.clone().requires_grad_()
    hx_o, hx_t = clone_state(hx), clone_state(hx)
    leaves_o = [x_o] + (list(as_tuple(hx_o)) if with_hx else [])
    leaves_t = [x_t] + (list(as_tuple(hx_t)) if with_hx else [])
    _compare(ours, theirs, lambda: ours(x_o, hx_o), lambda: theirs(x_t, hx_t), leaves_o, leaves_t)


@pytest.mark.parametrize("cell,bias,batch_first,bidirectional,num_layers", OPTIONS)
def test_lengths_match_packed_sequence(cell, bias, batch_first, bidirectional, num_layers):
    """``lengths=`` on a padded batch gives torch.nn's PackedSequence result."""
    ours, theirs = make_pair(cell, INPUT, HIDDEN, bias=bias, batch_first=batch_first,
                             bidirectional=bidirectional, num_layers=num_layers)
    shape = (BATCH, STEPS, INPUT) if batch_first else (STEPS, BATCH, INPUT)
    x = torch.randn(shape)
    hx = initial_state(ours, BATCH)
    x_o, x_t = x.clone().requires_grad_(), x.clone().requires_grad_()
    hx_o, hx_t = clone_state(hx), clone_state(hx)

    def run_theirs():
        packed = pack_padded_sequence(x_t, MIXED, batch_first=batch_first, enforce_sorted=False)
        out, state = theirs(packed, hx_t)
        out, _ = pad_packed_sequence(out, batch_first=batch_first, total_length=STEPS)
        return out, state

    _compare(ours, theirs, lambda: ours(x_o, hx_o, lengths=MIXED), run_theirs,
             [x_o, *as_tuple(hx_o)], [x_t, *as_tuple(hx_t)])


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("enforce_sorted", [False, True])
def test_packed_sequence_in_and_out(cell, bidirectional, enforce_sorted):
    ours, theirs = make_pair(cell, INPUT, HIDDEN, bidirectional=bidirectional, num_layers=2)
    lengths = sorted(MIXED, reverse=True) if enforce_sorted else MIXED
    x = torch.randn(STEPS, BATCH, INPUT)
    x_o, x_t = x.clone().requires_grad_(), x.clone().requires_grad_()
    hx = initial_state(ours, BATCH)
    hx_o, hx_t = clone_state(hx), clone_state(hx)

    def run(layer, inp, state):
        packed = pack_padded_sequence(inp, lengths, enforce_sorted=enforce_sorted)
        out, final = layer(packed, state)
        assert isinstance(out, torch.nn.utils.rnn.PackedSequence)
        assert torch.equal(out.batch_sizes, packed.batch_sizes)
        return out.data, final

    _compare(ours, theirs, lambda: run(ours, x_o, hx_o), lambda: run(theirs, x_t, hx_t),
             [x_o, *as_tuple(hx_o)], [x_t, *as_tuple(hx_t)])


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("with_hx", [False, True])
def test_unbatched(cell, bidirectional, with_hx):
    ours, theirs = make_pair(cell, INPUT, HIDDEN, bidirectional=bidirectional, num_layers=2)
    x = torch.randn(STEPS, INPUT)
    hx = initial_state(ours, 1, unbatched=True) if with_hx else None
    x_o, x_t = x.clone().requires_grad_(), x.clone().requires_grad_()
    hx_o, hx_t = clone_state(hx), clone_state(hx)
    leaves_o = [x_o] + (list(as_tuple(hx_o)) if with_hx else [])
    leaves_t = [x_t] + (list(as_tuple(hx_t)) if with_hx else [])
    _compare(ours, theirs, lambda: ours(x_o, hx_o), lambda: theirs(x_t, hx_t), leaves_o, leaves_t)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_padding_never_changes_a_result(cell, bidirectional):
    """Garbage in the padded steps changes neither outputs nor states nor gradients."""
    layer, _ = make_pair(cell, INPUT, HIDDEN, bidirectional=bidirectional, num_layers=2)
    x = torch.randn(STEPS, BATCH, INPUT)
    noisy = x.clone()
    for b, length in enumerate(MIXED):
        noisy[length:, b] = 1e3 * torch.randn(STEPS - length, INPUT)
    x1, x2 = x.clone().requires_grad_(), noisy.clone().requires_grad_()
    out1, st1 = layer(x1, lengths=MIXED)
    out2, st2 = layer(x2, lengths=MIXED)
    assert torch.equal(out1, out2)
    for a, b in zip(as_tuple(st1), as_tuple(st2)):
        assert torch.equal(a, b)
    for b, length in enumerate(MIXED):
        assert torch.count_nonzero(out1[length:, b]) == 0, "outputs past the end must be zero"
    g1 = torch.autograd.grad(_loss(out1, st1), [x1] + list(layer.parameters()))
    g2 = torch.autograd.grad(_loss(out2, st2), [x2] + list(layer.parameters()))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    for b, length in enumerate(MIXED):
        assert torch.count_nonzero(g1[0][length:, b]) == 0, "padded inputs get no gradient"


@pytest.mark.parametrize("cell", CELLS)
def test_each_sequence_alone_equals_the_batch(cell):
    """A mixed-length batch gives, per sequence, what that sequence gives alone."""
    layer, _ = make_pair(cell, INPUT, HIDDEN, bidirectional=True, num_layers=2)
    x = torch.randn(STEPS, BATCH, INPUT)
    out, state = layer(x, lengths=MIXED)
    for b, length in enumerate(MIXED):
        alone, alone_state = layer(x[:length, b : b + 1])
        torch.testing.assert_close(out[:length, b : b + 1], alone, rtol=1e-5, atol=1e-6)
        for s, s_alone in zip(as_tuple(state), as_tuple(alone_state)):
            torch.testing.assert_close(s[:, b : b + 1], s_alone, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("lengths_kind", ["list", "tensor_int64", "tensor_int32"])
def test_lengths_accepts_lists_and_integer_tensors(lengths_kind):
    layer, _ = make_pair("gru", INPUT, HIDDEN)
    x = torch.randn(STEPS, BATCH, INPUT)
    lengths = {"list": MIXED, "tensor_int64": torch.tensor(MIXED),
               "tensor_int32": torch.tensor(MIXED, dtype=torch.int32)}[lengths_kind]
    out, _ = layer(x, lengths=lengths)
    expected, _ = layer(x, lengths=MIXED)
    assert torch.equal(out, expected)


@pytest.mark.parametrize("cell", CELLS)
def test_state_dict_round_trip_both_ways(cell):
    ours, theirs = make_pair(cell, INPUT, HIDDEN, num_layers=2, bidirectional=True)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for (name, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert p.shape == q.shape, name
    theirs2 = type(theirs)(INPUT, HIDDEN, num_layers=2, bidirectional=True, **CELLS[cell][2])
    theirs2.load_state_dict(ours.state_dict())


@pytest.mark.parametrize("cell", CELLS)
def test_initialisation_matches_torch(cell):
    """Same RNG stream, same init: U(-1/sqrt(H), 1/sqrt(H)) in torch's parameter order."""
    torch.manual_seed(3)
    theirs = CELLS[cell][1](INPUT, HIDDEN, num_layers=2, **CELLS[cell][2])
    torch.manual_seed(3)
    ours = CELLS[cell][0](INPUT, HIDDEN, num_layers=2, **CELLS[cell][2])
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
        assert torch.equal(p, q), name


def test_dropout_between_layers_is_active_in_training_only():
    layer, _ = make_pair("lstm", INPUT, HIDDEN, num_layers=2, dropout=0.5)
    x = torch.randn(STEPS, BATCH, INPUT)
    layer.train()
    torch.manual_seed(1)
    a, _ = layer(x)
    torch.manual_seed(2)
    b, _ = layer(x)
    assert not torch.equal(a, b)
    layer.eval()
    c, _ = layer(x)
    d, _ = layer(x)
    assert torch.equal(c, d)


def test_dropout_keeps_padded_outputs_zero():
    layer, _ = make_pair("gru", INPUT, HIDDEN, num_layers=3, dropout=0.3, bidirectional=True)
    out, _ = layer.train()(torch.randn(STEPS, BATCH, INPUT), lengths=MIXED)
    for b, length in enumerate(MIXED):
        assert torch.count_nonzero(out[length:, b]) == 0


def test_one_training_step_changes_every_parameter():
    layer, _ = make_pair("lstm", INPUT, HIDDEN, num_layers=2, bidirectional=True, proj_size=3)
    before = {n: p.detach().clone() for n, p in layer.named_parameters()}
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    out, _ = layer(torch.randn(STEPS, BATCH, INPUT), lengths=MIXED)
    out.pow(2).sum().backward()
    optimizer.step()
    for name, p in layer.named_parameters():
        assert not torch.equal(p, before[name]), f"{name} did not change"
