r"""Winograd minimal filtering for 3 × 3 and 5 × 5 convolutions (stride 1, padding k // 2) on the
CPU.

Why. The per-step convolutions of :mod:`rnnkit.functional.conv` ran on oneDNN's direct
algorithm (what PyTorch's CPU ``conv2d`` uses) near the core's peak, and still took most of a
ConvLSTM's time. Winograd's F(4 × 4, 3 × 3) (Lavin & Gray 2016, "Fast Algorithms for
Convolutional Neural Networks") computes each 4 × 4 block of outputs from a 6 × 6 tile of the
input with 36 multiplications per (input, output) channel pair instead of 16 · 9 = 144: after
fixed linear transforms of the input tiles and of the weight, the sum over the input channels is
36 independent matrix products, run as one ``torch.bmm``. The transforms are cheap next to
that product when both channel counts are large; with few channels they cost more than they save
(:mod:`~rnnkit.functional.conv` decides where it is used).

The transforms (Lavin & Gray, §4.2), for a 6 × 6 input tile ``d`` and a 3 × 3 kernel ``g``
(cross-correlation, as ``conv2d``): the 4 × 4 output is ``Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`` with::

    Bᵀ = [ 4   0  −5   0   1   0 ]     G = [  1/4     0     0  ]     Aᵀ = [ 1  1   1  1   1  0 ]
         [ 0  −4  −4   1   1   0 ]         [ −1/6  −1/6  −1/6 ]          [ 0  1  −1  2  −2  0 ]
         [ 0   4  −4  −1   1   0 ]         [ −1/6   1/6  −1/6 ]          [ 0  1   1  4   4  0 ]
         [ 0  −2  −1   2   1   0 ]         [ 1/24  1/12   1/6 ]          [ 0  1  −1  8  −8  1 ]
         [ 0   2  −1  −2   1   0 ]         [ 1/24 −1/12   1/6 ]
         [ 0   4   0  −5   0   1 ]         [   0     0     1  ]

Summed over the input channels, the product ``⊙`` becomes, for each of the 36 tile positions,
``(tiles, C_in) @ (C_in, C_out)``. Column 1 of ``Aᵀ`` is all ones, so a bias added at tile
position (1, 1) of the product reaches every output once.

The weight gradient is the same map taken backwards: with ``U = G g Gᵀ``,
``∂L/∂U = Σ_tiles (A ∂y Aᵀ) ⊙ (Bᵀ d B)`` (per channel pair; for each tile position a
``(C_in, tiles) @ (tiles, C_out)`` product, long in the summed dimension) and
``∂L/∂g = Gᵀ (∂L/∂U) G``; output positions past the frame's edge get zero gradient. oneDNN's
weight gradient ran at about half the speed of its forward convolution here, so this gains more
than the forward does (:meth:`Plan.add_weight_grad`, :func:`weight_grad`).

How it runs (all torch operations, float32 or float64). The input is copied into a zero-padded
``(N, 4·⌈Y/4⌉ + k − 1, 4·⌈X/4⌉ + k − 1, C)`` buffer (channels innermost, the layout the layers
keep); the overlapping tiles are gathered into a ``(6, 6, N, tiles_y, tiles_x, C)`` block;
``Bᵀ · B`` is two products with the 6 × 6 matrix (rows, then columns: ran 25 % faster than one
product with the 36 × 36 Kronecker matrix ``Bᵀ ⊗ Bᵀ``), then the ``bmm``, then ``Aᵀ · A`` the
same way, and the 4 × 4 blocks are written into the caller's output (through ``epilogue``, so
that a following elementwise operation can read them in place). F(2 × 2, 3 × 3) (4 × 4 tiles,
2.25 times fewer products) measured slower than ``conv2d`` here on most of the layers' shapes,
so only F(4 × 4, 3 × 3) is kept. Accuracy: float32 errors stayed below 1e-5 of the output's
scale on the layers' shapes (``conv2d``: about 2e-6; weight gradients about 7e-6 of their
largest entry), float64 about 1e-14.

5 × 5 kernels run by F(4 × 4, 5 × 5): 8 × 8 tiles, 64 products per block and channel pair
instead of 16 · 25 = 400, the same steps with 8 × 8 transforms. Its matrices come from the
Cook–Toom construction (Lavin & Gray, §4) with the points 0, ±1, ±2, ±1/2, ∞, computed exactly
in :func:`cook_toom` (which also gives the 3 × 3 ones above). F(2 × 2, 5 × 5) measured slower
than ``conv2d``. F(4 × 4, 5 × 5) rounds about 1e-5 of the output's scale in float32.

The scratch memory (a :mod:`~rnnkit.functional._workspace` block, handed back by
:meth:`Plan.release`) is taken once per layer call and reused for every step.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import torch
from torch import Tensor

from rnnkit.functional import _workspace as workspace

__all__ = ["TILE", "KERNELS", "cook_toom", "positions", "transform_weight", "Plan",
           "weight_grad", "conv"]

TILE = 4  # outputs per tile side: F(4 × 4, k × k)

_BT = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
       [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]
_G = [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
      [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]]
_AT = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]


def cook_toom(m: int, r: int, points: list[Fraction]) -> tuple[list, list, list]:
    """Exact ``(Bᵀ, G, Aᵀ)`` of F(m, r) for the correlation ``y_i = Σ_k g_k d_{i+k}`` from the
    ``m + r − 2`` finite interpolation points (then ∞): ``Aᵀ[i][j] = p_jⁱ``,
    ``G[j][k] = p_jᵏ / Π_{l≠j}(p_j − p_l)``, row j of ``Bᵀ`` the coefficients of
    ``Π_{l≠j}(x − p_l)``; the ∞ column / rows pick the leading coefficients."""

    def times(poly: list, root: Fraction) -> list:  # poly · (x − root), coefficients upwards
        return [a - root * b for a, b in zip([0, *poly], [*poly, 0])]

    assert len(points) == m + r - 2
    bt, g = [], []
    for j, p in enumerate(points):
        poly, scale = [Fraction(1)], Fraction(1)
        for q in points[:j] + points[j + 1:]:
            poly, scale = times(poly, q), scale * (p - q)
        bt.append([*poly, Fraction(0)])
        g.append([p ** k / scale for k in range(r)])
    full = [Fraction(1)]
    for q in points:
        full = times(full, q)
    bt.append(full)
    g.append([Fraction(int(k == r - 1)) for k in range(r)])
    at = [[p ** i for p in points] + [Fraction(int(i == m - 1))] for i in range(m)]
    return bt, g, at


_HALF = Fraction(1, 2)
#: ``(Bᵀ, G, Aᵀ)`` of F(4 × 4, k × k) per kernel size k; point 1 comes second in both, so tile
#: position (1, 1) reaches every output once (the bias).
KERNELS = {3: (_BT, _G, _AT),
           5: cook_toom(TILE, 5, [Fraction(p) for p in (0, 1, -1, 2, -2)] + [_HALF, -_HALF])}


def positions(kernel: int) -> int:
    """Products per (input, output) channel pair and tile: ``(4 + k − 1)²``."""
    return (TILE + kernel - 1) ** 2


def _matrix(kernel: int, which: int, like: Tensor) -> Tensor:
    rows = [[float(v) for v in row] for row in KERNELS[kernel][which]]  # exact, then rounded
    return torch.tensor(rows, dtype=torch.float64, device=like.device).to(like.dtype)


def transform_weight(weight: Tensor) -> Tensor:
    """``G g Gᵀ`` of a ``(C_out, C_in, k, k)`` weight, as ``((4 + k − 1)², C_in, C_out)`` (the
    right-hand side of the ``bmm``), in the weight's dtype."""
    out_ch, in_ch, k = weight.shape[:3]
    g = _matrix(k, 1, weight)
    w = weight.detach().permute(2, 3, 1, 0).reshape(k, -1)  # (i, (j, C_in, C_out))
    gw = torch.mm(g, w).view(TILE + k - 1, k, in_ch * out_ch)  # G g (over the kernel's rows)
    u = torch.matmul(g, gw)  # … Gᵀ (over its columns): (a, a, C_in·C_out); two products ran
    # far faster than one einsum here
    return u.view(positions(k), in_ch, out_ch)


