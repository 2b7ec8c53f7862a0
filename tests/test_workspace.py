"""The backward's scratch buffers kept between calls: reuse never mixes results."""

from __future__ import annotations

import sys

import pytest
import torch

import rnnkit
from rnnkit.functional import _workspace as workspace


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    monkeypatch.setattr(workspace, "MIN_BYTES", 0)  # keep even the tests' small buffers
    workspace.clear()
    yield
    workspace.clear()


def test_take_reuses_a_given_buffer_that_fits():
    like = torch.zeros(())
    first = workspace.take((4, 5), like)
    pointer = first.data_ptr()
    workspace.give(first)
    again = workspace.take((3, 6), like, zero=True)  # 18 elements fit in the kept 20
    assert again.data_ptr() == pointer and again.shape == (3, 6)
    assert bool((again == 0).all())
    other = workspace.take((3, 6), like)  # the kept one is taken: a fresh one
    assert other.data_ptr() != pointer


def test_inference_mode_buffers_are_not_kept_and_training_follows():
    """A buffer made under ``torch.inference_mode`` is an inference tensor: a later call
    outside that mode could not save it for the backward, so ``give`` does not keep it; the
    LSTM trains after an inference-mode call."""
    with torch.inference_mode():
        made = workspace.take((4, 5), torch.zeros(()))
    workspace.give(made)
    assert not workspace._kept
    lstm = rnnkit.LSTM(4, 6)
    x = torch.randn(5, 3, 4)
    with torch.inference_mode():
        expected, _ = lstm(x)
    assert not any(buf.is_inference() for buf in workspace._kept)
    out, _ = lstm(x.requires_grad_())
    out.sum().backward()
    torch.testing.assert_close(out.detach(), expected, atol=0, rtol=0)


def test_too_large_a_buffer_is_not_used_for_a_small_request():
    like = torch.zeros(())
    big = workspace.take((100,), like)
    workspace.give(big)
    assert workspace.take((10,), like).data_ptr() != big.data_ptr()


def test_given_twice_is_kept_once_and_the_count_is_capped():
    like = torch.zeros(())
    buf = workspace.take((8,), like)
    workspace.give(buf)
    workspace.give(buf)
    assert workspace.take((8,), like).data_ptr() == buf.data_ptr()
    assert workspace.take((8,), like).data_ptr() != buf.data_ptr()
    workspace.clear()
    # the smallest is not first: eviction must find it by index
    sizes = [30, 10, 40, 20, 50] + [60 + k for k in range(workspace.MAX_KEPT)]
    for size in sizes:
        workspace.give(workspace.take((size,), like))
    assert len(workspace._kept) == workspace.MAX_KEPT
    assert sorted(buf.numel() for buf in workspace._kept) == sorted(sizes)[-workspace.MAX_KEPT:]


def test_other_dtype_is_not_reused():
    buf = workspace.take((8,), torch.zeros((), dtype=torch.float64))
    workspace.give(buf)
    assert workspace.take((8,), torch.zeros(())).dtype == torch.float32


def _grads(module, x, lengths):
    out, (h, c) = module(x, lengths=lengths)
    loss = out.square().sum() + h.sum() + c.sum()
    return torch.autograd.grad(loss, [x, *module.parameters()])


def test_lstm_gradients_do_not_change_when_buffers_are_reused():
    torch.manual_seed(0)
    module = rnnkit.LSTM(6, 5, num_layers=2, bidirectional=True)
    x = torch.randn(7, 4, 6, requires_grad=True)
    small = torch.randn(3, 2, 6, requires_grad=True)
    workspace.clear()
    fresh = _grads(module, x, [7, 3, 5, 1])
    _grads(module, small, None)  # a different shape in between leaves its buffer behind
    reused = _grads(module, x, [7, 3, 5, 1])
    assert workspace._kept, "the test should exercise a kept buffer"
    for a, b in zip(fresh, reused):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_lstm_backward_twice_on_a_retained_graph():
    torch.manual_seed(0)
    module = rnnkit.LSTM(6, 5)
    x = torch.randn(7, 4, 6, requires_grad=True)
    out, _ = module(x)
    loss = out.square().sum()
    first = torch.autograd.grad(loss, [x, *module.parameters()], retain_graph=True)
    _grads(module, torch.randn(5, 3, 6, requires_grad=True), None)  # another call in between
    second = torch.autograd.grad(loss, [x, *module.parameters()])
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("kept_xp", [False, True])
@pytest.mark.parametrize("backend", ["reference", "native"])
def test_saved_buffers_come_back_and_never_corrupt_what_was_returned(backend, kept_xp,
                                                                      monkeypatch):
    """Forward buffers are handed back after the backward (or at once without a graph); what
    a call returned (output, h_n, c_n) stays untouched when the next call reuses them. With
    ``kept_xp`` the input projection is written into a kept buffer too (large problems)."""
    lstm_module = sys.modules["rnnkit.functional.lstm"]
    monkeypatch.setattr(lstm_module, "FRESH_XP_MAX_BYTES", 0 if kept_xp else 1 << 40)
    if backend == "native":
        from layer_cases import ours_kwargs

        ours_kwargs("lstm_native")  # skips where the library cannot be built
    torch.manual_seed(0)
    module = rnnkit.LSTM(6, 5, num_layers=2, backend=backend)
    x = torch.randn(7, 4, 6)
    with torch.no_grad():
        out, (h, c) = module(x)
    assert workspace._kept, "a forward without a graph hands its saved buffers back"
    copies = [t.clone() for t in (out, h, c)]
    with torch.no_grad():
        module(torch.randn(7, 4, 6) * 3)  # reuses the kept buffers
    for a, b in zip((out, h, c), copies):
        assert torch.equal(a, b)
    workspace.clear()
    x.requires_grad_()
    out, (h, c) = module(x)
    assert not workspace._kept, "saved buffers stay with the graph until its backward"
    (out.sum() + c.sum()).backward()
    assert workspace._kept, "handed back after the backward"
