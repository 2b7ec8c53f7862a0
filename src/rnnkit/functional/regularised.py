r"""LSTM and GRU layers with the cell options: layer normalisation, recurrent (variational)
dropout and zoneout, with hand-written BPTT.

One layer, one direction per call, time-major ``(T, B, ·)``, batch order (no Schedule: every row
runs every step and an ``active`` mask keeps a finished row's state, see below). The reverse
direction is the caller's: it flips the sequence (:mod:`rnnkit.nn.regularised`) and says so with
``reverse=True``, which changes nothing in the computation and tells the gradient-flow probe that
step t of the call is time position T−1−t.

**Layer normalisation** (Ba et al. 2016) — the *per-gate* variant: each gate's block of H
pre-activation units is normalised on its own (mean and variance over those H units), separately
for the input product and the recurrent product, each with a learned gain and no shift (the cell
bias follows), as ``tf.contrib.rnn.LayerNormBasicLSTMCell``; the LSTM also normalises the cell
state that feeds the output (gain and shift), as Haste's ``LayerNormLSTM``; the carried cell state
itself is not normalised:

.. math::
    \begin{aligned}
    \mathrm{LN}_k(a;\gamma) &= \gamma \odot (a_k - \mu(a_k)) / \sqrt{\sigma^2(a_k) + \epsilon}
        \quad\text{for each gate block } a_k\ (\epsilon = 10^{-5}) \\
    (i, f, g, o) &= (\sigma, \sigma, \tanh, \sigma)\big(\mathrm{LN}(W_{ih} x_t;\gamma_{ih})
        + \mathrm{LN}(W_{hh} (m \odot h_{t-1});\gamma_{hh}) + b_{ih} + b_{hh}\big) \\
    \tilde c_t &= f \odot c_{t-1} + i \odot g, \qquad
    \tilde h_t = o \odot \tanh \mathrm{LN}(\tilde c_t; \gamma_c, \beta_c)
    \end{aligned}

GRU (torch's form, ``b_hn`` inside the reset product, as Haste's ``LayerNormGRU``):
``r, z = σ(LN(W_ih x)_{r,z} + b_{ih} + LN(W_hh (m ⊙ h))_{r,z} + b_{hh})``,
``n = tanh(LN(W_ih x)_n + b_in + r ⊙ (LN(W_hh (m ⊙ h))_n + b_hn))``,
``h̃_t = (1 − z) ⊙ n + z ⊙ h_{t-1}``.

**Recurrent dropout** (Gal & Ghahramani 2016): ``m`` above, a ``(B, H)`` mask of 0 and
``1/(1 − p)`` drawn once per sequence and kept for every step; only the copy of ``h_{t-1}`` that
enters ``W_hh`` is dropped (the carried state, the output and the GRU's ``z ⊙ h_{t-1}`` are not).
Without it, ``m = 1``.

**Zoneout** (Krueger et al. 2017): ``keep_h`` / ``keep_c`` ``(T, B, H)``: in training a fresh 0/1
mask per step (1 = the unit keeps its previous value, with probability p), in evaluation the
constant p (the expectation):

.. math::
    c_t = d^c_t \odot c_{t-1} + (1 - d^c_t) \odot \tilde c_t, \qquad
    h_t = d^h_t \odot h_{t-1} + (1 - d^h_t) \odot \tilde h_t

(the paper's equations: ``h̃_t`` reads the new, not zoned-out, cell state).

**Lengths**: ``active`` ``(T, B, 1)``, 1 where row b runs step t. A padded step is a step where
every unit keeps its value (d = 1), so the state is untouched and the output there is zero, as
the other layers' ``lengths=``.

The backward is hand-written (one reverse loop carrying ∂L/∂h and ∂L/∂c; the input and
recurrent weight gradients as single products over all steps after the loop). While a
gradient-flow probe is active (:mod:`rnnkit.functional.probe`, what :mod:`rnnkit.diagnostics`
uses) the loop records ‖∂L/∂h_t‖ of every step, ``dh_t`` below: the error reaching the state h_t
(after zoneout) from output t and from step t+1, as the other layers record; padded steps are
recorded as not run. A backward that must itself be differentiable (``create_graph=True``) runs
the autograd reference loops :func:`reference_lstm` / :func:`reference_gru` instead, which are
also the tests' yardstick, and records nothing, as the other layers' second-order path.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.functional import probe
from rnnkit.functional._gemm import ReusedWeight

__all__ = [
    "LN_EPS",
    "lstm_options",
    "gru_options",
    "LSTMOptionsFunction",
    "GRUOptionsFunction",
    "reference_lstm",
    "reference_gru",
    "layer_norm_blocks",
]

LN_EPS = 1e-5


# ------------------------------------------------------------------ layer normalisation


def layer_norm_blocks(a: Tensor, blocks: int) -> tuple[Tensor, Tensor]:
    """``a`` ``(…, blocks·H)`` normalised per block of H units: (n ``(…, blocks·H)``,
    1/σ ``(…, blocks, 1)``). torch's fused layer-norm kernel, without its affine part."""
    v = a.unflatten(-1, (blocks, -1))
    n, _, rstd = torch.native_layer_norm(v, [v.shape[-1]], None, None, LN_EPS)
    return n.flatten(-2), rstd


