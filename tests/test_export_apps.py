"""``rnnkit export`` of recommend, forecast (seq2seq and DeepAR), speech and music (piano roll,
RNN-NADE, ABC): each tiny run exported as TorchScript and ONNX, then the written files run on
batches of other sizes and lengths than the traced example and compared with the rnnkit model;
a layer holding weights ``torch.nn`` has no place for is refused clearly."""

from __future__ import annotations

import json

import pytest
import torch

import rnnkit
from deploy_runs import app_runs
from rnnkit.cli.main import main
from rnnkit.deploy import export as ex
from rnnkit.models.exportable import outputs_of, padded_example
from rnnkit.nn.exportable import PaddedRNN, to_torch

TOL = dict(rtol=1e-5, atol=1e-5)
RUNS = ["recommend", "forecast", "deepar", "speech", "music", "nade", "abc"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return app_runs(tmp_path_factory)


def _states(rnn, batch: int, generator) -> tuple:
    count = 2 if rnn.mode == "LSTM" else 1
    return tuple(torch.randn(rnn.num_layers, batch, rnn.hidden_size, generator=generator)
                 for _ in range(count))


def _new_inputs(name: str, loaded) -> dict[str, tuple]:
    """{graph: (inputs, the rnnkit model's outputs)} at another batch size and length."""
    g = torch.Generator().manual_seed(11)
    if name == "recommend":
        model = loaded.model
        inputs = padded_example(len(loaded.index), 0, [7, 1, 4, 2], seed=3)
        return {"scorer": (inputs, (model.score_all(*inputs),))}
    if name in ("forecast", "deepar"):
        model, config = loaded.model, loaded.config
        width = len(loaded.targets) + len(loaded.covariates)
        features = 4  # hour, weekday, day of month, day of year
        inputs = (torch.randn(3, config.input_length + 9, width, generator=g),
                  torch.randn(3, config.input_length + 9, features, generator=g),
                  torch.randn(3, config.horizon, features, generator=g))
        method = model.mean_path if name == "deepar" else model
        return {"forecaster": (inputs, (method(*inputs),))}
    if name == "speech":
        model = loaded.model
        frames = torch.randn(3, 61, loaded.config.feature_config().size, generator=g)
        lengths = torch.tensor([61, 9, 30])
        return {"acoustic": ((frames, lengths), outputs_of(model(frames, lengths)))}
    model = loaded["model"]
    rnn = model.rnn
    states = _states(rnn, 3, g)
    lstm = len(states) == 2
    if name == "abc":
        tokens = torch.randint(0, model.config.vocab_size, (5, 3), generator=g)
        return {"step": ((tokens, *states),
                         outputs_of(model(tokens, states if lstm else states[0])))}
    previous = torch.bernoulli(torch.full((3, 5, model.config.pitches), 0.3), generator=g)
    hidden = torch.randn(3, 5, rnn.hidden_size, generator=g)
    if name == "nade":
        head = ((hidden, previous), (model.head.logits(hidden, previous),))
    else:
        head = ((hidden,), (model.head.linear(hidden),))
    return {"step": ((previous, *states), outputs_of(rnn(previous, states if lstm
                                                         else states[0]))),
            "head": head}


def _export(runs, name, fmt, tmp_path, capsys):
    output = tmp_path / f"model.{'onnx' if fmt == 'onnx' else 'pt'}"
    assert main(["export", "--checkpoint", str(runs[name]), "--format", fmt, "--output",
                 str(output)]) == 0
    assert "largest difference from rnnkit" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "model.json").read_text())
    assert manifest["format"] == fmt and manifest["config"]["task"] == manifest["application"]
    for graph in manifest["graphs"]:
        assert max(graph["parity"].values()) <= 1e-5 and graph["notes"]
        assert "batch" in graph["dynamic_axes"][graph["inputs"][0]].values()
    _, loaded, _ = ex.open_application(runs[name], "cpu")
    return loaded, manifest


def _compare(got, expected) -> None:
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b.detach(), **TOL)


