"""Winograd F(4 × 4, 3 × 3) and F(4 × 4, 5 × 5) (:mod:`rnnkit.functional._winograd`) against
``conv2d``, their matrices exactly, and the
ConvLSTM / ConvGRU loops with it on and off (:data:`rnnkit.functional.conv.WINOGRAD`): the same
outputs and gradients, gradcheck (float64) through the Winograd path, and where "auto" uses it."""

from __future__ import annotations

import random
from fractions import Fraction

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
KERNELS = pytest.mark.parametrize("kernel", [3, 5])


# ---------------------------------------------------------------------- the convolution alone


@pytest.mark.parametrize("kernel,points", [(3, "0 1 -1 2 -2"),
                                           (5, "0 1 -1 2 -2 1/2 -1/2")])
def test_matrices_are_exact(kernel, points):
    """:func:`cook_toom` from the points (then ∞) gives the matrices in use (the hand-typed
    3 × 3 ones, Lavin & Gray's, to the last bit), and in exact arithmetic the 4 outputs of
    the correlation of a random rational signal with a random rational kernel equal
    ``Aᵀ [(G g) ⊙ (Bᵀ d)]``."""
    bt, g, at = winograd.cook_toom(winograd.TILE, kernel, [Fraction(p) for p in points.split()])

    def rounded(matrices):
        return [[[float(v) for v in row] for row in m] for m in matrices]

    assert rounded((bt, g, at)) == rounded(winograd.KERNELS[kernel])
    side = winograd.TILE + kernel - 1
    assert (len(bt), len(bt[0]), len(g), len(g[0]), len(at), len(at[0])) == (
        side, side, side, kernel, winograd.TILE, side)
    rng = random.Random(kernel)
    for _ in range(5):
        d = [Fraction(rng.randint(-9, 9), rng.randint(1, 7)) for _ in range(side)]
        w = [Fraction(rng.randint(-9, 9), rng.randint(1, 7)) for _ in range(kernel)]
        gw = [sum(gj[k] * w[k] for k in range(kernel)) for gj in g]
        bd = [sum(row[i] * d[i] for i in range(side)) for row in bt]
        got = [sum(row[j] * gw[j] * bd[j] for j in range(side)) for row in at]
        assert got == [sum(w[k] * d[i + k] for k in range(kernel)) for i in range(winograd.TILE)]
    assert [row[1] for row in at] == [1] * winograd.TILE  # the bias's tile position (1, 1)