def _layer_norm_back(dn: Tensor, n: Tensor, rstd: Tensor, blocks: int) -> Tensor:
    """∂L/∂a from ∂L/∂n (n = the normalised a): ``(dn − mean dn − n mean(dn ⊙ n)) / σ`` per
    block. That is torch's fused layer-norm backward run on n itself (mean 0, 1/σ = 1), then
    scaled by the real 1/σ."""
    dv, nv = dn.unflatten(-1, (blocks, -1)), n.unflatten(-1, (blocks, -1))
    da, _, _ = torch.ops.aten.native_layer_norm_backward(
        dv, nv, [nv.shape[-1]], torch.zeros_like(rstd), torch.ones_like(rstd), None, None,
        [True, False, False])
    return (da * rstd).flatten(-2)


def _tanh(x: Tensor) -> Tensor:
    """``tanh x = 2σ(2x) − 1``: PyTorch's CPU tanh costs several sigmoids per element."""
    return torch.sigmoid(2 * x).mul_(2).sub_(1)


def _keep(active: Tensor | None, keep: Tensor | None) -> Tensor | None:
    """The per-step keep factor: zoneout's d on active rows, 1 on padded ones; None = 0."""
    if active is None:
        return keep
    if keep is None:
        return 1 - active
    return 1 - active * (1 - keep)


def _previous(first: Tensor, seq: Tensor) -> Tensor:
    """``(T, B, ·)`` of the state before each step: first, seq[0], …, seq[T−2]."""
    return torch.cat([first.unsqueeze(0), seq[:-1]])


# ------------------------------------------------------------------ LSTM


