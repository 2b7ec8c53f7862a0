"""The Triton backend against the reference backend: outputs, final states and every gradient.

Without CUDA the kernels run under ``TRITON_INTERPRET=1`` on CPU tensors at tiny shapes (one
launch per step, so the grid barrier itself is exercised only on a GPU). With CUDA the same
parity runs at a benchmark shape. Tolerances: float32 rtol 1e-4 / atol 1e-5; bfloat16 inputs,
weights and outputs (float32 state inside) within 3e-2 relative norm of the float32 reference
on the same rounded values.
"""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    # before rnnkit.kernels defines its kernels: @triton.jit reads it at decoration time
    os.environ.setdefault("TRITON_INTERPRET", "1")

triton = pytest.importorskip("triton")

import rnnkit  # noqa: E402
from rnnkit import functional as F  # noqa: E402
from rnnkit import kernels  # noqa: E402
from rnnkit.functional.cells import CELLS  # noqa: E402
from rnnkit.kernels import _plan  # noqa: E402

CUDA = torch.cuda.is_available()
GATES = {spec.cell: spec.blocks for spec in CELLS.values()}  # "elman": 1, "lstm": 4, "gru": 3

if not CUDA and not _plan.interpreting():
    pytest.skip("TRITON_INTERPRET was set to something else than 1", allow_module_level=True)


def _run(
    cell, backend, steps, batch, size, lengths, reverse, dtype, compute=None, device="cpu", **opts
):
    """One layer-direction through the Function; returns outputs then every leaf's gradient.

    Values are drawn, rounded to ``dtype`` and computed in ``compute`` (default ``dtype``).
    """
    compute = compute or dtype
    gen = torch.Generator().manual_seed(7)

    def leaf(*shape, scale=1.0):
        value = (torch.randn(*shape, generator=gen) * scale).to(dtype).to(device, compute)
        return value.requires_grad_()

    inputs = 5
    x = leaf(steps, batch, inputs)
    h0, c0 = leaf(batch, size), leaf(batch, size)
    scale = 1.5 / size**0.5
    weights = [
        leaf(GATES[cell] * size, inputs, scale=scale),
        leaf(GATES[cell] * size, size, scale=scale),
    ]
    weights += [leaf(GATES[cell] * size, scale=0.5), leaf(GATES[cell] * size, scale=0.5)]
    sched = F.make_schedule(steps, batch, lengths, torch.device(device), reverse)
    if cell == "lstm":
        leaves = [x, h0, c0, *weights]
        outs = F.lstm(x, h0, c0, *weights, None, sched, backend)
    elif cell == "gru":
        leaves = [x, h0, *weights]
        outs = F.gru(x, h0, *weights, sched, backend)
    else:
        leaves = [x, h0, *weights]
        outs = F.elman(x, h0, *weights, sched, opts.get("nonlinearity", "tanh"), backend)
    cotangents = [
        torch.randn(out.shape, generator=gen).to(dtype).to(device, compute) for out in outs
    ]
    loss = sum((out * grad).sum() for out, grad in zip(outs, cotangents))
    loss.backward()
    return [out.detach() for out in outs] + [t.grad for t in leaves]


CASES = [  # (lengths, reverse, H, plan overrides): one program; split units and batch tiles
    (None, False, 16, {}),
    ([3, 5, 2], True, 12, {"block_b": 2, "block_h": 8}),
    ([2, 5, 5], False, 16, {"block_b": 2, "block_h": 8, "resident": False}),
]


@pytest.mark.skipif(CUDA, reason="interpreter parity runs where there is no GPU")
@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_interpreter_matches_reference_float32(cell, case):
    lengths, reverse, size, plan = CASES[case]
    lengths = None if lengths is None else torch.tensor(lengths)
    opts = {"nonlinearity": "relu"} if case == 1 else {}
    with kernels.overrides(**plan):
        got = _run(cell, "triton", 5, 3, size, lengths, reverse, torch.float32, **opts)
    want = _run(cell, "reference", 5, 3, size, lengths, reverse, torch.float32, **opts)
    assert len(got) == len(want)
    for index, (g, w) in enumerate(zip(got, want)):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5, msg=lambda m, i=index: f"#{i}: {m}")


