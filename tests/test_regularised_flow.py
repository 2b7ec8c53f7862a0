"""The gradient-flow probe in the layers with the cell options (layer norm, recurrent dropout,
zoneout): each step's recorded ‖∂L/∂h_t‖ equals autograd's through the reference loop, for every
option, lengths= and both directions; the diagnostics and the inspect report show these layers;
nothing is recorded without a probe or on the create_graph=True path.

The expected values are computed without the hand-written backward: ∂L/∂h_t (the error reaching
the state h_t, after zoneout, from output t and from step t+1, what the other layers record) is
the gradient of ⟨w_t, out_t⟩ + L_{>t}(h_t, c_t), where L_{>t} runs the autograd reference loop
(:func:`reference_lstm` / :func:`reference_gru`) from the state after step t to the end.
The probe stores float32 norms of float64 errors: tolerance rtol 1e-6 (float32 rounds at 6e-8).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rnnkit
from rnnkit.diagnostics import gradient_flow
from rnnkit.diagnostics.inspect import InspectConfig, InspectRun, write_inspect_report
from rnnkit.functional import probe
from rnnkit.functional import regularised as R
from rnnkit.nn import regularised as nr

T, B, I, H = 6, 4, 3, 5
LENGTHS = torch.tensor([6, 2, 4, 5])
DOUBLE = torch.float64
RTOL, ATOL = 1e-6, 1e-9

pytestmark = pytest.mark.usefixtures("one_thread")


def _inputs(cell: str, option: str, seed: int = 0):
    """(x, state, weights, ln, constants (active, keep_h, keep_c, mask)) in float64."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=0.5):
        return torch.randn(*shape, generator=gen, dtype=DOUBLE) * scale

    blocks = 4 if cell == "lstm" else 3
    weights = [rand(blocks * H, I), rand(blocks * H, H, scale=0.8), rand(blocks * H),
               rand(blocks * H)]
    ln = None
    if option in ("layer_norm", "all"):
        ln = [rand(blocks * H) + 1, rand(blocks * H) + 1]
        if cell == "lstm":
            ln += [rand(H) + 1, rand(H)]
    active = keep_h = keep_c = mask = None
    if option in ("lengths", "all"):
        active = (torch.arange(T)[:, None] < LENGTHS[None]).to(DOUBLE).unsqueeze(-1)
    if option in ("zoneout", "all"):
        keep_h, keep_c = (torch.bernoulli(torch.full((T, B, H), 0.3), generator=gen).to(DOUBLE)
                          for _ in range(2))
    if option in ("recurrent_dropout", "all"):
        mask = torch.bernoulli(torch.full((B, H), 0.7), generator=gen).to(DOUBLE) / 0.7
    x = rand(T, B, I, scale=1.0)
    state = [rand(B, H) for _ in range(2 if cell == "lstm" else 1)]
    return x, state, weights, ln, (active, keep_h, keep_c, mask)


def _reference(cell, x, state, weights, ln, constants):
    """The reference loop: (output, *final states)."""
    active, keep_h, keep_c, mask = constants
    if cell == "lstm":
        ln = ln or [None] * 4
        return R.reference_lstm(x, *state, *weights, *ln, active, keep_h, keep_c, mask)
    ln = ln or [None] * 2
    return R.reference_gru(x, *state, *weights, *ln, active, keep_h, mask)


def _steps(constants, part: slice):
    """The per-step constants of steps ``part`` (the recurrent-dropout mask is per sequence)."""
    active, keep_h, keep_c, mask = constants
    return tuple(None if c is None else c[part] for c in (active, keep_h, keep_c)) + (mask,)


def _expected_norms(cell, x, state, weights, ln, constants, w_out, w_final) -> torch.Tensor:
    """``(T, B)`` ‖∂L/∂h_t‖ in the call's step order for L = Σ_t ⟨w_out_t, out_t⟩ +
    Σ_s ⟨w_final_s, final_s⟩, by autograd through the reference loop; 0 on padded steps."""
    active = constants[0]
    norms = torch.zeros(T, B, dtype=DOUBLE)
    for t in range(T):
        prefix = _reference(cell, x[: t + 1], state, weights, ln, _steps(constants, slice(t + 1)))
        after = [s.detach().requires_grad_() for s in prefix[1:]]  # (h_t[, c_t])
        direct = (w_out[t] * (1 if active is None else active[t]) * after[0]).sum()
        if t + 1 < T:
            out, *finals = _reference(cell, x[t + 1:], after, weights, ln,
                                      _steps(constants, slice(t + 1, None)))
            rest = (w_out[t + 1:] * out).sum()
        else:
            finals, rest = after, 0.0
        loss = direct + rest + sum((w * s).sum() for w, s in zip(w_final, finals))
        (dh,) = torch.autograd.grad(loss, after[0])
        norms[t] = dh.norm(dim=1)
    return norms if active is None else norms * active[..., 0]