class LSTMOptionsFunction(torch.autograd.Function):
    """One LSTM layer with the cell options, hand-written BPTT (see the module docstring)."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, g_ih, g_hh, g_c, b_c, active, keep_h,
                keep_c, mask, reverse):
        steps, batch, _ = x.shape
        size = w_hh.shape[1]
        ln = g_ih is not None
        xa, n_x, rstd_x = _input_part(x, w_ih, g_ih, 4)
        if b_ih is not None:
            xa = xa + (b_ih + b_hh)
        kh, kc = _keep(active, keep_h), _keep(active, keep_c)
        recurrent = ReusedWeight(w_hh, batch)  # h W_hhᵀ, the weight packed once
        gates = torch.empty_like(xa)  # (i, f, g, o) after their nonlinearities
        tanh_c = x.new_empty(steps, batch, size)
        hs, cs = x.new_empty(steps, batch, size), x.new_empty(steps, batch, size)
        n_h = torch.empty_like(xa) if ln else None
        rstd_h = x.new_empty(steps, batch, 4, 1) if ln else None
        n_c = x.new_empty(steps, batch, size) if ln else None
        rstd_c = x.new_empty(steps, batch, 1, 1) if ln else None
        g_cols = slice(2 * size, 3 * size)
        h, c = h0, c0
        for t in range(steps):
            ah = recurrent(h if mask is None else h * mask)
            if ln:
                n, rstd_h[t] = layer_norm_blocks(ah, 4)
                n_h[t] = n
                ah = n * g_hh
            pre = xa[t] + ah
            gt = gates[t]
            torch.sigmoid(pre, out=gt)
            gt[:, g_cols] = _tanh(pre[:, g_cols])
            i, f, g, o = gt.chunk(4, 1)
            c_new = f * c + i * g  # c̃_t
            if ln:
                n, rstd_c[t] = layer_norm_blocks(c_new, 1)
                n_c[t] = n
                tanh_c[t] = _tanh(n * g_c + b_c)
            else:
                tanh_c[t] = _tanh(c_new)
            h_new = o * tanh_c[t]  # h̃_t
            if kc is not None:
                c_new = torch.lerp(c_new, c, kc[t])  # d c_{t-1} + (1 − d) c̃_t
            if kh is not None:
                h_new = torch.lerp(h_new, h, kh[t])
            hs[t], cs[t] = h_new, c_new
            h, c = hs[t], cs[t]
        output = hs if active is None else hs * active
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, g_ih, g_hh, g_c, b_c, active,
                              keep_h, keep_c, mask, gates, tanh_c, hs, cs, n_x, rstd_x, n_h,
                              rstd_h, n_c, rstd_c)
        ctx.reverse = reverse
        return output, hs[-1].clone(), cs[-1].clone()

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, dout, dh_n, dc_n):
        (x, h0, c0, w_ih, w_hh, b_ih, b_hh, g_ih, g_hh, g_c, b_c, active, keep_h, keep_c, mask,
         gates, tanh_c, hs, cs, n_x, rstd_x, n_h, rstd_h, n_c, rstd_c) = ctx.saved_tensors
        inputs = (x, h0, c0, w_ih, w_hh, b_ih, b_hh, g_ih, g_hh, g_c, b_c)
        if torch.is_grad_enabled():  # create_graph=True: a differentiable backward
            return (*_second_order(reference_lstm, inputs, (active, keep_h, keep_c, mask),
                                   (dout, dh_n, dc_n), ctx.needs_input_grad), None)
        steps = x.shape[0]
        ln = g_ih is not None
        kh, kc = _keep(active, keep_h), _keep(active, keep_c)
        dout = _output_grad(dout, hs, active)
        dh = torch.zeros_like(h0) if dh_n is None else dh_n.clone()
        dc = torch.zeros_like(c0) if dc_n is None else dc_n.clone()
        dpre = torch.empty_like(gates)  # ∂L/∂ gate pre-activations
        dah = torch.empty_like(gates) if ln else dpre  # ∂L/∂ W_hh (m ⊙ h_{t-1})
        dg_c = torch.zeros_like(g_c) if ln else None
        db_c = torch.zeros_like(b_c) if ln else None
        back = ReusedWeight(w_hh.t(), h0.shape[0])  # dah W_hh
        record = probe.recorder(w_hh, None, hs, active=active, reverse=ctx.reverse)  # or None
        for t in reversed(range(steps)):
            dh_t = dh + dout[t]  # ∂L/∂h_t: from output t and from step t+1
            if record is not None:
                record(t, dh_t)
            i, f, g, o = gates[t].chunk(4, 1)
            c_prev = c0 if t == 0 else cs[t - 1]
            dh_new, dh = _split(dh_t, kh, t)  # to h̃_t; straight on to h_{t-1}
            dc_new, dc = _split(dc, kc, t)
            tc = tanh_c[t]
            do = dh_new * tc
            dhat = dh_new * o * (1 - tc * tc)  # ∂L/∂ the tanh's argument
            if ln:
                dg_c += (dhat * n_c[t]).sum(0)
                db_c += dhat.sum(0)
                dc_new = dc_new + _layer_norm_back(dhat * g_c, n_c[t], rstd_c[t], 1)
            else:
                dc_new = dc_new + dhat
            di, df, dg, d_o = dpre[t].chunk(4, 1)
            torch.mul(dc_new * g, i * (1 - i), out=di)
            torch.mul(dc_new * c_prev, f * (1 - f), out=df)
            torch.mul(dc_new * i, 1 - g * g, out=dg)
            torch.mul(do, o * (1 - o), out=d_o)
            dc = dc_new * f if dc is None else dc + dc_new * f
            if ln:
                dah[t] = _layer_norm_back(dpre[t] * g_hh, n_h[t], rstd_h[t], 4)
            dhd = back(dah[t])  # ∂L/∂ (m ⊙ h_{t-1})
            if mask is not None:
                dhd = dhd * mask
            dh = dhd if dh is None else dh + dhd
        needs = ctx.needs_input_grad
        dx, dw_ih, dw_hh, db_ih, dg_ih, dg_hh = _weight_grads(
            needs, dpre, dpre, dah, x, h0, hs, w_ih, w_hh, mask, n_x, rstd_x, n_h, g_ih, 4)
        db = db_ih if b_ih is not None else None
        return (dx, dh, dc, dw_ih, dw_hh, db, db, dg_ih, dg_hh, dg_c, db_c,
                None, None, None, None, None)


def _input_part(x: Tensor, w_ih: Tensor, g_ih: Tensor | None, blocks: int):
    """``W_ih x`` for all steps at once, layer-normalised per gate when ``g_ih`` is given:
    (result ``(T, B, G)``, n, 1/σ)."""
    steps, batch, features = x.shape
    xp = ReusedWeight(w_ih, steps * batch)(x.reshape(steps * batch, features))
    xp = xp.view(steps, batch, -1)
    if g_ih is None:
        return xp, None, None
    n_x, rstd_x = layer_norm_blocks(xp, blocks)
    return n_x * g_ih, n_x, rstd_x


def _output_grad(dout: Tensor | None, hs: Tensor, active: Tensor | None) -> Tensor:
    if dout is None:
        return torch.zeros_like(hs)
    return dout if active is None else dout * active


def _split(grad: Tensor, keep: Tensor | None, t: int) -> tuple[Tensor, Tensor | None]:
    """∂L/∂ state_t split by ``state_t = d state_{t-1} + (1 − d) new``: (to new, to
    state_{t-1}; None where d = 0)."""
    if keep is None:
        return grad, None
    return (1 - keep[t]) * grad, keep[t] * grad


def _weight_grads(needs, dxa, dah_out, dah, x, h0, hs, w_ih, w_hh, mask, n_x, rstd_x, n_h, g_ih,
                  blocks):
    """The gradients after the loop, each one product or sum over all steps: dx, ∂L/∂W_ih,
    ∂L/∂W_hh, ∂L/∂b_ih, ∂L/∂γ_ih, ∂L/∂γ_hh.

    dxa: ∂L/∂ the input part (after its LN and gain); dah_out: ∂L/∂ the recurrent part after its
    LN and gain; dah: ∂L/∂ the raw recurrent product ``W_hh (m ⊙ h_{t-1})``.
    """
    width = dxa.shape[-1]
    hd = _previous(h0, hs)
    if mask is not None:
        hd = hd * mask
    dw_hh = dah.reshape(-1, width).t() @ hd.reshape(-1, hd.shape[-1]) if needs[4] else None
    db_ih = dxa.sum((0, 1))
    dg_ih = dg_hh = None
    dxp = dxa
    if g_ih is not None:
        dg_hh = (dah_out * n_h).sum((0, 1))
        dg_ih = (dxa * n_x).sum((0, 1))
        dxp = _layer_norm_back(dxa * g_ih, n_x, rstd_x, blocks)
    rows = dxp.reshape(-1, width)
    dw_ih = rows.t() @ x.reshape(-1, x.shape[-1]) if needs[3] else None
    dx = (rows @ w_ih).view_as(x) if needs[0] else None
    return dx, dw_ih, dw_hh, db_ih, dg_ih, dg_hh


# ------------------------------------------------------------------ GRU


class GRUOptionsFunction(torch.autograd.Function):
    """One GRU layer with the cell options, hand-written BPTT (see the module docstring)."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, g_ih, g_hh, active, keep_h, mask, reverse):
        steps, batch, _ = x.shape
        size = w_hh.shape[1]
        ln = g_ih is not None
        xa, n_x, rstd_x = _input_part(x, w_ih, g_ih, 3)
        if b_ih is not None:
            xa = xa + b_ih
        kh = _keep(active, keep_h)
        recurrent = ReusedWeight(w_hh, batch)
        gates = torch.empty_like(xa)  # (r, z, n)
        hn_part = x.new_empty(steps, batch, size)  # LN(W_hn h)γ + b_hn, inside the reset
        hs = x.new_empty(steps, batch, size)
        n_h = torch.empty_like(xa) if ln else None
        rstd_h = x.new_empty(steps, batch, 3, 1) if ln else None
        rz, nc = slice(0, 2 * size), slice(2 * size, 3 * size)
        h = h0
        for t in range(steps):
            ah = recurrent(h if mask is None else h * mask)
            if ln:
                n, rstd_h[t] = layer_norm_blocks(ah, 3)
                n_h[t] = n
                ah = n * g_hh
            if b_hh is not None:
                ah = ah + b_hh
            gt = gates[t]
            torch.sigmoid(xa[t, :, rz] + ah[:, rz], out=gt[:, rz])
            hn_part[t] = ah[:, nc]
            gt[:, nc] = _tanh(xa[t, :, nc] + gt[:, :size] * ah[:, nc])
            z, n = gt[:, size: 2 * size], gt[:, nc]
            h_new = torch.lerp(n, h, z)  # (1 − z) n + z h_{t-1}
            if kh is not None:
                h_new = torch.lerp(h_new, h, kh[t])
            hs[t] = h_new
            h = hs[t]
        output = hs if active is None else hs * active
        ctx.save_for_backward(x, h0, w_ih, w_hh, b_ih, b_hh, g_ih, g_hh, active, keep_h, mask,
                              gates, hn_part, hs, n_x, rstd_x, n_h, rstd_h)
        ctx.reverse = reverse
        return output, hs[-1].clone()

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, dout, dh_n):
        (x, h0, w_ih, w_hh, b_ih, b_hh, g_ih, g_hh, active, keep_h, mask, gates, hn_part, hs,
         n_x, rstd_x, n_h, rstd_h) = ctx.saved_tensors
        inputs = (x, h0, w_ih, w_hh, b_ih, b_hh, g_ih, g_hh)
        if torch.is_grad_enabled():  # create_graph=True: a differentiable backward
            return (*_second_order(reference_gru, inputs, (active, keep_h, mask), (dout, dh_n),
                                   ctx.needs_input_grad), None)
        steps = x.shape[0]
        ln = g_ih is not None
        kh = _keep(active, keep_h)
        dout = _output_grad(dout, hs, active)
        dh = torch.zeros_like(h0) if dh_n is None else dh_n.clone()
        dxa = torch.empty_like(gates)  # ∂L/∂ input part (r, z, n)
        dah_out = torch.empty_like(gates)  # ∂L/∂ recurrent part after LN, gain and bias
        dah = torch.empty_like(gates) if ln else dah_out  # ∂L/∂ W_hh (m ⊙ h_{t-1})
        back = ReusedWeight(w_hh.t(), h0.shape[0])
        record = probe.recorder(w_hh, None, hs, active=active, reverse=ctx.reverse)  # or None
        for t in reversed(range(steps)):
            dh_t = dh + dout[t]  # ∂L/∂h_t: from output t and from step t+1
            if record is not None:
                record(t, dh_t)
            r, z, n = gates[t].chunk(3, 1)
            h_prev = h0 if t == 0 else hs[t - 1]
            dh_new, dh = _split(dh_t, kh, t)
            dz_pre = dh_new * (h_prev - n) * z * (1 - z)
            dn_pre = dh_new * (1 - z) * (1 - n * n)
            dr_pre = dn_pre * hn_part[t] * r * (1 - r)
            direct = dh_new * z  # through z ⊙ h_{t-1}
            dh = direct if dh is None else dh + direct
            dxa_t, dah_t = dxa[t], dah_out[t]
            dxa_t[:, : n.shape[1]] = dr_pre
            dxa_t[:, n.shape[1]: 2 * n.shape[1]] = dz_pre
            dxa_t[:, 2 * n.shape[1]:] = dn_pre
            dah_t.copy_(dxa_t)
            dah_t[:, 2 * n.shape[1]:] *= r
            if ln:
                dah[t] = _layer_norm_back(dah_t * g_hh, n_h[t], rstd_h[t], 3)
            dhd = back(dah[t])
            if mask is not None:
                dhd = dhd * mask
            dh = dh + dhd
        needs = ctx.needs_input_grad
        dx, dw_ih, dw_hh, db_ih, dg_ih, dg_hh = _weight_grads(
            needs, dxa, dah_out, dah, x, h0, hs, w_ih, w_hh, mask, n_x, rstd_x, n_h, g_ih, 3)
        db_hh = dah_out.sum((0, 1)) if b_hh is not None else None
        if b_ih is None:
            db_ih = None
        return dx, dh, dw_ih, dw_hh, db_ih, db_hh, dg_ih, dg_hh, None, None, None, None


