"""Gradient flow through time: vanishing at spectral radius 0.5, exploding at 1.5, the probe's
numbers equal autograd's ∂L/∂h_t (lengths, both directions), and the Trainer's recording."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import rnnkit
from reference_loop import elman_step, gru_step, lstm_step
from rnnkit.diagnostics import gradient_flow, recording_flow, recurrent_stats
from rnnkit.diagnostics.callback import GradientFlowCallback
from rnnkit.functional import probe
from rnnkit.train import StepOutput, TrainConfig, Trainer, seed_everything

STEPS = 30


def _scaled(matrix: torch.Tensor, radius: float) -> torch.Tensor:
    return matrix / torch.linalg.eigvals(matrix.double()).abs().max().float() * radius


def _last_step_loss(model, x):
    return model(x)[0][-1].sum()  # the loss sits at the last step only


def test_gradient_vanishes_at_spectral_radius_half():
    model = rnnkit.RNN(4, 16)  # tanh
    with torch.no_grad():
        model.weight_hh_l0.copy_(_scaled(torch.randn(16, 16), 0.5))
    flow = gradient_flow(model, torch.randn(STEPS, 3, 4), _last_step_loss)
    assert flow.recurrent["weight_hh_l0"]["spectral_radius"] == pytest.approx(0.5, rel=1e-4)
    norms = flow.layers["l0"].by_distance
    samples = norms[::5]  # every 5 steps further from the loss
    assert all(later < 0.5 * earlier for earlier, later in zip(samples, samples[1:])), samples
    assert norms[25] < 1e-5 * norms[0]


@pytest.mark.parametrize("radius, grows", [(1.5, True), (0.5, False)])
def test_relu_gradient_grows_above_radius_one(radius, grows):
    # Positive weights and inputs, no bias: every relu stays active, so the layer is linear and
    # the error is multiplied by W_hhᵀ at each step back, whose Perron root is the radius.
    model = rnnkit.RNN(4, 16, nonlinearity="relu")
    with torch.no_grad():
        model.weight_hh_l0.copy_(_scaled(torch.rand(16, 16), radius))
        model.weight_ih_l0.abs_()
        model.bias_ih_l0.zero_()
        model.bias_hh_l0.zero_()
    flow = gradient_flow(model, torch.rand(STEPS, 3, 4), _last_step_loss)
    samples = flow.layers["l0"].by_distance[::5]
    if grows:
        assert all(later > 5 * earlier for earlier, later in zip(samples, samples[1:])), samples
        assert samples[-1] > 1e3 * samples[0]
    else:
        assert samples[-1] < 1e-3 * samples[0]


def _autograd_norms(step, layer, x, lengths, reverse, hx_size, weight):
    """Mean ‖∂L/∂h_t‖ per position from a plain autograd loop, one sequence at a time, for the
    loss Σ_t ⟨weight_t, h_t⟩ (+ the final state) of one direction."""
    params = [p.detach().requires_grad_() for p in layer.all_weights[1 if reverse else 0]]
    total, count = torch.zeros(x.shape[0]), torch.zeros(x.shape[0])
    for b, length in enumerate(lengths.tolist()):
        state = tuple(torch.zeros(1, size) for size in hx_size)
        positions = range(length - 1, -1, -1) if reverse else range(length)
        states, loss = {}, 0.0
        for t in positions:
            state = step(x[t, b : b + 1], *state, *params)
            state[0].retain_grad()
            states[t] = state[0]
            loss = loss + (weight[t, b] * state[0]).sum()
        loss = loss + state[0].sum()  # the final state is an output too
        loss.backward()
        for t, h in states.items():
            total[t] += h.grad.norm()
            count[t] += 1
    return (total / count).tolist()


CELLS = {
    "gru": (rnnkit.GRU, lambda x, h, *p: gru_step(x, h, *p), 1),
    "lstm": (rnnkit.LSTM, lambda x, h, c, *p: lstm_step(x, h, c, *p, None), 2),
    "rnn": (rnnkit.RNN, lambda x, h, *p: elman_step(x, h, *p, "tanh"), 1),
}


@pytest.mark.parametrize("cell", list(CELLS))
def test_probe_equals_autograd_with_lengths_both_directions(cell):
    cls, step, states = CELLS[cell]
    layer = cls(3, 5, bidirectional=True)
    x = torch.randn(6, 4, 3)
    lengths = torch.tensor([4, 6, 2, 5])
    weight = torch.randn(6, 4, 2, 5)  # (T, B, D, H)

    def loss_fn(model, batch):
        output, final = model(batch, lengths=lengths)  # (T, B, 2·5)
        h_n = final[0] if isinstance(final, tuple) else final
        return (output * weight.flatten(2)).sum() + h_n.sum()

    flow = gradient_flow(layer, x, loss_fn)
    for direction, name in enumerate(("l0", "l0_reverse")):
        expected = _autograd_norms(step, layer, x, lengths, bool(direction), [5] * states,
                                   weight[:, :, direction])
        torch.testing.assert_close(torch.tensor(flow.layers[name].by_position),
                                   torch.tensor(expected), rtol=1e-4, atol=1e-6)
        # by distance: forward position L−1−d, reverse position d (checked on the longest row)
        assert len(flow.layers[name].by_distance) == 6


def test_leaves_grads_backend_and_probe_as_they_were():
    layer = rnnkit.LSTM(3, 4, num_layers=2, backend="auto")
    layer(torch.randn(5, 2, 3))[0].sum().backward()
    before = [p.grad.clone() for p in layer.parameters()]
    flow = gradient_flow(layer, torch.randn(5, 2, 3), lambda m, b: m(b)[0].pow(2).mean())
    assert list(flow.layers) == ["l0", "l1"] and flow.loss > 0
    assert set(flow.weight_grad_norms) == {n for n, _ in layer.named_parameters()}
    assert all(torch.equal(p.grad, g) for p, g in zip(layer.parameters(), before))
    assert layer.backend == "auto" and probe._active is None
    with recording_flow(layer), pytest.raises(RuntimeError, match="already recording"):
        with recording_flow(layer):
            pass
    assert probe._active is None


def test_loss_fn_must_give_a_scalar():
    with pytest.raises(TypeError, match="loss_fn: expected a scalar tensor"):
        gradient_flow(rnnkit.GRU(2, 3), torch.randn(4, 1, 2), lambda m, b: m(b)[0])


def test_recurrent_stats_per_gate():
    stats = recurrent_stats(nn.ModuleDict({"enc": rnnkit.GRU(2, 3), "dec": rnnkit.RNN(2, 3)}))
    assert set(stats["enc.weight_hh_l0"]) == {"sigma_max", "spectral_radius_r",
                                              "spectral_radius_z", "spectral_radius_n"}
    dec = stats["dec.weight_hh_l0"]
    assert 0 < dec["spectral_radius"] <= dec["sigma_max"] + 1e-9


def test_layers_with_cell_options_are_found():
    """--layer-norm/--zoneout/--recurrent-dropout build rnnkit.nn.regularised layers: their
    W_hh spectra (per gate, both directions) are measured, in the report's flow too, their steps
    are recorded (tests/test_regularised_flow.py checks the values), and inspect's top layer is
    one of them."""
    from rnnkit.diagnostics.inspect import top_layer
    from rnnkit.nn.regularised import RegularisedGRU, RegularisedLSTM

    lstm = RegularisedLSTM(2, 3, num_layers=2, bidirectional=True, layer_norm=True,
                           zoneout=0.1)
    model = nn.ModuleDict({"rnn": lstm, "dec": RegularisedGRU(2, 3, recurrent_dropout=0.2)})
    stats = recurrent_stats(model)
    assert set(stats) == {"rnn.weight_hh_l0", "rnn.weight_hh_l0_reverse", "rnn.weight_hh_l1",
                          "rnn.weight_hh_l1_reverse", "dec.weight_hh_l0"}
    weight = lstm.weight_hh_l1_reverse.detach().double()
    assert stats["rnn.weight_hh_l1_reverse"]["sigma_max"] == pytest.approx(
        float(torch.linalg.matrix_norm(weight, ord=2)), rel=1e-6)
    forget = weight[3:6]  # gate order i f g o
    assert stats["rnn.weight_hh_l1_reverse"]["spectral_radius_f"] == pytest.approx(
        float(torch.linalg.eigvals(forget).abs().max()), rel=1e-6)
    assert set(stats["dec.weight_hh_l0"]) == {"sigma_max", "spectral_radius_r",
                                              "spectral_radius_z", "spectral_radius_n"}
    flow = gradient_flow(lstm, torch.randn(5, 2, 2), _last_step_loss)
    assert set(flow.recurrent) == {"weight_hh_l0", "weight_hh_l0_reverse", "weight_hh_l1",
                                   "weight_hh_l1_reverse"}
    assert flow.weight_grad_norms["weight_hh_l0"] > 0
    assert list(flow.layers) == ["l0", "l0_reverse", "l1", "l1_reverse"]
    assert top_layer(model) is lstm


class SequenceTask:
    """Predict the sum of a random sequence from the last state of an Elman RNN."""

    name, monitor, monitor_mode = "seq", "valid_loss", "min"

    def __init__(self):
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(8, 12, 6, 2, generator=gen)  # 8 batches of (T, B, I)

    def train_batches(self, epoch, shard):
        return list(range(8))

    def _loss(self, model, index):
        output, _ = model["rnn"](self.x[index])
        return (model["head"](output[-1]).squeeze(1) - self.x[index].sum((0, 2))).pow(2).mean()

    def step(self, model, index):
        return StepOutput(self._loss(model, index))

    def evaluate(self, model):
        return {"valid_loss": float(self._loss(model, 0))}

    def checkpoint_files(self):
        return {"config.json": {}}


def _train(tmp_path, every):
    seed_everything(0)
    model = nn.ModuleDict({"rnn": rnnkit.RNN(2, 8, num_layers=2), "head": nn.Linear(8, 1)})
    config = TrainConfig(lr=1e-2, max_epochs=None, max_steps=6, eval_every=6, progress=False,
                         log_every=3, plot=False, tensorboard=False, diagnostics_every=every)
    callbacks = [GradientFlowCallback(every)] if every else []  # the runner adds it so
    Trainer(model, SequenceTask(), config, tmp_path, callbacks).fit()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    return model, [json.loads(line) for line in lines]


def test_trainer_records_every_n_steps_without_changing_training(tmp_path):
    plain, _ = _train(tmp_path / "plain", 0)
    model, records = _train(tmp_path / "diag", 2)
    diagnostics = [r for r in records if "diagnostics" in r]
    assert [r["step"] for r in diagnostics] == [2, 4, 6]
    record = diagnostics[-1]["diagnostics"]
    assert set(record["dh_norm"]) == {"rnn.l0", "rnn.l1"}
    assert len(record["dh_norm"]["rnn.l0"]) == 12
    assert "rnn.weight_hh_l1" in record["recurrent"] and "head.weight" in record["grad_norm"]
    for a, b in zip(plain.parameters(), model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert probe._active is None


def test_diagnostics_every_must_not_be_negative():
    with pytest.raises(ValueError, match="--diagnostics-every: must be >= 0"):
        TrainConfig(diagnostics_every=-1)