def _pieces(size: int) -> list[tuple[int, int, int, int, int]]:
    """(start, stop, first tile, tiles, outputs kept per tile) along an axis of ``size``: the
    whole tiles, then the partial last one."""
    whole = size // TILE
    parts = [(0, whole * TILE, 0, whole, TILE)] if whole else []
    if size % TILE:
        parts.append((whole * TILE, size, whole, 1, size % TILE))
    return parts


class Plan:
    """The scratch of ``kernel × kernel`` convolutions (3 or 5) by Winograd between ``in_ch``
    and ``out_ch`` channels for up to ``batch`` frames of ``height × width`` (dtype and device
    of ``like``).

    A convolution: fill :meth:`input` ``(n)``, then :meth:`run` ``(n, out)`` (needs ``u``, the
    :func:`transform_weight` of the weight, and the bias if any). A weight gradient: fill
    :meth:`input` ``(n)``, then :meth:`add_weight_grad` ``(n, dy, acc)`` for each batch of
    frames, then :func:`weight_grad` ``(acc)``. :meth:`release` hands the scratch back."""

    def __init__(self, in_ch: int, out_ch: int, batch: int, height: int, width: int,
                 like: Tensor, u: Tensor | None = None, bias: Tensor | None = None,
                 kernel: int = 3):
        self.u = u
        self.kernel, self.side = kernel, TILE + kernel - 1  # input tile side
        self.positions = positions(kernel)
        self.bias = None if bias is None else bias.detach()
        self.in_ch, self.out_ch = in_ch, out_ch
        self.height, self.width = height, width
        self.tiles_y, self.tiles_x = -(-height // TILE), -(-width // TILE)
        self.pad_shape = (batch, self.tiles_y * TILE + kernel - 1,
                          self.tiles_x * TILE + kernel - 1, in_ch)
        tiles = batch * self.tiles_y * self.tiles_x
        a2, m2 = self.positions, TILE * TILE
        padded = batch * self.pad_shape[1] * self.pad_shape[2] * in_ch
        sizes = [padded, a2 * tiles * in_ch, a2 * tiles * in_ch, a2 * tiles * out_ch,
                 self.side * TILE * tiles * out_ch, 0 if u is not None else m2 * tiles * out_ch]
        self._flat = workspace.take((sum(sizes),), like)
        # padded input | tiles, then Bᵀ d B | Bᵀ d | product, then the output | Aᵀ P | the
        # output gradient's tiles (weight gradients only)
        self._parts = list(self._flat.split(sizes))
        self._parts[0].zero_()  # the border stays zero; each call writes the interior
        self.padded = self._parts[0].view(self.pad_shape)
        self.bt, self.at = _matrix(kernel, 0, like), _matrix(kernel, 2, like)

    def input(self, n: int) -> Tensor:
        """Where the next input goes: the padded buffer's interior for the first ``n`` frames,
        an ``(n, C_in, Y, X)`` view (channels-last strides)."""
        p = self.kernel // 2
        return self.padded[:n, p:self.height + p, p:self.width + p].permute(0, 3, 1, 2)

    def _blocks(self, tiled: Tensor, frames: Tensor):
        """(block of ``tiled``, the matching view of ``frames``) pairs: ``tiled`` an
        ``(n, ty, 4, tx, 4, C)`` view of whole tiles, ``frames`` ``(n, C, Y, X)``."""
        dst = frames.permute(0, 2, 3, 1)  # (n, Y, X, C)
        for y0, y1, t0, nt, my in _pieces(self.height):
            for x0, x1, s0, ns, mx in _pieces(self.width):
                yield (tiled[:, t0:t0 + nt, :my, s0:s0 + ns, :mx],
                       dst[:, y0:y1, x0:x1].unflatten(1, (nt, my)).unflatten(3, (ns, mx)))

    def _transformed_input(self, n: int) -> Tensor:
        """``Bᵀ d B`` of every tile of the first ``n`` frames, ``(a², tiles, C_in)``."""
        a, m = self.side, TILE
        ty, tx, c = self.tiles_y, self.tiles_x, self.in_ch
        _, hp, wp, _ = self.pad_shape
        rows = n * ty * tx
        padded, d_buf, t1_buf = self._parts[:3]
        tiles = torch.as_strided(padded, (a, a, n, ty, tx, c),
                                 (wp * c, c, hp * wp * c, m * wp * c, m * c, 1),
                                 padded.storage_offset())
        d = d_buf[: a * a * rows * c].view(a, a, n, ty, tx, c)
        d.copy_(tiles)
        t1 = t1_buf[: a * a * rows * c].view(a, a, rows * c)
        torch.mm(self.bt, d.view(a, -1), out=t1.view(a, -1))  # Bᵀ d (over the tile's rows)
        v = d.view(a, a, rows * c)  # d is read: Bᵀ d B goes where it was
        torch.matmul(self.bt, t1, out=v)  # … B (over its columns)
        return v.view(a * a, rows, c)

    def run(self, n: int, out: Tensor,
            epilogue: Callable[[Tensor, Tensor], object] | None = None) -> Tensor:
        """The convolution (plus bias) of the first ``n`` frames of :meth:`input` into ``out``
        ``(n, C_out, Y, X)`` (any strides). ``epilogue(src, dst)`` writes each block of results
        ``src`` into ``dst`` (a view of ``out`` of the same shape); default ``dst.copy_(src)``,
        e.g. ``torch.sigmoid(src, out=dst)`` to apply σ on the way."""
        a, m = self.side, TILE
        ty, tx, o = self.tiles_y, self.tiles_x, self.out_ch
        rows = n * ty * tx
        v = self._transformed_input(n)
        p_buf, y1_buf = self._parts[3:5]
        p = p_buf[: a * a * rows * o].view(a * a, rows, o)
        torch.bmm(v, self.u, out=p)
        if self.bias is not None:  # Aᵀ e₁ = 1: position (1, 1) reaches every output once
            p[a + 1].add_(self.bias)
        y1 = y1_buf[: a * m * rows * o].view(a, m, rows * o)
        torch.matmul(self.at, p.view(a, a, rows * o), out=y1)  # P A (over the columns)
        y = p_buf[: m * m * rows * o].view(m, m * rows * o)  # p is read
        torch.mm(self.at, y1.view(a, -1), out=y)  # Aᵀ P A
        tiled = y.view(m, m, n, ty, tx, o).permute(2, 3, 0, 4, 1, 5)  # (n, ty, 4, tx, 4, o)
        for src, dst in self._blocks(tiled, out):
            if epilogue is None:
                dst.copy_(src)
            else:
                epilogue(src, dst)
        return out

    def add_weight_grad(self, n: int, dy: Tensor, acc: Tensor) -> None:
        """Add to ``acc`` ``(a², C_in, C_out)`` the Winograd-domain gradient of the weight for
        the first ``n`` frames of :meth:`input` and ``dy = ∂L/∂(output)`` ``(n, C_out, Y,
        X)``: ``Σ_tiles (Bᵀ d B)ᵀ (A dy Aᵀ)`` per tile position (the forward's transforms
        taken backwards; :func:`weight_grad` finishes it)."""
        a, m = self.side, TILE
        ty, tx, o = self.tiles_y, self.tiles_x, self.out_ch
        rows = n * ty * tx
        v = self._transformed_input(n)
        p_buf, y1_buf, dy_buf = self._parts[3:6]
        tiles = dy_buf[: m * m * rows * o].view(m, m, n, ty, tx, o)
        if self.height % m or self.width % m:
            tiles.zero_()  # outputs past the frame have no gradient
        for dst, src in self._blocks(tiles.permute(2, 3, 0, 4, 1, 5), dy):
            dst.copy_(src)
        z1 = y1_buf[: a * m * rows * o].view(a, m * rows * o)
        torch.mm(self.at.t(), tiles.view(m, -1), out=z1)  # A dy (over the tile's rows)
        z = p_buf[: a * a * rows * o].view(a, a, rows * o)
        torch.matmul(self.at.t(), z1.view(a, m, rows * o), out=z)  # … Aᵀ (over its columns)
        acc.baddbmm_(v.transpose(1, 2), z.view(a * a, rows, o))

    def release(self) -> None:
        """Hand the scratch back (:func:`~rnnkit.functional._workspace.give`)."""
        workspace.give(self._flat)
        self._parts = []


def weight_grad(acc: Tensor) -> Tensor:
    """``∂L/∂g = Gᵀ (∂L/∂U) G`` from :meth:`Plan.add_weight_grad`'s sum ``(a², C_in, C_out)``:
    the weight's gradient ``(C_out, C_in, k, k)``."""
    in_ch, out_ch = acc.shape[1:]
    a = round(acc.shape[0] ** 0.5)
    k = a - TILE + 1
    gt = _matrix(k, 1, acc).t()
    gdu = torch.mm(gt, acc.view(a, -1)).view(k, a, in_ch * out_ch)  # Gᵀ ∂L/∂U
    dw = torch.matmul(gt, gdu)  # … G: (k, k, C_in·C_out)
    return dw.view(k, k, in_ch, out_ch).permute(3, 2, 0, 1).contiguous()


def conv(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``conv2d(x, weight, bias, padding=k // 2)`` for a ``(C_out, C_in, k, k)`` weight (k = 3
    or 5) by Winograd, in one call (x ``(N, C_in, Y, X)``, any layout; the result is
    channels-last)."""
    batch, _, height, width = x.shape
    plan = Plan(weight.shape[1], weight.shape[0], batch, height, width, x,
                transform_weight(weight), bias, weight.shape[-1])
    try:
        plan.input(batch).copy_(x)
        out = x.new_empty(batch, height, width, weight.shape[0]).permute(0, 3, 1, 2)
        return plan.run(batch, out)
    finally:
        plan.release()