# ------------------------------------------------------------------ entry points


def lstm_options(x, h0, c0, w_ih, w_hh, b_ih, b_hh, ln=None, active=None, keep_h=None,
                 keep_c=None, mask=None, *, reverse: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """One LSTM layer with the cell options, forward in time.

    x ``(T, B, I)``; h0, c0 ``(B, H)``; weights as ``torch.nn.LSTM``'s (no projection); ln =
    (γ_ih ``(4H,)``, γ_hh ``(4H,)``, γ_c ``(H,)``, β_c ``(H,)``) or None; active ``(T, B, 1)``
    (1 where the row runs the step) or None; keep_h / keep_c ``(T, B, H)`` zoneout factors or
    None; mask ``(B, H)`` the scaled recurrent-dropout mask or None; reverse: the caller has
    flipped the sequence in time (the reverse direction), for the gradient-flow probe only →
    (output ``(T, B, H)``, zero where inactive; h_n ``(B, H)``; c_n ``(B, H)``).
    """
    g_ih, g_hh, g_c, b_c = ln if ln is not None else (None,) * 4
    return LSTMOptionsFunction.apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh, g_ih, g_hh, g_c, b_c,
                                     active, keep_h, keep_c, mask, reverse)


def gru_options(x, h0, w_ih, w_hh, b_ih, b_hh, ln=None, active=None, keep_h=None,
                mask=None, *, reverse: bool = False) -> tuple[Tensor, Tensor]:
    """One GRU layer with the cell options, forward in time; as :func:`lstm_options` with
    ln = (γ_ih ``(3H,)``, γ_hh ``(3H,)``) and no cell state."""
    g_ih, g_hh = ln if ln is not None else (None, None)
    return GRUOptionsFunction.apply(x, h0, w_ih, w_hh, b_ih, b_hh, g_ih, g_hh, active, keep_h,
                                    mask, reverse)