@pytest.mark.parametrize("name", RUNS)
def test_torchscript_round_trip(runs, name, tmp_path, capsys):
    loaded, manifest = _export(runs, name, "torchscript", tmp_path, capsys)
    files = {g["name"]: tmp_path / g["file"] for g in manifest["graphs"]}
    with torch.no_grad():
        cases = _new_inputs(name, loaded)
        assert set(cases) == set(files)
        for graph, (inputs, expected) in cases.items():
            _compare(outputs_of(torch.jit.load(str(files[graph]))(*inputs)), expected)


@pytest.mark.parametrize("name", RUNS)
def test_onnx_round_trip(runs, name, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (test extra)")
    loaded, manifest = _export(runs, name, "onnx", tmp_path, capsys)
    graphs = {g["name"]: g for g in manifest["graphs"]}
    with torch.no_grad():
        for graph, (inputs, expected) in _new_inputs(name, loaded).items():
            session = ex.onnx_session(ort, tmp_path / graphs[graph]["file"])
            wanted = {i.name for i in session.get_inputs()}
            feed = {n: t.numpy() for n, t in zip(graphs[graph]["inputs"], inputs, strict=True)
                    if n in wanted}
            got = session.run(graphs[graph]["outputs"], feed)
            _compare([torch.from_numpy(a) for a in got], expected)


def test_nade_sampling_walk_through_the_exported_head(runs, tmp_path, capsys):
    """Driving the exported RNN-NADE head pitch by pitch (as the notes say) gives the logits
    the rnnkit head's own sampler computes for the same chosen pitches."""
    loaded, manifest = _export(runs, "nade", "torchscript", tmp_path, capsys)
    head = torch.jit.load(str(tmp_path / "model.head.pt"))
    nade = loaded["model"].head
    g = torch.Generator().manual_seed(5)
    state = torch.randn(2, loaded["model"].rnn.hidden_size, generator=g)
    chosen = torch.zeros(2, 1, nade.weight_in.shape[0])
    with torch.no_grad():
        activation = nade.to_hidden(state)
        bias = nade.to_visible(state)
        for k in range(chosen.shape[2]):
            logits = head(state.unsqueeze(1), chosen)[:, 0, k]
            by_hand = bias[:, k] + torch.sigmoid(activation) @ nade.weight_out[k]
            torch.testing.assert_close(logits, by_hand, **TOL)
            chosen[:, 0, k] = (torch.sigmoid(logits) > torch.rand(2, generator=g)).float()
            activation = activation + chosen[:, 0, k:k + 1] * nade.weight_in[k]


def test_a_layer_with_extra_weights_is_refused(runs, monkeypatch, tmp_path, capsys):
    layer = rnnkit.nn.GRU(3, 4)
    layer.register_parameter("ln_weight", torch.nn.Parameter(torch.ones(4)))
    for make in (to_torch, PaddedRNN):
        with pytest.raises(ValueError, match="ln_weight.*cannot be exported"):
            make(layer)
    from rnnkit.nn.regularised import RegularisedLSTM

    for options in ({"zoneout": 0.1}, {"layer_norm": True}):  # zoneout mixes states at eval
        with pytest.raises(ValueError, match="cannot be exported"):
            to_torch(RegularisedLSTM(3, 4, **options))
    to_torch(RegularisedLSTM(3, 4, recurrent_dropout=0.2))  # dropout only: the same at eval
    from rnnkit.apps import registry

    app_cls = type(registry.get("recommend"))
    original = app_cls.export_graphs

    def with_norm(self, loaded):
        loaded.model.rnn.register_parameter("ln_weight", torch.nn.Parameter(torch.ones(4)))
        return original(self, loaded)

    monkeypatch.setattr(app_cls, "export_graphs", with_norm)
    assert main(["export", "--checkpoint", str(runs["recommend"]), "--format", "torchscript",
                 "--output", str(tmp_path / "m.pt")]) == 2
    assert "cannot be exported" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