def _run(cell, x, state, weights, ln, constants, reverse=False):
    active, keep_h, keep_c, mask = constants
    if cell == "lstm":
        return R.lstm_options(x, *state, *weights, ln, active, keep_h, keep_c, mask,
                              reverse=reverse)
    return R.gru_options(x, *state, *weights, ln, active, keep_h, mask, reverse=reverse)


def _leaves(*groups):
    return [[t.clone().requires_grad_() for t in group] if group else group for group in groups]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("option", ["plain", "layer_norm", "recurrent_dropout", "zoneout",
                                    "lengths", "all"])
def test_recorded_norms_equal_autograd(cell, option):
    x, state, weights, ln, constants = _inputs(cell, option)
    gen = torch.Generator().manual_seed(1)
    w_out = torch.randn(T, B, H, generator=gen, dtype=DOUBLE)
    w_final = [torch.randn(B, H, generator=gen, dtype=DOUBLE) for _ in state]
    expected = _expected_norms(cell, x, state, weights, ln, constants, w_out, w_final)
    x_, state_, weights_, ln_ = _leaves([x], state, weights, ln)
    with probe.recording() as recording:
        out, *finals = _run(cell, x_[0], state_, weights_, ln_, constants, reverse=True)
        loss = (w_out * out).sum() + sum((w * s).sum() for w, s in zip(w_final, finals))
        loss.backward()
    [record] = recording.records
    assert record.schedule is None and record.reverse  # plain order, as the call said
    assert record.w_hh.data_ptr() == weights_[1].data_ptr()  # how flow names the layer
    active = constants[0]
    if active is None:
        assert record.active is None
    else:
        assert torch.equal(record.active, active[..., 0] != 0)
    assert record.norms.dtype == torch.float32
    torch.testing.assert_close(record.norms.double(), expected, rtol=RTOL, atol=ATOL)
    # the test can tell the carried error from the output's alone
    alone = (w_out * (1 if active is None else active)).norm(dim=2)
    assert (expected - alone).abs().max() > 0.1


class _Spy:
    """Keeps the arguments the layer hands a functional entry point (the masks it drew)."""

    def __init__(self, monkeypatch, name):
        self.calls = []
        real = getattr(nr, name)

        def spy(*args, **kwargs):
            self.calls.append((args, kwargs))
            return real(*args, **kwargs)

        monkeypatch.setattr(nr, name, spy)