# ------------------------------------------------------------------ autograd reference


def _ln(a: Tensor, gain: Tensor, blocks: int) -> Tensor:
    v = a.unflatten(-1, (blocks, -1))
    normed = (v - v.mean(-1, keepdim=True)) / (v.var(-1, unbiased=False, keepdim=True)
                                               + LN_EPS).sqrt()
    return normed.flatten(-2) * gain


def reference_lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, g_ih, g_hh, g_c, b_c, active, keep_h,
                   keep_c, mask):
    """The same layer as :class:`LSTMOptionsFunction`, written step by step for autograd (the
    module docstring's equations, one line each): the tests' yardstick and the
    ``create_graph=True`` path."""
    h, c, outputs = h0, c0, []
    kh, kc = _keep(active, keep_h), _keep(active, keep_c)
    for t in range(x.shape[0]):
        a_x = x[t] @ w_ih.t()
        a_h = (h if mask is None else h * mask) @ w_hh.t()
        if g_ih is not None:
            a_x, a_h = _ln(a_x, g_ih, 4), _ln(a_h, g_hh, 4)
        pre = a_x + a_h
        if b_ih is not None:
            pre = pre + b_ih + b_hh
        i, f, g, o = pre.chunk(4, 1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        c_out = c_new if g_c is None else _ln(c_new, g_c, 1) + b_c
        h_new = torch.sigmoid(o) * torch.tanh(c_out)
        if kc is not None:
            c_new = kc[t] * c + (1 - kc[t]) * c_new
        if kh is not None:
            h_new = kh[t] * h + (1 - kh[t]) * h_new
        h, c = h_new, c_new
        outputs.append(h if active is None else h * active[t])
    return torch.stack(outputs), h, c


def reference_gru(x, h0, w_ih, w_hh, b_ih, b_hh, g_ih, g_hh, active, keep_h, mask):
    """The same layer as :class:`GRUOptionsFunction`, step by step for autograd."""
    h, outputs = h0, []
    kh = _keep(active, keep_h)
    for t in range(x.shape[0]):
        a_x = x[t] @ w_ih.t()
        a_h = (h if mask is None else h * mask) @ w_hh.t()
        if g_ih is not None:
            a_x, a_h = _ln(a_x, g_ih, 3), _ln(a_h, g_hh, 3)
        if b_ih is not None:
            a_x, a_h = a_x + b_ih, a_h + b_hh
        x_r, x_z, x_n = a_x.chunk(3, 1)
        h_r, h_z, h_n = a_h.chunk(3, 1)
        r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        h_new = (1 - z) * n + z * h
        if kh is not None:
            h_new = kh[t] * h + (1 - kh[t]) * h_new
        h = h_new
        outputs.append(h if active is None else h * active[t])
    return torch.stack(outputs), h


def _second_order(reference, inputs, constants, grad_outputs, needs):
    """The backward as differentiable operations (``create_graph=True``): the reference loop
    under autograd, and ``torch.autograd.grad`` of it with its own graph."""
    wanted = [t for t, need in zip(inputs, needs) if need and t is not None]
    with torch.enable_grad():
        outputs = reference(*inputs, *constants)
        pairs = [(o, g) for o, g in zip(outputs, grad_outputs) if g is not None]
        grads = iter(torch.autograd.grad([o for o, _ in pairs], wanted, [g for _, g in pairs],
                                         create_graph=True, allow_unused=True))
    out = [next(grads) if need and t is not None else None for t, need in zip(inputs, needs)]
    return (*out, *([None] * len(constants)))
