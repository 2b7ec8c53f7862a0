"""``rnnkit.ConvLSTM`` / ``rnnkit.ConvGRU``: hand-written BPTT against gradcheck and an autograd
loop over ``torch.nn.functional.conv2d``, ``lengths=`` semantics, shapes, errors, edge cases."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as nnf

import rnnkit
from rnnkit.errors import LayerError
from rnnkit.functional import conv as F
from rnnkit.functional.schedule import make_schedule

DOUBLE = torch.float64
CELLS = {"lstm": (rnnkit.ConvLSTM, 4, 2), "gru": (rnnkit.ConvGRU, 3, 1)}  # blocks, states


pytestmark = pytest.mark.usefixtures("one_thread")


def _reference_step(cell: str, x, state, weight, bias):
    """The cell as the equations read, written here independently of rnnkit: one
    ``F.conv2d`` over ``[x_t, h_{t-1}]`` for the LSTM; the GRU's n gate needs the state's
    convolution apart (torch's form)."""
    pad = (weight.shape[2] // 2, weight.shape[3] // 2)
    if cell == "lstm":
        h, c = state
        i, f, g, o = nnf.conv2d(torch.cat([x, h], 1), weight, bias, padding=pad).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c
    (h,) = state
    channels = x.shape[1]
    a = nnf.conv2d(x, weight[:, :channels], bias, padding=pad).chunk(3, 1)
    u = nnf.conv2d(h, weight[:, channels:], padding=pad).chunk(3, 1)
    r, z = torch.sigmoid(a[0] + u[0]), torch.sigmoid(a[1] + u[1])
    n = torch.tanh(a[2] + r * u[2])
    return ((1 - z) * n + z * h,)


def _reference(cell: str, x, states, weight, bias, lengths=None):
    """Each sequence alone, cut to its length: (outputs zero-padded ``(T, B, H, Y, X)``,
    final states)."""
    steps, batch = x.shape[:2]
    lengths = [steps] * batch if lengths is None else list(lengths)
    outputs, finals = [], []
    for b in range(batch):
        state = tuple(s[b : b + 1] for s in states)
        seq = []
        for t in range(lengths[b]):
            state = _reference_step(cell, x[t, b : b + 1], state, weight, bias)
            seq.append(state[0])
        pad = [torch.zeros_like(seq[0])] * (steps - lengths[b])
        outputs.append(torch.cat(seq + pad))
        finals.append(state)
    return torch.stack(outputs, 1), tuple(torch.cat(s) for s in zip(*finals))


def _problem(cell, batch=3, steps=3, channels=2, hidden=2, frame=(3, 4), kernel=3,
             dtype=DOUBLE, seed=0, bias=True):
    _, blocks, count = CELLS[cell]
    gen = torch.Generator().manual_seed(seed)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel

    def rand(*shape):
        return (torch.rand(*shape, generator=gen, dtype=dtype) - 0.5).requires_grad_()

    x = rand(steps, batch, channels, *frame)
    states = tuple(rand(batch, hidden, *frame) for _ in range(count))
    weight = rand(blocks * hidden, channels + hidden, kh, kw)
    b = rand(blocks * hidden) if bias else None
    return x, states, weight, b


def _functional(cell, lengths, steps, batch, zero_start=False):
    def run(x, *rest):
        *states, weight, bias = rest
        schedule = make_schedule(steps, batch, None if lengths is None else
                                 torch.tensor(lengths), x.device, False)
        if cell == "lstm":
            return F.conv_lstm(x, states[0], states[1], weight, bias, schedule, zero_start)
        return F.conv_gru(x, states[0], weight, bias, schedule, zero_start)
    return run


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("lengths", [[2, 3, 1], None])
def test_gradcheck_float64(cell, lengths):
    """Inputs, initial states, weight and bias, with mixed (unsorted) and with equal
    lengths."""
    x, states, weight, bias = _problem(cell, channels=2, hidden=2, frame=(3, 3))
    run = _functional(cell, lengths, 3, 3)
    assert torch.autograd.gradcheck(run, (x, *states, weight, bias), atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gradcheck_non_square_kernel_no_bias(cell):
    x, states, weight, _ = _problem(cell, batch=2, hidden=1, frame=(3, 2), kernel=(1, 3),
                                    bias=False)
    run = _functional(cell, [3, 2], 3, 2)
    assert torch.autograd.gradcheck(run, (x, *states, weight, None), atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("lengths", [None, [4, 1, 3, 2]])
def test_parity_with_autograd_reference_loop(cell, dtype, tol, lengths):
    """Outputs, final states and every gradient against autograd over a loop of
    ``F.conv2d`` run sequence by sequence (``tol`` absolute; gradients relative to their
    largest entry)."""
    x, states, weight, bias = _problem(cell, batch=4, steps=4, channels=2, hidden=3,
                                       frame=(4, 5), dtype=dtype, seed=1)
    out, *finals = _functional(cell, lengths, 4, 4)(x, *states, weight, bias)
    ref_out, ref_finals = _reference(cell, x, states, weight, bias, lengths)
    torch.testing.assert_close(out, ref_out, atol=tol, rtol=0)
    for a, b in zip(finals, ref_finals, strict=True):
        torch.testing.assert_close(a, b, atol=tol, rtol=0)
    gen = torch.Generator().manual_seed(2)
    probes = [torch.randn(t.shape, generator=gen, dtype=dtype) for t in (out, *finals)]
    inputs = (x, *states, weight, bias)
    ours = torch.autograd.grad((out, *finals), inputs, probes)
    theirs = torch.autograd.grad((ref_out, *ref_finals), inputs, probes)
    for a, b in zip(ours, theirs, strict=True):
        scale = float(b.abs().max())
        torch.testing.assert_close(a / scale, b / scale, atol=tol * 10, rtol=0)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("channels,kernel", [(1, 3), (4, 3), (2, (1, 5)), (1, 7)])
@pytest.mark.parametrize("zero_start", [False, True])
def test_input_paths_and_zero_start_match_the_reference(cell, channels, kernel, zero_start):
    """Both ways the input convolution runs (unfold + matmul for C·kh·kw ≤ 32, ``conv2d``
    above; both are parametrised here) and ``zero_start=True`` with h0 = 0 (the first step's
    state convolution and its backward skipped): outputs, final states and the gradients of
    x, c0, the weight and the bias as the reference, float64, ragged lengths."""
    _, kh, kw = (None, kernel, kernel) if isinstance(kernel, int) else (None, *kernel)
    assert F._unfolds(torch.empty(1, channels, kh, kw), channels) == (channels * kh * kw <= 32)
    x, states, weight, bias = _problem(cell, batch=4, steps=4, channels=channels, hidden=2,
                                       frame=(5, 4), kernel=kernel, seed=3)
    if zero_start:
        states = (torch.zeros_like(states[0]), *states[1:])  # h0 = 0, no gradient asked
    lengths = [4, 1, 3, 2]
    out, *finals = _functional(cell, lengths, 4, 4, zero_start)(x, *states, weight, bias)
    ref_out, ref_finals = _reference(cell, x, states, weight, bias, lengths)
    torch.testing.assert_close(out, ref_out, atol=1e-12, rtol=0)
    for a, b in zip(finals, ref_finals, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    gen = torch.Generator().manual_seed(4)
    probes = [torch.randn(t.shape, generator=gen, dtype=DOUBLE) for t in (out, *finals)]
    inputs = [t for t in (x, *states, weight, bias) if t.requires_grad]
    ours = torch.autograd.grad((out, *finals), inputs, probes)
    theirs = torch.autograd.grad((ref_out, *ref_finals), inputs, probes)
    for a, b in zip(ours, theirs, strict=True):
        scale = float(b.abs().max())
        torch.testing.assert_close(a / scale, b / scale, atol=1e-11, rtol=0)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gradcheck_zero_start(cell):
    x, states, weight, bias = _problem(cell, channels=1, hidden=2, frame=(3, 3), seed=5)
    h0 = torch.zeros_like(states[0])
    run = _functional(cell, [2, 3, 1], 3, 3, zero_start=True)
    assert torch.autograd.gradcheck(lambda x, *rest: run(x, h0, *rest),
                                    (x, *states[1:], weight, bias), atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_module_layers_batch_first_and_lengths(cell):
    """Two layers = two single layers chained; batch_first is a transpose; padding never
    changes a result; outputs past a clip's end are zero."""
    layer_cls, _, count = CELLS[cell]
    torch.manual_seed(0)
    stack = layer_cls(2, 3, kernel_size=3, num_layers=2).double()
    first, second = layer_cls(2, 3).double(), layer_cls(3, 3).double()
    with torch.no_grad():
        first.weight_l0.copy_(stack.weight_l0), first.bias_l0.copy_(stack.bias_l0)
        second.weight_l0.copy_(stack.weight_l1), second.bias_l0.copy_(stack.bias_l1)
    x = torch.randn(5, 3, 2, 4, 4, dtype=DOUBLE)
    lengths = [5, 2, 4]
    out, finals = stack(x, lengths=lengths)
    mid, f1 = first(x, lengths=lengths)
    end, f2 = second(mid, lengths=lengths)
    torch.testing.assert_close(out, end, atol=1e-13, rtol=0)
    layers, _ = stack.forward_layers(x, lengths=lengths)
    assert len(layers) == 2 and layers[1] is not None
    torch.testing.assert_close(layers[0], mid, atol=1e-13, rtol=0)
    torch.testing.assert_close(layers[1], out, atol=0, rtol=0)
    finals = finals if count == 2 else (finals,)
    f1, f2 = (f1, f2) if count == 2 else ((f1,), (f2,))
    for state, a, b in zip(finals, f1, f2, strict=True):
        assert state.shape == (2, 3, 3, 4, 4)
        torch.testing.assert_close(state, torch.cat([a, b]), atol=1e-13, rtol=0)
    assert float(out.detach()[2:, 1].abs().max()) == 0.0
    assert float(out.detach()[4:, 2].abs().max()) == 0.0
    # the same clips padded with garbage, and batch first
    noisy = x.clone()
    noisy[2:, 1] = 100.0
    stack.batch_first = True
    out_bf, _ = stack(noisy.transpose(0, 1), lengths=torch.tensor(lengths))
    torch.testing.assert_close(out_bf.transpose(0, 1), out, atol=1e-13, rtol=0)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_hx_in_and_out(cell):
    """Running 3 steps then 2 from the returned state equals running 5 at once."""
    layer_cls, _, count = CELLS[cell]
    torch.manual_seed(0)
    layer = layer_cls(1, 2, 3, num_layers=2).double()
    x = torch.randn(5, 2, 1, 4, 4, dtype=DOUBLE)
    whole, final = layer(x)
    head, state = layer(x[:3])
    tail, final2 = layer(x[3:], state)
    torch.testing.assert_close(torch.cat([head, tail]), whole, atol=1e-13, rtol=0)
    for a, b in zip(final if count == 2 else (final,), final2 if count == 2 else (final2,),
                    strict=True):
        torch.testing.assert_close(a, b, atol=1e-13, rtol=0)


def test_shape_errors_name_the_argument():
    layer = rnnkit.ConvLSTM(2, 3)
    x = torch.randn(4, 2, 2, 5, 5)
    with pytest.raises(LayerError, match=r"^input: expected dimension 2 C = input_channels = 2"):
        layer(torch.randn(4, 2, 3, 5, 5))
    with pytest.raises(LayerError, match=r"^input: expected a 5D tensor \(T, B, C, Y, X\)"):
        layer(torch.randn(4, 2, 5, 5))
    with pytest.raises(LayerError, match=r"^input: expected at least one step"):
        layer(torch.randn(0, 2, 2, 5, 5))
    with pytest.raises(LayerError, match=r"^hx\[0\] \(h_0\): expected shape \(1, 2, 3, 5, 5\)"):
        layer(x, (torch.zeros(1, 2, 3, 4, 4), torch.zeros(1, 2, 3, 5, 5)))
    with pytest.raises(TypeError, match=r"^hx: expected a tuple \(h_0, c_0\)"):
        layer(x, torch.zeros(1, 2, 3, 5, 5))
    with pytest.raises(LayerError, match=r"^lengths: expected 2 lengths"):
        layer(x, lengths=[4, 3, 2])
    with pytest.raises(LayerError, match=r"^lengths: expected every length in \[1, T = 4\]"):
        layer(x, lengths=[5, 1])
    with pytest.raises(LayerError, match=r"^input: dtype torch.float64 does not match"):
        layer(x.double())
    with pytest.raises(LayerError, match=r"^hx: expected shape"):
        rnnkit.ConvGRU(2, 3)(x, torch.zeros(2, 2, 3, 5, 5))
    with pytest.raises(ValueError, match=r"^kernel_size: expected odd sizes"):
        rnnkit.ConvLSTM(2, 3, kernel_size=4)
    with pytest.raises(TypeError, match=r"^kernel_size: expected an int or a pair"):
        rnnkit.ConvLSTM(2, 3, kernel_size="3")
    with pytest.raises(ValueError, match=r"^hidden_channels: expected an int >= 1"):
        rnnkit.ConvGRU(2, 0)
    assert issubclass(LayerError, RuntimeError)  # what code written for torch.nn catches


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_empty_batch_runs_forward_and_backward(cell):
    layer_cls, _, count = CELLS[cell]
    layer = layer_cls(1, 2, num_layers=2)
    x = torch.randn(3, 0, 1, 4, 4, requires_grad=True)
    out, final = layer(x)
    assert out.shape == (3, 0, 2, 4, 4)
    for state in final if count == 2 else (final,):
        assert state.shape == (2, 0, 2, 4, 4)
    out.sum().backward()
    assert float(layer.weight_l1.grad.abs().sum()) == 0.0 and x.grad.shape == x.shape


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_double_backward(cell):
    """``create_graph=True`` is supported (the textbook loop is differentiated again)."""
    x, states, weight, bias = _problem(cell, batch=2, steps=2, channels=1, hidden=1,
                                       frame=(2, 3))
    run = _functional(cell, [2, 1], 2, 2)
    assert torch.autograd.gradgradcheck(run, (x, *states, weight, bias), atol=1e-6)