def _aggregate(norms: torch.Tensor, lengths: torch.Tensor, reverse: bool):
    """Mean over rows by time position and by distance from the direction's last step, from
    ``(T, B)`` norms in the call's step order (the reverse call runs the flipped sequence)."""
    by_position, by_distance = torch.zeros(T), torch.zeros(T)
    count_p, count_d = torch.zeros(T), torch.zeros(T)
    for b, length in enumerate(lengths.tolist()):
        for position in range(length):
            value = norms[T - 1 - position if reverse else position, b]
            distance = position if reverse else length - 1 - position
            by_position[position] += value
            count_p[position] += 1
            by_distance[distance] += value
            count_d[distance] += 1
    return (by_position / count_p).tolist(), (by_distance / count_d).tolist()


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_layer_flow_with_lengths_both_directions(cell, monkeypatch):
    """A bidirectional layer in training (fresh zoneout and dropout masks, layer norm) with
    lengths=: per direction, the flow by position and by distance equals the autograd values
    averaged over the rows that reach each step."""
    cls = nr.RegularisedLSTM if cell == "lstm" else nr.RegularisedGRU
    spy = _Spy(monkeypatch, f"{cell}_options")
    layer = cls(I, H, bidirectional=True, layer_norm=True, recurrent_dropout=0.3, zoneout=0.2,
                dtype=DOUBLE)
    x = torch.randn(T, B, I, dtype=DOUBLE)
    w_out = torch.randn(T, B, 2 * H, dtype=DOUBLE)
    w_final = torch.randn(2, B, H, dtype=DOUBLE)

    def loss_fn(model, batch):
        output, final = model(batch, lengths=LENGTHS)
        h_n = final[0] if isinstance(final, tuple) else final
        return (output * w_out).sum() + (h_n * w_final).sum()

    flow = gradient_flow(layer, x, loss_fn)
    assert list(flow.layers) == ["l0", "l0_reverse"]
    assert len(spy.calls) == 2
    for direction, (args, kwargs) in enumerate(spy.calls):
        reverse = kwargs["reverse"]
        assert reverse == bool(direction)
        states = 2 if cell == "lstm" else 1
        x_d, state, weights = args[0], list(args[1: 1 + states]), list(args[1 + states: 5 + states])
        ln, rest = args[5 + states], args[6 + states:]
        constants = (rest[0], rest[1], rest[2], rest[3]) if cell == "lstm" else (
            rest[0], rest[1], None, rest[2])
        assert constants[1] is not None and constants[3] is not None  # training: masks drawn
        weights = [w.detach() for w in weights]
        ln = [g.detach() for g in ln]
        w_d = w_out[..., direction * H: (direction + 1) * H]
        w_d = w_d.flip(0) if reverse else w_d  # the reverse call's output is flipped back
        finals = [w_final[direction]] + ([torch.zeros(B, H, dtype=DOUBLE)] if states == 2 else [])
        expected = _expected_norms(cell, x_d.detach(), [s.detach() for s in state], weights, ln,
                                   constants, w_d, finals)
        by_position, by_distance = _aggregate(expected, LENGTHS, reverse)
        name = ("l0", "l0_reverse")[direction]
        torch.testing.assert_close(torch.tensor(flow.layers[name].by_position),
                                   torch.tensor(by_position), rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(torch.tensor(flow.layers[name].by_distance),
                                   torch.tensor(by_distance), rtol=1e-5, atol=1e-7)
    # the two directions really are laid out differently
    assert flow.layers["l0"].by_position != flow.layers["l0_reverse"].by_position


def test_stacked_layers_are_named_like_the_plain_ones():
    """Two layers, two directions: four recorded layers named after their W_hh, as
    rnnkit.LSTM's; a model mixing both kinds records both."""
    model = nn.ModuleDict({"enc": nr.RegularisedLSTM(I, H, num_layers=2, bidirectional=True,
                                                     zoneout=0.1),
                           "dec": rnnkit.GRU(2 * H, H)})

    def loss_fn(m, batch):
        output, _ = m["dec"](m["enc"](batch, lengths=LENGTHS)[0], lengths=LENGTHS)
        return output.pow(2).sum()

    flow = gradient_flow(model, torch.randn(T, B, I), loss_fn)
    assert list(flow.layers) == ["enc.l0", "enc.l0_reverse", "enc.l1", "enc.l1_reverse",
                                 "dec.l0"]
    for layer in flow.layers.values():
        assert len(layer.by_position) == T
        assert all(v > 0 for v in layer.by_position + layer.by_distance)


def test_inspect_report_shows_the_layers_flow(tmp_path):
    """The report's gradient-flow plot covers a layer with the cell options (its caption names
    the recorded layers) and no longer says it is not recorded."""
    lstm = nr.RegularisedLSTM(I, H, bidirectional=True, layer_norm=True, zoneout=0.1)
    model = nn.ModuleDict({"rnn": lstm, "head": nn.Linear(2 * H, 3)})
    x = torch.randn(T, 1, I)

    def loss_fn(m, _):
        return m["head"](m["rnn"](x)[0]).logsumexp(-1).sum()

    hidden = lstm(x)[0][:, 0].detach()
    run = InspectRun(model, list("abcdef"), hidden, ["-"] * T, loss_fn)
    out = tmp_path / "report.html"
    config = InspectConfig(checkpoint=str(tmp_path), text="abcdef", out=str(out))
    write_inspect_report(run, tmp_path, {"task": "toy", "step": 1}, config)
    html = out.read_text(encoding="utf-8")
    assert "<h2>Gradient flow through time</h2>" in html
    assert "per layer (rnn.l0, rnn.l0_reverse) against" in html
    assert "not recorded" not in html


def test_nothing_recorded_without_a_probe(monkeypatch):
    """Outside a recording the backward asks for a recorder once and gets None (the loop then
    tests a local None); the gradients are the same with and without a probe."""
    answers = []
    real = probe.recorder

    def counting(*args, **kwargs):
        answers.append(real(*args, **kwargs))
        return answers[-1]

    monkeypatch.setattr(probe, "recorder", counting)
    x, state, weights, ln, constants = _inputs("lstm", "all")

    def grads():
        leaves = _leaves([x], state, weights, ln)
        out, h_n, c_n = _run("lstm", leaves[0][0], leaves[1], leaves[2], leaves[3], constants)
        (out.sum() + h_n.sum()).backward()
        return [t.grad for group in leaves for t in group]

    plain = grads()
    assert answers == [None] and probe._active is None
    with probe.recording() as recording:
        recorded = grads()
    assert len(answers) == 2 and answers[1] is not None and len(recording.records) == 1
    assert all(torch.equal(a, b) for a, b in zip(plain, recorded))


def test_create_graph_records_nothing_as_the_plain_layers():
    """A differentiable backward (create_graph=True) runs the autograd reference loop, for the
    layers with the cell options as for the plain layers: neither records, nor does the
    backward of that backward (a loss linear in the output keeps it off the layer's own
    backward); an ordinary backward of the same layer does."""
    x = torch.randn(T, B, I, dtype=DOUBLE, requires_grad=True)
    weight = torch.randn(T, B, H, dtype=DOUBLE)
    for layer in (nr.RegularisedGRU(I, H, zoneout=0.2, dtype=DOUBLE),
                  rnnkit.LSTM(I, H, backend="reference", dtype=DOUBLE)):
        with probe.recording() as recording:
            (grad,) = torch.autograd.grad((layer(x)[0] * weight).sum(), x, create_graph=True)
            grad.pow(2).sum().backward()
        assert recording.records == [], type(layer).__name__
        with probe.recording() as recording:
            (layer(x)[0] * weight).sum().backward()
        assert len(recording.records) == 1, type(layer).__name__
