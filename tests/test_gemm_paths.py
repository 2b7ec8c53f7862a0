"""The two ways the time loop multiplies by a reused weight (oneDNN packed, plain addmm) give the
same results as torch.nn, and the environment switch really selects the plain path."""

from __future__ import annotations

import pytest
import torch

from layer_cases import CELLS, as_tuple, make_pair
from rnnkit.functional import _gemm


@pytest.mark.parametrize("onednn", ["1", "0"])
@pytest.mark.parametrize("cell", CELLS)
def test_both_gemm_paths_match_torch(cell, onednn, monkeypatch):
    monkeypatch.setenv("RNNKIT_ONEDNN", onednn)
    monkeypatch.setattr(_gemm, "MIN_PACKED_WORK", 0)  # pack even these small weights
    ours, theirs = make_pair(cell, 5, 6, num_layers=2, bidirectional=True)
    x = torch.randn(7, 4, 5)
    x_o, x_t = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_o, st_o = ours(x_o, lengths=[7, 3, 5, 1])
    packed = torch.nn.utils.rnn.pack_padded_sequence(x_t, [7, 3, 5, 1], enforce_sorted=False)
    out_t, st_t = theirs(packed)
    out_t, _ = torch.nn.utils.rnn.pad_packed_sequence(out_t, total_length=7)
    torch.testing.assert_close(out_o, out_t, rtol=1e-5, atol=1e-5)
    for a, b in zip(as_tuple(st_o), as_tuple(st_t)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    g_o = torch.autograd.grad(out_o.sum(), [x_o, *ours.parameters()])
    g_t = torch.autograd.grad(out_t.sum(), [x_t, *theirs.parameters()])
    for a, b in zip(g_o, g_t):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_environment_switch_selects_plain_path(monkeypatch):
    monkeypatch.setenv("RNNKIT_ONEDNN", "0")
    assert _gemm.ReusedWeight(torch.randn(1024, 1024), 16).packed is None
    assert not _gemm.onednn_available(torch.zeros(1))


def test_float64_and_flag_take_plain_path():
    big = torch.randn(1024, 1024)
    assert _gemm.ReusedWeight(big.double(), 16).packed is None
    with torch.backends.mkldnn.flags(enabled=False):
        assert _gemm.ReusedWeight(big, 16).packed is None


@pytest.mark.skipif(not _gemm.onednn_available(torch.zeros(1)), reason="no oneDNN on this CPU")
def test_packed_weight_matches_addmm():
    weight, x, addend = torch.randn(1024, 256), torch.randn(5, 256), torch.randn(5, 1024)
    reused = _gemm.ReusedWeight(weight, 16)  # 4M multiply-adds: packed
    assert reused.packed is not None
    tol = {"rtol": 1e-5, "atol": 1e-4}  # sums of 256 products of N(0, 1) values, |y| ~ 16
    torch.testing.assert_close(reused(x), x @ weight.t(), **tol)
    torch.testing.assert_close(reused(x, addend), torch.addmm(addend, x, weight.t()), **tol)
    torch.testing.assert_close(reused(x[:2], addend[:2]),
                               torch.addmm(addend[:2], x[:2], weight.t()), **tol)


def test_small_products_stay_on_addmm():
    """Below about 3M multiply-adds oneDNN's call overhead costs more than it saves."""
    assert _gemm.ReusedWeight(torch.randn(12, 7), 5).packed is None


@pytest.mark.skipif(not _gemm.onednn_available(torch.zeros(1)), reason="no oneDNN on this CPU")
def test_one_large_product_reads_the_weight_unpacked():
    """From PLAIN_FROM_ROWS rows the weight is used as it is (a transposed view too)."""
    weight = torch.randn(256, 1024)
    rows = torch.randn(_gemm.PLAIN_FROM_ROWS, 1024)
    reused = _gemm.ReusedWeight(weight.t(), _gemm.PLAIN_FROM_ROWS)  # (1024, 256) view
    assert reused.packed is not None and reused.packed.data_ptr() == weight.data_ptr()
    torch.testing.assert_close(reused(rows[:, :256]), rows[:, :256] @ weight,
                               rtol=1e-5, atol=1e-4)