@KERNELS
@pytest.mark.parametrize("frame", [(5, 7), (16, 16), (1, 1), (4, 8), (6, 9)])
@pytest.mark.parametrize("batch", [0, 1, 3])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype,tol", [(DOUBLE, 1e-10), (torch.float32, 2e-5)])
@pytest.mark.parametrize("bias", [True, False])
def test_conv_matches_conv2d(kernel, frame, batch, channels_last, dtype, tol, bias):
    """3 × 3 and 5 × 5; odd and even frame sizes (whole and partial 4 × 4 tiles, a frame
    smaller than one tile), empty and single batches, both layouts; error relative to the
    output's scale."""
    gen = torch.Generator().manual_seed(sum(frame) + batch)
    x = torch.randn(batch, 5, *frame, generator=gen, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(7, 5, kernel, kernel, generator=gen, dtype=dtype) / kernel
    b = torch.randn(7, generator=gen, dtype=dtype) if bias else None
    ref = nnf.conv2d(x.double(), weight.double(), None if b is None else b.double(),
                     padding=kernel // 2)
    got = winograd.conv(x, weight, b)
    assert got.shape == ref.shape and got.dtype == dtype
    if batch:
        scale = max(float(ref.abs().max()), 1.0)
        assert float((got.double() - ref).abs().max()) / scale <= tol


@KERNELS
def test_plan_reused_for_row_prefixes_with_an_epilogue(kernel):
    """One plan serves calls on the first n frames (the loops' ragged steps): the padded
    buffer's border stays zero across calls; ``epilogue`` sees every output once."""
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(6, 4, kernel, kernel, generator=gen, dtype=DOUBLE)
    b = torch.randn(6, dtype=DOUBLE)
    plan = winograd.Plan(4, 6, 4, 6, 9, weight, winograd.transform_weight(weight), b, kernel)
    try:
        for n in (4, 2, 3, 1):
            x = torch.randn(n, 4, 6, 9, generator=gen, dtype=DOUBLE) * 10
            plan.input(n).copy_(x)
            out = torch.full((n, 9, 6, 6), float("nan"), dtype=DOUBLE).permute(0, 3, 2, 1)
            plan.run(n, out, lambda src, dst: torch.sigmoid(src, out=dst))
            ref = torch.sigmoid(nnf.conv2d(x, weight, b, padding=kernel // 2))
            torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)
    finally:
        plan.release()


# ---------------------------------------------------------------------- in the layers


def _problem(cell, batch, steps, channels, hidden, frame, dtype, seed, kernel=3):
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return (torch.rand(*shape, generator=gen, dtype=dtype) - 0.5).requires_grad_()

    x = rand(steps, batch, channels, *frame)
    states = tuple(rand(batch, hidden, *frame) for _ in range(2 if cell == "lstm" else 1))
    weight = rand(BLOCKS[cell] * hidden, channels + hidden, kernel, kernel)
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


@KERNELS
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("lengths", [None, [3, 1, 4, 2]])
@pytest.mark.parametrize("zero_start", [False, True])
def test_layers_same_with_winograd_on_and_off(kernel, cell, lengths, zero_start, monkeypatch,
                                              winograd_calls):
    """float32, 3 × 3 and 5 × 5, given h0 / c0 (or h0 = 0 with ``zero_start``), ragged and
    full batches, a 6 × 8 frame (partial tiles): outputs, final states and all gradients agree
    (outputs 2e-5 absolute, gradients 1e-4 relative to their largest entry)."""
    problem = _problem(cell, 4, 4, 3, 5, (6, 8), torch.float32, seed=1, kernel=kernel)
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
@pytest.mark.parametrize("kernel,channels,hidden,frame", [(3, 16, 64, 16), (5, 1, 32, 32)])
def test_auto_takes_winograd_at_a_benchmark_shape_and_agrees(cell, kernel, channels, hidden,
                                                             frame, monkeypatch,
                                                             winograd_calls):
    """benchmarks/convlstm_speed.py's shapes, 16 → 64 channels 3 × 3 on 16 × 16 frames and
    1 → 32 5 × 5 on 32 × 32: "auto" runs the per-step convolutions over ``[x_t, h_{t-1}]`` or
    ``h_{t-1}`` and the backward's adjoint by Winograd (the GRU's input convolution stays
    ``conv2d``) and their weight gradients too, the GRU's ``∂L/∂W_x`` from 16 input channels
    but not from 1; it agrees with "off" within float32 rounding (outputs 1e-4 absolute,
    gradients 1e-4 relative)."""
    problem = _problem(cell, 2, 3, channels, hidden, (frame, frame), torch.float32, seed=2,
                       kernel=kernel)
    off = _run_and_grads(cell, "off", monkeypatch, problem, [3, 2], False)
    on = _run_and_grads(cell, "auto", monkeypatch, problem, [3, 2], False)
    blocks = BLOCKS[cell]
    forward = ((channels + hidden, blocks * hidden) if cell == "lstm"
               else (hidden, blocks * hidden))
    assert _count(winograd_calls, "run", forward) == 3
    assert _count(winograd_calls, "run", (blocks * hidden, hidden)) == 3  # the adjoint
    assert _count(winograd_calls, "run") == 6
    assert _count(winograd_calls, "grad", forward) == 3
    w_x = 3 if cell == "gru" and channels >= 16 else 0
    assert _count(winograd_calls, "grad") == 3 + w_x
    _agree(on, off, output_atol=1e-4)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("kernel,lengths,zero_start", [(3, [2, 3, 1], False), (5, [3, 1, 2], True)])
def test_gradcheck_float64_through_winograd(kernel, cell, lengths, zero_start, monkeypatch,
                                            winograd_calls):
    """gradcheck with every per-step convolution on the Winograd path ("on": float64 too),
    3 × 3 and 5 × 5, a 5 × 4 frame (a whole and a partial tile); ragged batches, with a given
    and with a zero initial state (the float32 on/off parity test covers the other
    combinations). Two cases check the whole Jacobian (6–12 s each); the other two check
    random projections of it (``fast_mode``, 0.1 s), which missed a weight gradient 1e-4 off
    that the whole Jacobian caught."""
    fast = (cell == "gru") == (kernel == 3)
    monkeypatch.setattr(F, "WINOGRAD", "on")
    x, states, weight, bias = _problem(cell, 3, 3, 2, 2, (5, 4), DOUBLE, seed=3, kernel=kernel)
    run = _functional(cell, lengths, 3, 3, zero_start)
    if zero_start:
        h0 = torch.zeros_like(states[0])
        assert torch.autograd.gradcheck(lambda x, *rest: run(x, h0, *rest),
                                        (x, *states[1:], weight, bias), atol=1e-7, rtol=1e-5,
                                        fast_mode=fast)
    else:
        assert torch.autograd.gradcheck(run, (x, *states, weight, bias), atol=1e-7, rtol=1e-5,
                                        fast_mode=fast)
    assert winograd_calls


def test_auto_rule(monkeypatch):
    """"auto": float32 on the CPU, whole 4 × 4 tiles, 3 × 3 with C_in ≥ 64, C_out ≥ 64, 5 × 5
    with C_in ≥ 32, C_out ≥ 32; "on": every 3 × 3 / 5 × 5 float32 / float64 convolution;
    "off": none."""

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
    assert not taken(256, 80, kernel=7) and not taken(256, 80, batch=0)
    assert taken(128, 33, kernel=5) and taken(96, 32, kernel=5) and taken(256, 80, kernel=5)
    assert taken(32, 128, kernel=5) and taken(32, 96, kernel=5)  # the adjoints
    assert not taken(64, 17, kernel=5) and not taken(16, 128, kernel=5)
    assert not taken(128, 33, kernel=5, frame=(10, 10))
    assert not taken(128, 33, kernel=5, dtype=DOUBLE)
    monkeypatch.setattr(F, "WINOGRAD", "on")
    assert taken(2, 3, dtype=DOUBLE, frame=(5, 7)) and taken(2, 3, frame=(1, 1))
    assert taken(2, 3, kernel=5, dtype=DOUBLE, frame=(5, 7))
    assert not taken(2, 3, kernel=7) and not taken(2, 3, dtype=torch.float16)
    assert F._winograd_plan(torch.zeros(2, 3, 5, 3), None, 8, 16, 16) is None  # not square
    monkeypatch.setattr(F, "WINOGRAD", "off")
    assert not taken(256, 80)


@KERNELS
def test_auto_rule_for_weight_gradients(kernel, monkeypatch):
    """"auto" computes ∂L/∂W by Winograd for C_in ≥ 16, C_out ≥ 64 (float32, whole tiles),
    3 × 3 and 5 × 5."""
    monkeypatch.setattr(F, "WINOGRAD", "auto")

    def taken(out_ch, in_ch, dtype=torch.float32, frame=(16, 16)):
        weight = torch.zeros(out_ch, in_ch, kernel, kernel, dtype=dtype)
        return F._winograd_ok(weight, 8, *frame, grad=True)

    assert taken(192, 16) and taken(256, 80) and taken(96, 32) and taken(128, 33)
    assert not taken(96, 1) and not taken(32, 128) and not taken(192, 16, frame=(6, 16))
    assert not taken(192, 16, dtype=DOUBLE)


@KERNELS
@pytest.mark.parametrize("frame", [(5, 7), (8, 8), (1, 1)])
@pytest.mark.parametrize("dtype,tol", [(DOUBLE, 1e-10), (torch.float32, 2e-5)])
def test_weight_grad_matches_convolution_backward(kernel, frame, dtype, tol):
    """:meth:`Plan.add_weight_grad` over batches of 3, 1 and 2 frames (prefixes of the plan's
    4), then :func:`weight_grad`, against ``aten.convolution_backward`` over all 6 frames
    (error relative to the gradient's largest entry)."""
    gen = torch.Generator().manual_seed(sum(frame))
    x = torch.randn(6, 5, *frame, generator=gen, dtype=dtype)
    dy = torch.randn(6, 7, *frame, generator=gen, dtype=dtype)
    weight = torch.zeros(7, 5, kernel, kernel, dtype=DOUBLE)
    pad = [kernel // 2] * 2
    _, ref, _ = torch.ops.aten.convolution_backward(
        dy.double(), x.double(), weight, None, [1, 1], pad, [1, 1], False, [0, 0], 1,
        [False, True, False])
    plan = winograd.Plan(5, 7, 4, *frame, x, kernel=kernel)
    acc = torch.zeros(plan.positions, 5, 7, dtype=dtype)
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