@pytest.mark.skipif(CUDA, reason="interpreter parity runs where there is no GPU")
@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_interpreter_bfloat16_close_to_float32_reference(cell):
    lengths = torch.tensor([4, 2, 5])
    with kernels.overrides(block_b=2, block_h=8):
        got = _run(cell, "triton", 5, 3, 16, lengths, True, torch.bfloat16)
    # the same bfloat16-rounded values, computed in float32
    want = _run(cell, "reference", 5, 3, 16, lengths, True, torch.bfloat16, torch.float32)
    for index, (g, w) in enumerate(zip(got, want)):
        assert g.dtype == torch.bfloat16
        error = ((g.float() - w).norm() / w.norm()).item()
        assert error < 3e-2, f"#{index}: relative error {error:.3g}"


def test_supports_names_what_it_cannot_serve():
    seq = torch.zeros(3, 2, 4)
    assert kernels.supports(rnnkit.LSTM(4, 8), seq) is None
    assert "proj_size" in kernels.supports(rnnkit.LSTM(4, 8, proj_size=4), seq)
    assert "hidden_size" in kernels.supports(rnnkit.GRU(4, kernels.MAX_HIDDEN + 1), seq)
    assert "dtype" in kernels.supports(rnnkit.RNN(4, 8, dtype=torch.float64), seq.double())
    assert "shared memory" in kernels.supports(rnnkit.LSTM(4, 1024), seq)
    assert kernels.supports(rnnkit.RNN(4, 1024), seq) is None
    assert kernels.supports(rnnkit.LSTM(4, 1024, dtype=torch.bfloat16), seq.bfloat16()) is None


def test_auto_never_prefers_unmeasured_kernels():
    # no GPU has measured the kernels: the table is empty and auto keeps the reference path
    for module in (rnnkit.RNN(4, 128), rnnkit.LSTM(4, 256), rnnkit.GRU(4, 1024)):
        for batch in (1, 8, 64, 256):
            assert not kernels.auto_prefers(module, torch.zeros(3, batch, 4))


def test_plan_splits_units_when_weights_outgrow_one_program():
    small = _plan.make_plan(8, 128, 1, torch.empty(128, 128))
    assert small.programs_h == 1 and small.resident
    large = _plan.make_plan(8, 1024, 4, torch.empty(4096, 1024))
    assert large.programs_h * large.block_h >= 1024 and large.block_b >= 16
    assert large.per_step == _plan.interpreting() or large.sync


@pytest.mark.skipif(not CUDA, reason="needs CUDA: real kernels at a benchmark shape")
@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
@pytest.mark.parametrize("size", [128, 512])
def test_gpu_matches_reference_at_benchmark_shape(cell, size):
    torch.backends.cuda.matmul.allow_tf32 = False
    lengths = torch.randint(1, 257, (64,))
    got = _run(cell, "triton", 256, 64, size, lengths, True, torch.float32, device="cuda")
    want = _run(cell, "reference", 256, 64, size, lengths, True, torch.float32, device="cuda")
    for index, (g, w) in enumerate(zip(got, want)):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4, msg=lambda m, i=index: f"#{i}: {m}")


def test_gpu_benchmark_exits_cleanly_without_cuda(capsys):
    from rnnkit.bench import gpu

    if CUDA:
        pytest.skip("a GPU is present: the benchmark would run for minutes")
    assert gpu.main([]) == 0
    assert "no CUDA" in capsys.readouterr().out


def test_auto_table_prints_only_double_wins():
    from rnnkit.bench import gpu

    rows = [
        {
            "cell": "lstm",
            "dtype": "float32",
            "H": 256,
            "B": 8,
            "fwd_speedup": 3.0,
            "fwdbwd_speedup": 2.5,
        },
        {
            "cell": "gru",
            "dtype": "float32",
            "H": 128,
            "B": 8,
            "fwd_speedup": 3.0,
            "fwdbwd_speedup": 0.9,
        },
        {"cell": "elman", "dtype": "bfloat16", "H": 128, "B": 1, "note": "failed"},
    ]
    namespace: dict = {}
    exec(gpu.auto_table(rows), namespace)  # the text is pasted into _auto.py as it is
    assert namespace["PREFERRED"] == {("lstm", "float32", 256, 8)}
