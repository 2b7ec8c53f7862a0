"""``ConvLSTM`` / ``ConvGRU`` keep their large buffers (the saved gates and cells, the backward's
gate gradients) from one call to the next (:mod:`rnnkit.functional._workspace`): reuse must never
change a result or touch a tensor that is still alive — what a call returned, what a graph saved
for a backward that has not run yet, another layer of a stack, another thread's call."""

from __future__ import annotations

import threading

import pytest
import torch

import rnnkit
from rnnkit.functional import _workspace as workspace
from rnnkit.functional import conv as F
from rnnkit.functional.schedule import make_schedule

CELLS = {"lstm": rnnkit.ConvLSTM, "gru": rnnkit.ConvGRU}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    """Keep even the tests' small buffers (the layer keeps only blocks of ≥ 1 MB otherwise)."""
    monkeypatch.setattr(workspace, "MIN_BYTES", 0)
    workspace.clear()
    yield
    workspace.clear()


def _layer(cell, channels=2, hidden=3, layers=2, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return CELLS[cell](channels, hidden, kernel_size=3, num_layers=layers).to(dtype)


def _states(final):
    return final if isinstance(final, tuple) else (final,)


def _grads(layer, x, lengths=None):
    """Gradients of a loss that reads every output (x, then each parameter)."""
    x = x.detach().requires_grad_()
    out, final = layer(x, lengths=lengths)
    loss = out.square().sum() + sum(s.sum() for s in _states(final))
    return torch.autograd.grad(loss, [x, *layer.parameters()])


def _same(a, b):
    for u, v in zip(a, b, strict=True):
        torch.testing.assert_close(u, v, rtol=0, atol=0)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("channels", [1, 5])  # both ways the backward treats the input
def test_results_do_not_change_when_buffers_are_reused(cell, channels):
    layer = _layer(cell, channels=channels)
    x = torch.randn(5, 4, channels, 6, 5, dtype=torch.float64)
    lengths = [3, 5, 1, 4]  # unsorted: the reordering path too
    fresh = _grads(layer, x, lengths)
    assert workspace._kept, "the backward hands its buffers back"
    _grads(layer, torch.randn(3, 2, channels, 4, 4, dtype=torch.float64))  # another shape
    for _ in range(2):
        _same(_grads(layer, x, lengths), fresh)
    with torch.no_grad():  # a forward without a graph gives its buffers back at once
        layer(x * 3, lengths=lengths)
    _same(_grads(layer, x, lengths), fresh)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_two_forwards_before_one_backward(cell):
    """The second call must not take the buffers the first one saved for its backward."""
    layer = _layer(cell)
    x1, x2 = (torch.randn(4, 3, 2, 5, 5, dtype=torch.float64) for _ in range(2))
    expected1, expected2 = _grads(layer, x1), _grads(layer, x2)
    xs = [x1.clone().requires_grad_(), x2.clone().requires_grad_()]
    outs = [layer(x) for x in xs]  # both graphs alive at once
    loss1 = outs[0][0].square().sum() + sum(s.sum() for s in _states(outs[0][1]))
    loss2 = outs[1][0].square().sum() + sum(s.sum() for s in _states(outs[1][1]))
    got2 = torch.autograd.grad(loss2, [xs[1], *layer.parameters()])  # the later one first
    layer(torch.randn(4, 3, 2, 5, 5, dtype=torch.float64))  # a call that takes what 2 gave
    _grads(layer, torch.randn(4, 3, 2, 5, 5, dtype=torch.float64))
    got1 = torch.autograd.grad(loss1, [xs[0], *layer.parameters()])
    _same(got1, expected1)
    _same(got2, expected2)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_returned_tensors_are_never_kept_buffers(cell):
    """Outputs, every layer's output and the final states stay as returned while later calls
    (with and without a graph, and their backwards) reuse the kept buffers."""
    layer = _layer(cell)
    x = torch.randn(4, 3, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    outputs, final = layer.forward_layers(x)
    (outputs[-1].sum() + sum(s.sum() for s in _states(final))).backward()
    with torch.no_grad():
        kept_out, kept_final = layer(x)
    returned = [*outputs, *_states(final), kept_out, *_states(kept_final)]
    copies = [t.detach().clone() for t in returned]
    for _ in range(2):
        _grads(layer, torch.randn(4, 3, 2, 5, 5, dtype=torch.float64) * 5)
        with torch.no_grad():
            layer(torch.randn(4, 3, 2, 5, 5, dtype=torch.float64) * 5)
    for a, b in zip(returned, copies, strict=True):
        assert torch.equal(a, b)
    kept = {buf.data_ptr() for buf in workspace._kept}
    for t in returned:
        assert t.untyped_storage().data_ptr() not in kept


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("lengths", [None, [3, 4, 2]])
def test_functional_final_states_are_not_views_of_kept_buffers(cell, lengths):
    """``conv_lstm``'s c_n is the last step of the cells, which are handed back: it must be a
    copy (the layers stack the states, so this shows only at the functional level)."""
    x = torch.randn(4, 3, 2, 5, 5, dtype=torch.float64)
    weight = torch.randn((4 if cell == "lstm" else 3) * 3, 5, 3, 3, dtype=torch.float64) * 0.3
    h0 = torch.randn(3, 3, 5, 5, dtype=torch.float64)
    schedule = make_schedule(4, 3, None if lengths is None else torch.tensor(lengths),
                             x.device, False)

    def call(x):
        if cell == "lstm":
            return F.conv_lstm(x, h0, h0 * 0.5, weight, None, schedule)
        return F.conv_gru(x, h0, weight, None, schedule)

    with torch.no_grad():
        returned = call(x)
        copies = [t.clone() for t in returned]
        call(x * 4)
    for a, b in zip(returned, copies, strict=True):
        assert torch.equal(a, b)


def _kept_ptrs():
    return {buf.data_ptr() for buf in workspace._kept}


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_buffers_stay_with_the_graph_until_its_last_backward(cell):
    layer = _layer(cell, layers=1)
    x = torch.randn(4, 3, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    out, final = layer(x)
    assert not workspace._kept, "saved buffers stay with the graph until its backward"
    # (gates, cells, tanh c) or (gates, W_hn * h, h − n): what the call saved in kept buffers
    saved = out.grad_fn.saved_tensors[7:10] if cell == "lstm" else \
        out.grad_fn.saved_tensors[5:8]
    saved_ptrs = {t.untyped_storage().data_ptr() for t in saved}
    assert len(saved_ptrs) == len(saved)
    loss = out.square().sum() + sum(s.sum() for s in _states(final))
    first = torch.autograd.grad(loss, [x, *layer.parameters()], retain_graph=True)
    assert len(workspace._kept) == (1 if cell == "lstm" else 2), "only the scratch came back"
    assert not saved_ptrs & _kept_ptrs()
    _grads(layer, torch.randn(4, 3, 2, 5, 5, dtype=torch.float64))  # reuses the scratch
    assert not saved_ptrs & _kept_ptrs()
    second = torch.autograd.grad(loss, [x, *layer.parameters()])
    _same(first, second)
    assert saved_ptrs <= _kept_ptrs(), "handed back after the last backward"
    workspace.clear()
    with torch.no_grad():
        layer(x)
    assert len(workspace._kept) == len(saved), "a forward without a graph gives them back"


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gradcheck_and_second_order_with_kept_buffers(cell):
    """gradcheck calls the layer many times, so buffers are reused between its calls, in a
    stack of two layers with ragged lengths; ``create_graph=True`` keeps the saved ones for the
    second backward."""
    layer = _layer(cell, channels=1, hidden=2, layers=2)
    names = [name for name, _ in layer.named_parameters()]
    x = torch.randn(3, 3, 1, 3, 4, dtype=torch.float64, requires_grad=True)
    params = [p.detach().clone().requires_grad_() for p in layer.parameters()]

    def run(x, *params):
        out, final = torch.func.functional_call(layer, dict(zip(names, params, strict=True)),
                                                (x,), {"lengths": [2, 3, 1]})
        return out, *_states(final)

    assert torch.autograd.gradcheck(run, (x, *params), atol=1e-7, rtol=1e-5)
    assert workspace._kept
    assert torch.autograd.gradgradcheck(lambda x: run(x, *params)[0].square().sum(), (x,),
                                        atol=1e-6)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_threads_never_share_a_buffer(cell):
    """Two threads run forward + backward on their own inputs over and over; each gets what it
    gets alone."""
    layer = _layer(cell, layers=2, dtype=torch.float32)
    inputs = [torch.randn(6, 4, 2, 8, 8) * (1 + k) for k in range(2)]
    expected = [_grads(layer, x) for x in inputs]
    failures = []

    def work(k):
        try:
            for _ in range(15):
                _same(_grads(layer, inputs[k]), expected[k])
        except AssertionError as error:  # pragma: no cover - reported below
            failures.append(error)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[0]


@pytest.mark.parametrize("winograd", ["off", "auto"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_large_buffers_are_reused_at_the_default_size_limit(cell, winograd, monkeypatch):
    """With the real ``MIN_BYTES`` (1 MB) the blocks of 1 MB and more come back after the
    backward (here the gates and their gradient, 4 MB each, and the cells and ``tanh c``,
    1 MB each, for the LSTM; the gates, their two gradients, ``W_hn * h`` and ``h − n`` for the
    GRU; with Winograd's weight gradient, which "auto" takes for the 32 → 128 / 96 state
    convolution, its scratch block as well): the next call's gates lie in memory the first call
    handed back."""
    monkeypatch.setattr(workspace, "MIN_BYTES", 1 << 20)
    monkeypatch.setattr(F, "WINOGRAD", winograd)
    layer = _layer(cell, channels=1, hidden=32, layers=1, dtype=torch.float32)
    x = torch.randn(4, 8, 1, 16, 16, requires_grad=True)

    def gates_ptr():
        out, _ = layer(x)
        ptr = out.grad_fn.saved_tensors[7 if cell == "lstm" else 5].data_ptr()
        out.sum().backward()
        return ptr

    gates_ptr()
    kept = {buf.data_ptr() for buf in workspace._kept}
    expected = (4 if cell == "lstm" else 5) + (winograd == "auto")
    assert len(kept) == expected, "the saved buffers and scratch came back"
    assert gates_ptr() in kept
