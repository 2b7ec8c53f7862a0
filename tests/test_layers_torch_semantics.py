"""torch.nn semantics beyond the forward (issue 24, items 3-5): empty batches, bool flags, the
input's dtype, and errors that code written for torch.nn catches as RuntimeError."""

from __future__ import annotations

import pytest
import torch

import rnnkit
from rnnkit.errors import LayerError

LAYERS = [(rnnkit.RNN, torch.nn.RNN), (rnnkit.LSTM, torch.nn.LSTM), (rnnkit.GRU, torch.nn.GRU)]
CELLS = [(rnnkit.RNNCell, torch.nn.RNNCell), (rnnkit.LSTMCell, torch.nn.LSTMCell),
         (rnnkit.GRUCell, torch.nn.GRUCell)]


def _first(value):
    return value[0] if isinstance(value, tuple) else value


@pytest.mark.parametrize("ours, theirs", LAYERS)
@pytest.mark.parametrize("batch_first", [False, True])
def test_an_empty_batch_gives_what_torch_nn_gives(ours, theirs, batch_first):
    kwargs = dict(num_layers=2, bidirectional=True, batch_first=batch_first)
    ours, theirs = ours(4, 5, **kwargs), theirs(4, 5, **kwargs)
    x = torch.randn(0, 3, 4) if batch_first else torch.randn(3, 0, 4)
    x.requires_grad_()
    (out, state), (want, want_state) = ours(x), theirs(x)
    assert out.shape == want.shape and _first(state).shape == _first(want_state).shape
    out.sum().backward()  # runs, to zero gradients, as torch.nn's
    assert x.grad.shape == x.shape
    assert float(ours.weight_hh_l1_reverse.grad.abs().sum()) == 0.0


@pytest.mark.parametrize("ours, theirs", CELLS)
def test_an_empty_batch_through_a_cell(ours, theirs):
    out, want = _first(ours(4, 5)(torch.randn(0, 4))), _first(theirs(4, 5)(torch.randn(0, 4)))
    assert out.shape == want.shape == (0, 5)


@pytest.mark.parametrize("ours, theirs", LAYERS)
@pytest.mark.parametrize("flag, value", [("batch_first", "False"), ("bias", 2)])
def test_non_bool_flags_are_a_type_error_as_in_torch_nn(ours, theirs, flag, value):
    """(The layers only: torch.nn's cells take any truthy bias, and so do rnnkit's.)"""
    with pytest.raises(TypeError):
        theirs(4, 5, **{flag: value})
    with pytest.raises(TypeError, match=f"{flag}: expected a bool"):
        ours(4, 5, **{flag: value})


@pytest.mark.parametrize("ours, _", LAYERS + CELLS)
def test_an_input_of_another_dtype_names_both_and_the_fix(ours, _):
    x = torch.randn(3, 2, 4, dtype=torch.float64)
    if ours in (rnnkit.RNNCell, rnnkit.LSTMCell, rnnkit.GRUCell):
        x = x[0]
    with pytest.raises(LayerError, match=r"dtype torch.float64 does not match the weights' "
                                         r"torch.float32; convert the input"):
        ours(4, 5)(x)


@pytest.mark.parametrize("call", [
    lambda: rnnkit.LSTM(4, 5)(torch.randn(3, 2, 7)),                 # input size
    lambda: rnnkit.LSTM(4, 5)(torch.randn(3, 2, 4), (torch.zeros(1, 3, 5),) * 2),  # hx shape
    lambda: rnnkit.GRU(4, 5)(torch.randn(3, 2, 4), lengths=[3]),     # lengths
    lambda: rnnkit.LSTMCell(4, 5)(torch.randn(2, 7)),                # cell input size
    lambda: rnnkit.GRUCell(4, 5)(torch.randn(2, 4), torch.zeros(3, 5)),  # cell state shape
    lambda: rnnkit.RNN(4, 5)(torch.randn(0, 2, 4)),                  # no step at all
])
def test_shape_errors_are_value_and_runtime_errors(call):
    for kind in (ValueError, RuntimeError, LayerError):
        with pytest.raises(kind):
            call()


@pytest.mark.parametrize("layer", [rnnkit.LSTM(3, 4), rnnkit.GRUCell(3, 4)])
def test_torch_func_transforms_are_refused_with_the_way_out(layer):
    x = torch.randn(5, 2, 3) if isinstance(layer, rnnkit.LSTM) else torch.randn(2, 3)
    from torch.func import grad, vmap

    with pytest.raises(RuntimeError, match="do not support torch.func transforms"):
        grad(lambda x: _first(layer(x)).sum())(x)
    with pytest.raises(RuntimeError, match="do not support torch.func transforms"):
        vmap(lambda x: _first(layer(x)), randomness="same")(x.unsqueeze(0).expand(2, *x.shape))
    # the way out works: torch.nn's layer with the same weights
    if isinstance(layer, rnnkit.LSTM):
        from rnnkit.nn.exportable import to_torch

        twin = to_torch(layer)
        got = grad(lambda x: twin(x)[0].sum())(x)
        assert got.shape == x.shape


def test_jit_trace_is_refused_with_the_way_out():
    with pytest.raises(RuntimeError, match="cannot be traced by torch.jit.trace"):
        torch.jit.trace(rnnkit.GRU(3, 4), (torch.randn(5, 2, 3),), check_trace=False)


@pytest.mark.filterwarnings("ignore::UserWarning")  # dynamo's notes on the graph breaks
def test_torch_compile_runs_the_layer_with_the_same_results():
    """torch.compile (here its graph capture, backend "eager") goes around rnnkit's
    autograd.Function with graph breaks and gives the same outputs and gradients."""
    torch.manual_seed(0)
    layer = rnnkit.LSTM(3, 4, num_layers=2)
    x = torch.randn(5, 2, 3, requires_grad=True)
    want, _ = layer(x)
    (want_grad,) = torch.autograd.grad(want.sum(), x)
    got, _ = torch.compile(layer, backend="eager")(x)
    (got_grad,) = torch.autograd.grad(got.sum(), x)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got_grad, want_grad)
