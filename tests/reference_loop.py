"""A plain autograd reference: the textbook step of each cell (:mod:`rnnkit.functional.textbook`)
in a Python loop over time, with masks for lengths, to check the hand-written BPTT against."""

from __future__ import annotations

import torch

from rnnkit.functional.cells import spec
from rnnkit.functional.textbook import run_steps, step_elman, step_gru, step_lstm


def elman_step(x, h, w_ih, w_hh, b_ih, b_hh, nonlinearity):
    return (step_elman(x, h, w_ih, w_hh, b_ih, b_hh, nonlinearity),)


def lstm_step(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr):
    return step_lstm(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr)


def gru_step(x, h, w_ih, w_hh, b_ih, b_hh):
    return (step_gru(x, h, w_ih, w_hh, b_ih, b_hh),)


def run_direction(step, x, state, lengths, reverse):
    """x (T, B, I), state tuple of (B, ·) → output (T, B, ·), final state tuple."""
    history, final = run_steps(step, x, state, lengths, reverse)
    return history[0], final


def _step_for(layer, params):
    """The textbook step of ``layer``'s cell with one layer-direction's weights bound."""
    cell = spec(layer.mode)
    w_ih, w_hh, b_ih, b_hh, *rest = params
    if cell.cell == "lstm":
        w_hr = rest[0] if rest else None
        return lambda xt, h, c: step_lstm(xt, h, c, w_ih, w_hh, b_ih, b_hh, w_hr)
    if cell.cell == "gru":
        return lambda xt, h: step_gru(xt, h, w_ih, w_hh, b_ih, b_hh)
    return lambda xt, h: step_elman(xt, h, w_ih, w_hh, b_ih, b_hh, cell.nonlinearity)


def run_layer_stack(layer, x, hx, lengths):
    """The whole module (time-major, no dropout) with the reference loop."""
    steps, batch = x.shape[:2]
    lengths = lengths if lengths is not None else [steps] * batch
    directions = 2 if layer.bidirectional else 1
    states = hx if isinstance(hx, tuple) else (hx,)
    weights = layer.all_weights
    finals = [[] for _ in states]
    inp = x
    for index_layer in range(layer.num_layers):
        outs = []
        for direction in range(directions):
            index = index_layer * directions + direction
            params = list(weights[index])
            if not layer.bias:
                params = params[:2] + [None, None] + params[2:]
            init = tuple(s[index] for s in states)
            step = _step_for(layer, params)
            out, final = run_direction(step, inp, init, lengths, reverse=direction == 1)
            outs.append(out)
            for store, value in zip(finals, final):
                store.append(value)
        inp = torch.cat(outs, dim=2)
    final = tuple(torch.stack(v) for v in finals)
    return inp, final if len(spec(layer.mode).states) == 2 else final[0]
