"""``x Wᵀ (+ addend)`` with a weight that is reused many times: once per time step.

On the CPU in float32, oneDNN with the weight packed once into its blocked layout runs these
small-batch products faster than ``torch.addmm`` (figures: docs/benchmarks.md); torch.nn's own
CPU LSTM gets its speed the same way. For one large product (the input gradient over all steps)
oneDNN reads the weight unpacked, and is still faster than ``torch.mm`` (MKL).

The oneDNN entry points are the ones TorchInductor uses on the CPU; they are private, so they are
probed once (present, and agreeing with ``addmm`` on a small product) and every other
case — CUDA, float64, a torch without them, ``RNNKIT_ONEDNN=0`` in the environment, or
``torch.backends.mkldnn.flags(enabled=False)`` — takes the plain ``torch.addmm`` path.
"""

from __future__ import annotations

import functools
import os

import torch
from torch import Tensor

__all__ = ["ReusedWeight", "onednn_available"]

MIN_PACKED_WORK = 3 << 20  # multiply-adds per product below which plain addmm is as fast
# From this many rows (one whole-sequence product, used once) oneDNN reads the weight as it is,
# transposed views included: packing it costs more than it gains there.
PLAIN_FROM_ROWS = 512


@functools.lru_cache(maxsize=1)
def _onednn_works() -> bool:
    try:
        ops = torch.ops.mkldnn
        weight = torch.linspace(-1, 1, 24).view(6, 4)
        x = torch.linspace(0, 1, 12).view(3, 4)
        addend = torch.ones(3, 6)
        packed = ops._reorder_linear_weight(weight, 3)
        plain = ops._linear_pointwise(x, packed, None, "none", [], "")
        added = ops._linear_pointwise.binary(x, addend, packed, None, "add")
        unpacked = ops._linear_pointwise(x, weight, None, "none", [], "")  # weight as it is
        through_view = ops._linear_pointwise(x, weight.t().contiguous().t(), None, "none", [],
                                             "")  # the weight as a transposed view
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
    expected = x @ weight.t()
    return all(torch.allclose(got, want, atol=1e-5) for got, want in (
        (plain, expected), (added, expected + 1), (unpacked, expected), (through_view, expected)))


def onednn_available(like: Tensor) -> bool:
    """Whether the packed oneDNN path serves tensors like ``like``."""
    return (
        like.device.type == "cpu"
        and like.dtype == torch.float32
        and os.environ.get("RNNKIT_ONEDNN", "1") != "0"
        and torch.backends.mkldnn.is_available()
        and torch._C._get_mkldnn_enabled()
        and _onednn_works()
    )


class ReusedWeight:
    """A weight ``(N, K)`` and optional bias ``(N,)`` applied as ``x Wᵀ + bias`` to many
    ``(M, K)`` inputs: ``(M, N)`` results. Also worth it for one large product (M in the
    thousands), where packing costs far less than it saves."""

    def __init__(self, weight: Tensor, batch_hint: int, bias: Tensor | None = None) -> None:
        self.weight = weight
        self.bias = bias
        self.packed = None
        # oneDNN's call has a larger fixed cost than addmm's: it pays off from MIN_PACKED_WORK
        if batch_hint * weight.numel() >= MIN_PACKED_WORK and onednn_available(weight):
            if batch_hint >= PLAIN_FROM_ROWS:  # one large product: packing would not pay back
                self.packed = weight.detach()
            else:
                self.packed = torch.ops.mkldnn._reorder_linear_weight(
                    weight.detach().contiguous(), batch_hint
                )

    def __call__(self, x: Tensor, addend: Tensor | None = None) -> Tensor:
        """``x Wᵀ + bias``, plus ``addend`` ``(M, N)`` when given, as a new tensor."""
        bias = self.bias
        if self.packed is not None:
            if addend is None:
                return torch.ops.mkldnn._linear_pointwise(x, self.packed, bias, "none", [], "")
            return torch.ops.mkldnn._linear_pointwise.binary(
                x, addend, self.packed, bias, "add"
            )
        if addend is None:
            return x @ self.weight.t() if bias is None else torch.addmm(bias, x, self.weight.t())
        product = torch.addmm(addend, x, self.weight.t())
        return product if bias is None else product.add_(bias)
