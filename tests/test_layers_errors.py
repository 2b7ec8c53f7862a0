"""Bad input at the layers' boundary: the exception type, and a message naming the argument."""

from __future__ import annotations

import pytest
import torch

import rnnkit


def _raises(exc, fragment, fn, *args, **kwargs):
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    assert fragment in str(info.value), str(info.value)
    return str(info.value)


@pytest.mark.parametrize(
    "kwargs,exc,fragment",
    [
        ({"input_size": 0}, ValueError, "input_size"),
        ({"hidden_size": -1}, ValueError, "hidden_size"),
        ({"hidden_size": 2.5}, TypeError, "hidden_size"),
        ({"num_layers": 0}, ValueError, "num_layers"),
        ({"dropout": 1.5}, ValueError, "dropout"),
        ({"dropout": "x"}, TypeError, "dropout"),
        ({"backend": "cudnn"}, ValueError, "backend"),
        ({"proj_size": 8}, ValueError, "proj_size"),
    ],
)
def test_constructor_errors(kwargs, exc, fragment):
    args = {"input_size": 3, "hidden_size": 4, **kwargs}
    _raises(exc, fragment, rnnkit.LSTM, **args)


def test_unknown_nonlinearity():
    _raises(ValueError, "nonlinearity", rnnkit.RNN, 3, 4, nonlinearity="sigmoid")
    _raises(ValueError, "nonlinearity", rnnkit.RNNCell, 3, 4, nonlinearity="gelu")


def test_proj_size_only_for_lstm():
    from rnnkit.nn.rnn import RecurrentBase

    _raises(ValueError, "proj_size", RecurrentBase, "GRU", 3, 4, proj_size=2)


@pytest.mark.parametrize("cls", [rnnkit.RNN, rnnkit.LSTM, rnnkit.GRU])
def test_input_errors(cls):
    layer = cls(3, 4)
    _raises(ValueError, "input: expected a 2D", layer, torch.randn(2, 3, 4, 3))
    _raises(ValueError, "input_size = 3", layer, torch.randn(5, 2, 7))
    _raises(TypeError, "input", layer, [[1.0, 2.0, 3.0]])
    _raises(TypeError, "floating-point", layer, torch.ones(5, 2, 3, dtype=torch.long))
    _raises(ValueError, "at least one step", layer, torch.randn(0, 2, 3))


def test_batch_first_mismatch_is_named():
    layer = rnnkit.GRU(3, 4, batch_first=False)
    message = _raises(ValueError, "lengths", layer, torch.randn(2, 6, 3), lengths=[6, 4])
    assert "batch_first" in message


@pytest.mark.parametrize(
    "lengths,exc,fragment",
    [
        ([5, 2], ValueError, "expected 3 lengths"),
        ([5, 2, 0], ValueError, "[1, T = 5]"),
        ([5, 2, 6], ValueError, "[1, T = 5]"),
        ([5, 2.0, 1], TypeError, "integers"),
        (torch.tensor([5.0, 2.0, 1.0]), TypeError, "integers"),
        (torch.tensor([[5, 2, 1]]), ValueError, "shape (3,)"),
        (7, TypeError, "lengths"),
    ],
)
def test_lengths_errors(lengths, exc, fragment):
    _raises(exc, fragment, rnnkit.LSTM(3, 4), torch.randn(5, 3, 3), lengths=lengths)


def test_hx_errors():
    x = torch.randn(5, 2, 3)
    gru = rnnkit.GRU(3, 4, num_layers=2)
    _raises(ValueError, "hx: expected shape (2, 2, 4)", gru, x, torch.zeros(1, 2, 4))
    _raises(TypeError, "hx: expected dtype torch.float32", gru, x,
            torch.zeros(2, 2, 4, dtype=torch.float64))
    _raises(TypeError, "hx: expected a Tensor", gru, x, [0.0])
    lstm = rnnkit.LSTM(3, 4, proj_size=2)
    _raises(TypeError, "tuple (h_0, c_0)", lstm, x, torch.zeros(1, 2, 2))
    _raises(ValueError, "hx[0] (h_0): expected shape (1, 2, 2)", lstm, x,
            (torch.zeros(1, 2, 4), torch.zeros(1, 2, 4)))
    _raises(ValueError, "hx[1] (c_0): expected shape (1, 2, 4)", lstm, x,
            (torch.zeros(1, 2, 2), torch.zeros(1, 2, 2)))


def test_lengths_with_packed_sequence_is_an_error():
    from torch.nn.utils.rnn import pack_padded_sequence

    packed = pack_padded_sequence(torch.randn(4, 2, 3), [4, 2])
    _raises(ValueError, "lengths", rnnkit.RNN(3, 4), packed, lengths=[4, 2])


def test_triton_backend_on_cpu_is_a_clear_error():
    layer = rnnkit.LSTM(3, 4, backend="triton")
    _raises(ValueError, "backend='triton' cannot serve", layer, torch.randn(5, 2, 3))


def test_cell_errors():
    cell = rnnkit.LSTMCell(3, 4)
    _raises(ValueError, "input: expected a 1D", cell, torch.randn(2, 2, 3))
    _raises(ValueError, "input_size = 3", cell, torch.randn(2, 5))
    _raises(TypeError, "tuple (h, c)", cell, torch.randn(2, 3), torch.zeros(2, 4))
    _raises(ValueError, "hx[0] (h): expected shape (2, 4)", cell, torch.randn(2, 3),
            (torch.zeros(3, 4), torch.zeros(2, 4)))


def test_auto_backend_on_cpu_uses_reference_where_native_cannot_serve():
    from rnnkit.nn._backends import choose_auto

    assert choose_auto(rnnkit.LSTM(3, 4, proj_size=2), torch.randn(2, 1, 3)) == "reference"
    x = torch.randn(2, 1, 3, dtype=torch.bfloat16)
    assert choose_auto(rnnkit.GRU(3, 4, dtype=torch.bfloat16), x) == "reference"
