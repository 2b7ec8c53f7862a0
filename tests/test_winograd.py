"""Winograd F(4 × 4, 3 × 3) (:mod:`rnnkit.functional._winograd`) against ``conv2d``, and the
ConvLSTM / ConvGRU loops with it on and off (:data:`rnnkit.functional.conv.WINOGRAD`): the same
outputs and gradients, gradcheck (float64) through the Winograd path, and where "auto" uses it."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as nnf

from rnnkit.functional import _winograd as winograd
from rnnkit.functional import _workspace as workspace
from rnnkit.functional import conv as F
from test_convlstm import _functional

pytestmark = pytest.mark.usefixtures("one_thread")

DOUBLE = torch.float64
BLOCKS = {"lstm": 4, "gru": 3}


# ---------------------------------------------------------------------- the convolution alone


@pytest.mark.parametrize("frame", [(5, 7), (16, 16), (1, 1), (4, 8), (6, 9)])
@pytest.mark.parametrize("batch", [0, 1, 3])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype,tol", [(DOUBLE, 1e-10), (torch.float32, 2e-5)])
@pytest.mark.parametrize("bias", [True, False])
def test_conv3x3_matches_conv2d(frame, batch, channels_last, dtype, tol, bias):
    """Odd and even frame sizes (whole and partial 4 × 4 tiles, a frame smaller than one
    tile), empty and single batches, both layouts; error relative to the output's scale."""
    gen = torch.Generator().manual_seed(sum(frame) + batch)
    x = torch.randn(batch, 5, *frame, generator=gen, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(7, 5, 3, 3, generator=gen, dtype=dtype) / 4
    b = torch.randn(7, generator=gen, dtype=dtype) if bias else None
    ref = nnf.conv2d(x.double(), weight.double(), None if b is None else b.double(), padding=1)
    got = winograd.conv3x3(x, weight, b)
    assert got.shape == ref.shape and got.dtype == dtype
    if batch:
        scale = max(float(ref.abs().max()), 1.0)
        assert float((got.double() - ref).abs().max()) / scale <= tol


def test_plan_reused_for_row_prefixes_with_an_epilogue():
    """One plan serves calls on the first n frames (the loops' ragged steps): the padded
    buffer's border stays zero across calls; ``epilogue`` sees every output once."""
    gen = torch.Generator().manual_seed(0)
    weight, b = torch.randn(6, 4, 3, 3, generator=gen, dtype=DOUBLE), torch.randn(6, dtype=DOUBLE)
    plan = winograd.Plan(4, 6, 4, 6, 9, weight, winograd.transform_weight(weight), b)
    try:
        for n in (4, 2, 3, 1):
            x = torch.randn(n, 4, 6, 9, generator=gen, dtype=DOUBLE) * 10
            plan.input(n).copy_(x)
            out = torch.full((n, 9, 6, 6), float("nan"), dtype=DOUBLE).permute(0, 3, 2, 1)
            plan.run(n, out, lambda src, dst: torch.sigmoid(src, out=dst))
            ref = torch.sigmoid(nnf.conv2d(x, weight, b, padding=1))
            torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)
    finally:
        plan.release()


# ---------------------------------------------------------------------- in the layers


def _problem(cell, batch, steps, channels, hidden, frame, dtype, seed):
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return (torch.rand(*shape, generator=gen, dtype=dtype) - 0.5).requires_grad_()

    x = rand(steps, batch, channels, *frame)
    states = tuple(rand(batch, hidden, *frame) for _ in range(2 if cell == "lstm" else 1))
    weight = rand(BLOCKS[cell] * hidden, channels + hidden, 3, 3)
    return x, states, weight, rand(BLOCKS[cell] * hidden)


@pytest.fixture
def winograd_calls(monkeypatch):
    """The calls of :meth:`Plan.run` (``("run", C_in, C_out)``) and of
    :meth:`Plan.add_weight_grad` (``("grad", C_in, C_out)``): the path is taken, not merely
    allowed."""
    calls = []
    for name, tag in (("run", "run"), ("add_weight_grad", "grad")):
        method = getattr(winograd.Plan, name)

        def counted(self, *args, _method=method, _tag=tag, **kwargs):
            calls.append((_tag, self.in_ch, self.out_ch))
            return _method(self, *args, **kwargs)

        monkeypatch.setattr(winograd.Plan, name, counted)
    return calls


def _count(calls, tag, shape=None):
    return sum(1 for c in calls if c[0] == tag and (shape is None or c[1:] == shape))


def _run_and_grads(cell, mode, monkeypatch, problem, lengths, zero_start):
    monkeypatch.setattr(F, "WINOGRAD", mode)
    x, states, weight, bias = problem
    steps, batch = x.shape[:2]
    out, *finals = _functional(cell, lengths, steps, batch, zero_start)(x, *states, weight, bias)
    gen = torch.Generator().manual_seed(7)
    probes = [torch.randn(t.shape, generator=gen, dtype=t.dtype) for t in (out, *finals)]
    inputs = [t for t in (x, *states, weight, bias) if t.requires_grad]
    grads = torch.autograd.grad((out, *finals), inputs, probes)
    return [t.detach() for t in (out, *finals)], grads


