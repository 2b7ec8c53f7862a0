"""A plain autograd reference: the cell equations in a Python loop over time, one step at a
time, with masks for lengths. Exists only in tests, to check the hand-written BPTT against."""

from __future__ import annotations

import torch


def elman_step(x, h, w_ih, w_hh, b_ih, b_hh, nonlinearity):
    a = x @ w_ih.t() + h @ w_hh.t()
    if b_ih is not None:
        a = a + b_ih + b_hh
    return (torch.tanh(a) if nonlinearity == "tanh" else torch.relu(a),)


def lstm_step(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr):
    gates = x @ w_ih.t() + h @ w_hh.t()
    if b_ih is not None:
        gates = gates + b_ih + b_hh
    i, f, g, o = gates.chunk(4, dim=1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h_new = torch.sigmoid(o) * torch.tanh(c_new)
    if w_hr is not None:
        h_new = h_new @ w_hr.t()
    return h_new, c_new


def gru_step(x, h, w_ih, w_hh, b_ih, b_hh):
    gi = x @ w_ih.t()
    gh = h @ w_hh.t()
    if b_ih is not None:
        gi, gh = gi + b_ih, gh + b_hh
    ir, iz, in_ = gi.chunk(3, dim=1)
    hr, hz, hn = gh.chunk(3, dim=1)
    r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
    n = torch.tanh(in_ + r * hn)
    return ((1 - z) * n + z * h,)


def run_direction(step, x, state, lengths, reverse):
    """x (T, B, I), state tuple of (B, ·) → output (T, B, ·), final state tuple."""
    steps = x.shape[0]
    lengths = torch.as_tensor(lengths)
    outputs = [None] * steps
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    for t in order:
        active = (t < lengths).unsqueeze(1).to(x.dtype)  # (B, 1)
        new = step(x[t], *state)
        state = tuple(active * n + (1 - active) * s for n, s in zip(new, state))
        outputs[t] = active * state[0]
    return torch.stack(outputs), state


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
            if layer.mode == "LSTM":
                w_hr = params[4] if len(params) > 4 else None

                def step(xt, h, c, p=params, w_hr=w_hr):
                    return lstm_step(xt, h, c, *p[:4], w_hr)
            elif layer.mode == "GRU":
                def step(xt, h, p=params):
                    return gru_step(xt, h, *p[:4])
            else:
                nl = "tanh" if layer.mode == "RNN_TANH" else "relu"

                def step(xt, h, p=params, nl=nl):
                    return elman_step(xt, h, *p[:4], nl)
            out, final = run_direction(step, inp, init, lengths, reverse=direction == 1)
            outs.append(out)
            for store, value in zip(finals, final):
                store.append(value)
        inp = torch.cat(outs, dim=2)
    final = tuple(torch.stack(v) for v in finals)
    return inp, final if layer.mode == "LSTM" else final[0]