def _agree(on, off, output_atol: float) -> None:
    """Outputs and final states within ``output_atol``; gradients within 1e-4 of their
    largest entry."""
    for a, b in zip(on[0], off[0], strict=True):
        torch.testing.assert_close(a, b, atol=output_atol, rtol=0)
    for a, b in zip(on[1], off[1], strict=True):
        scale = float(b.abs().max())
        torch.testing.assert_close(a / scale, b / scale, atol=1e-4, rtol=0)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("lengths", [None, [3, 1, 4, 2]])
@pytest.mark.parametrize("zero_start", [False, True])
def test_layers_same_with_winograd_on_and_off(cell, lengths, zero_start, monkeypatch,
                                              winograd_calls):
    """float32, given h0 / c0 (or h0 = 0 with ``zero_start``), ragged and full batches,
    a 6 × 8 frame (partial tiles): outputs, final states and all gradients agree (outputs
    2e-5 absolute, gradients 1e-4 relative to their largest entry)."""
    problem = _problem(cell, 4, 4, 3, 5, (6, 8), torch.float32, seed=1)
    if zero_start:
        problem = (problem[0], (torch.zeros_like(problem[1][0]), *problem[1][1:]), *problem[2:])
    off = _run_and_grads(cell, "off", monkeypatch, problem, lengths, zero_start)
    assert not winograd_calls
    on = _run_and_grads(cell, "on", monkeypatch, problem, lengths, zero_start)
    # forward: 4 steps (3 with zero_start); backward: ∂L/∂h_{t-1} for t = 3 … 1, and t = 0
    # when h0 wants a gradient
    assert _count(winograd_calls, "run") == (3 + 3 if zero_start else 4 + 4)
    # ∂L/∂W: the LSTM's over [x_t, h_{t-1}] at every step; the GRU's W_x at every step, W_h
    # at the steps whose h_{t-1} is not known to be zero
    grads = 4 if cell == "lstm" else 4 + (3 if zero_start else 4)
    assert _count(winograd_calls, "grad") == grads
    _agree(on, off, output_atol=2e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_auto_takes_winograd_at_a_benchmark_shape_and_agrees(cell, monkeypatch,
                                                             winograd_calls):
    """16 → 64 channels on 16 × 16 frames (benchmarks/convlstm_speed.py's shape): "auto"
    runs the per-step convolutions by Winograd (the GRU's input convolution, 16 → 192,
    stays ``conv2d``) and the weight gradients too, and agrees with "off" within float32
    rounding (F(4 × 4, 3 × 3) rounds about 5e-6 of the output's scale at 80 input channels,
    ``conv2d`` 2e-6: outputs 1e-4 absolute, gradients 1e-4 relative)."""
    problem = _problem(cell, 2, 3, 16, 64, (16, 16), torch.float32, seed=2)
    off = _run_and_grads(cell, "off", monkeypatch, problem, [3, 2], False)
    on = _run_and_grads(cell, "auto", monkeypatch, problem, [3, 2], False)
    blocks = BLOCKS[cell]
    forward = (16 + 64, blocks * 64) if cell == "lstm" else (64, blocks * 64)
    assert _count(winograd_calls, "run", forward) == 3
    assert _count(winograd_calls, "run", (blocks * 64, 64)) == 3  # the backward's adjoint
    assert _count(winograd_calls, "run") == 6
    assert _count(winograd_calls, "grad", forward) == 3
    assert _count(winograd_calls, "grad") == (3 if cell == "lstm" else 6)  # GRU: W_x too
    _agree(on, off, output_atol=1e-4)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("lengths,zero_start", [([2, 3, 1], False), (None, False),
                                                ([3, 1, 2], True)])
def test_gradcheck_float64_through_winograd(cell, lengths, zero_start, monkeypatch,
                                            winograd_calls):
    """gradcheck with every per-step convolution on the Winograd path ("on": float64 too),
    a 5 × 4 frame (a whole and a partial tile)."""
    monkeypatch.setattr(F, "WINOGRAD", "on")
    x, states, weight, bias = _problem(cell, 3, 3, 2, 2, (5, 4), DOUBLE, seed=3)
    run = _functional(cell, lengths, 3, 3, zero_start)
    if zero_start:
        h0 = torch.zeros_like(states[0])
        assert torch.autograd.gradcheck(lambda x, *rest: run(x, h0, *rest),
                                        (x, *states[1:], weight, bias), atol=1e-7, rtol=1e-5)
    else:
        assert torch.autograd.gradcheck(run, (x, *states, weight, bias), atol=1e-7, rtol=1e-5)
    assert winograd_calls


def test_auto_rule(monkeypatch):
    """"auto": float32 on the CPU, 3 × 3, C_in ≥ 64, C_out ≥ 64, whole 4 × 4 tiles; "on":
    every 3 × 3 float32 / float64 convolution; "off": none."""

    def taken(out_ch, in_ch, dtype=torch.float32, frame=(16, 16), kernel=3, batch=8):
        plan = F._winograd_plan(torch.zeros(out_ch, in_ch, kernel, kernel, dtype=dtype), None,
                                batch, *frame)
        if plan is not None:
            plan.release()
        return plan is not None

    monkeypatch.setattr(F, "WINOGRAD", "auto")
    assert taken(256, 80) and taken(64, 256) and taken(192, 64) and taken(64, 64)
    assert taken(256, 80, frame=(8, 32))
    assert not taken(128, 33) and not taken(96, 32) and not taken(32, 128)
    assert not taken(192, 16) and not taken(96, 1)
    assert not taken(256, 80, frame=(10, 10)) and not taken(256, 80, dtype=DOUBLE)
    assert not taken(256, 80, kernel=5) and not taken(256, 80, batch=0)
    monkeypatch.setattr(F, "WINOGRAD", "on")
    assert taken(2, 3, dtype=DOUBLE, frame=(5, 7)) and taken(2, 3, frame=(1, 1))
    assert not taken(2, 3, kernel=5) and not taken(2, 3, dtype=torch.float16)
    monkeypatch.setattr(F, "WINOGRAD", "off")
    assert not taken(256, 80)


def test_auto_rule_for_weight_gradients(monkeypatch):
    """"auto" computes ∂L/∂W by Winograd for C_in ≥ 16, C_out ≥ 64 (float32, whole tiles)."""
    monkeypatch.setattr(F, "WINOGRAD", "auto")

    def taken(out_ch, in_ch, dtype=torch.float32, frame=(16, 16)):
        weight = torch.zeros(out_ch, in_ch, 3, 3, dtype=dtype)
        return F._winograd_ok(weight, 8, *frame, F.WINOGRAD_MIN_IN_GRAD, F.WINOGRAD_MIN_OUT)

    assert taken(192, 16) and taken(256, 80) and taken(96, 32)
    assert not taken(96, 1) and not taken(32, 128) and not taken(192, 16, frame=(6, 16))
    assert not taken(192, 16, dtype=DOUBLE)


@pytest.mark.parametrize("frame", [(5, 7), (8, 8), (1, 1)])
@pytest.mark.parametrize("dtype,tol", [(DOUBLE, 1e-10), (torch.float32, 2e-5)])
def test_weight_grad_matches_convolution_backward(frame, dtype, tol):
    """:meth:`Plan.add_weight_grad` over batches of 3, 1 and 2 frames (prefixes of the plan's
    4), then :func:`weight_grad`, against ``aten.convolution_backward`` over all 6 frames
    (error relative to the gradient's largest entry)."""
    gen = torch.Generator().manual_seed(sum(frame))
    x = torch.randn(6, 5, *frame, generator=gen, dtype=dtype)
    dy = torch.randn(6, 7, *frame, generator=gen, dtype=dtype)
    weight = torch.zeros(7, 5, 3, 3, dtype=DOUBLE)
    _, ref, _ = torch.ops.aten.convolution_backward(
        dy.double(), x.double(), weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
        [False, True, False])
    plan = winograd.Plan(5, 7, 4, *frame, x)
    acc = torch.zeros(winograd.POSITIONS, 5, 7, dtype=dtype)
    try:
        for start, n in ((0, 3), (3, 1), (4, 2)):
            plan.input(n).copy_(x[start:start + n])
            plan.add_weight_grad(n, dy[start:start + n], acc)
    finally:
        plan.release()
    got = winograd.weight_grad(acc)
    assert got.shape == ref.shape and got.dtype == dtype
    assert float((got.double() - ref).abs().max() / ref.abs().max()) <= tol


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_inference_mode_then_training(cell, monkeypatch, winograd_calls):
    """A call under ``torch.inference_mode`` must not hand its Winograd scratch (inference
    tensors) to a later call that writes into it outside that mode."""
    monkeypatch.setattr(F, "WINOGRAD", "on")
    monkeypatch.setattr(workspace, "MIN_BYTES", 0)  # keep even these small blocks
    workspace.clear()
    try:
        x, states, weight, bias = _problem(cell, 2, 3, 2, 3, (4, 4), torch.float32, seed=4)
        run = _functional(cell, None, 3, 2)
        with torch.inference_mode():
            first = run(x.detach(), *(s.detach() for s in states), weight.detach(),
                        bias.detach())
        assert _count(winograd_calls, "run") == 3
        out = run(x, *states, weight, bias)
        torch.autograd.grad(out[0].sum(), [x, weight])
        torch.testing.assert_close(out[0].detach(), first[0], atol=0, rtol=0)
    finally:
        workspace.clear()
