"""``rnnkit export``: every application's graphs written as TorchScript and ONNX, then run on
batches of other sizes and lengths than the traced example and compared with the rnnkit model;
the layer mapping against ``lengths=``; the parity check failing; clear errors."""

from __future__ import annotations

import json
import sys

import pytest
import torch

import rnnkit
from deploy_runs import trained_runs
from rnnkit.apps.base import Application
from rnnkit.cli.main import main
from rnnkit.deploy import export as ex
from rnnkit.errors import RnnkitError
from rnnkit.models.classifier import Classifier, ClassifierConfig
from rnnkit.models.exportable import (
    ClassifierGraph,
    DecoderStep,
    EncoderGraph,
    outputs_of,
    padded_example,
)
from rnnkit.models.seq2seq import Memory, Seq2Seq, Seq2SeqConfig
from rnnkit.nn.exportable import PaddedRNN, to_torch

TOL = dict(rtol=1e-5, atol=1e-5)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return trained_runs(tmp_path_factory)


# ------------------------------------------------------------------ the layer mapping


@pytest.mark.parametrize("cell", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_padded_rnn_matches_lengths_on_new_shapes(cell, bidirectional):
    layer = getattr(rnnkit.nn, cell)(5, 7, num_layers=2, batch_first=True,
                                     bidirectional=bidirectional).eval()
    traced = ex.trace(PaddedRNN(layer), (torch.randn(3, 6, 5), torch.tensor([6, 2, 4])))
    x, lengths = torch.randn(4, 9, 5), torch.tensor([9, 1, 3, 5])  # other B and T
    with torch.no_grad():
        expected_out, expected_final = layer(x, lengths=lengths)
        out, final = traced(x, lengths)
    torch.testing.assert_close(out, expected_out, **TOL)
    for got, want in zip(outputs_of(final), outputs_of(expected_final), strict=True):
        torch.testing.assert_close(got, want, **TOL)
    assert float(out[1, 1:].abs().max()) == 0.0  # padding stays zero


def test_to_torch_is_the_same_layer():
    layer = rnnkit.nn.GRU(4, 6, num_layers=2).eval()
    twin = to_torch(layer)
    assert isinstance(twin, torch.nn.GRU)
    x = torch.randn(5, 2, 4)
    torch.testing.assert_close(twin(x)[0], layer(x)[0], **TOL)


@pytest.mark.parametrize("pooling", ["mean", "max", "attention"])
def test_classifier_poolings_trace_to_the_same_probabilities(pooling):
    model = Classifier(ClassifierConfig(30, 3, embedding_size=8, hidden_size=8, num_layers=1,
                                        pooling=pooling, char_vocab_size=12, char_dim=4,
                                        char_hidden=4)).eval()
    traced = ex.trace(ClassifierGraph(model).eval(), padded_example(30, 0, [5, 3], 12, 0))
    inputs = padded_example(30, 0, [2, 8, 1, 4], 12, 0, width=6, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(traced(*inputs), torch.softmax(model(*inputs), -1), **TOL)


def test_lstm_encoder_and_step_without_attention():
    model = Seq2Seq(Seq2SeqConfig(20, 25, cell="lstm", embedding_size=8, hidden_size=8,
                                  num_layers=2, attention="none")).eval()
    src, lengths = padded_example(20, 0, [6, 2, 4])
    encoder = ex.trace(EncoderGraph(model).eval(), (src, lengths))
    src, lengths = padded_example(20, 0, [3, 9], seed=2)
    with torch.no_grad():
        memory, (h, c) = model.encode(src, lengths)
        got = encoder(src, lengths)
        for a, b in zip(got, (memory.outputs, h, c), strict=True):
            torch.testing.assert_close(a, b, **TOL)
        step = DecoderStep(model).eval()
        token = torch.tensor([1, 1])
        logits, state, _ = model.decode(token[:, None], (h, c), Memory(memory.outputs, None,
                                                                        memory.mask))
        out = step(token, h, c)
        torch.testing.assert_close(out[0], logits[:, 0], **TOL)
        torch.testing.assert_close(out[2], state[1], **TOL)


# ------------------------------------------------------------------ round trips


def _new_inputs(app: str, loaded):
    """Inputs of another batch size and length than the traced example, and the rnnkit
    model's outputs on them, per graph: {graph: (inputs, expected outputs)}."""
    if app == "lm":
        model, cfg = loaded.model, loaded.model.config
        tokens = torch.randint(0, cfg.vocab_size, (7, 3))
        state = [torch.randn(cfg.num_layers, 3, cfg.hidden_size) for _ in range(2)]
        return {"step": ((tokens, *state), outputs_of(model(tokens, tuple(state))))}
    if app == "classify":
        model, vocab, chars = loaded.members[0]
        inputs = padded_example(len(vocab), vocab.pad_id, [2, 9, 1], len(chars.vocab),
                                chars.pad_id, width=6, seed=5)
        return {"classifier": (inputs, (torch.softmax(model(*inputs), -1),))}
    if app == "tag":
        vocabs = loaded.vocabs
        inputs = padded_example(len(vocabs.words), vocabs.words.pad_id, [4, 8, 1, 2],
                                len(vocabs.chars), vocabs.chars.pad_id, width=5, seed=6)
        return {"tagger": (inputs, (loaded.model(*inputs),))}
    model = loaded.model
    src, lengths = padded_example(model.config.src_vocab_size, model.config.pad_id, [7, 2, 4],
                                  seed=7)
    memory, h = model.encode(src, lengths)
    token = torch.tensor([5, 1, 3])
    logits, h_out, weights = model.decode(token[:, None], h, memory)
    return {"encoder": ((src, lengths), (memory.outputs, memory.keys, h)),
            "decoder_step": ((token, h, memory.outputs, memory.keys, lengths),
                             (logits[:, 0], h_out, weights[:, 0]))}


APPS = ["lm", "classify", "tag", "translate"]


def _export(runs, app, fmt, tmp_path, capsys):
    output = tmp_path / f"model.{'onnx' if fmt == 'onnx' else 'pt'}"
    assert main(["export", "--checkpoint", str(runs[app]), "--format", fmt, "--output",
                 str(output)]) == 0
    printed = capsys.readouterr().out
    assert "largest difference from rnnkit" in printed
    manifest = json.loads((tmp_path / "model.json").read_text())
    assert manifest["application"] == app and manifest["format"] == fmt
    assert manifest["files"] and manifest["config"]["task"] == app  # vocabularies beside
    _, loaded, _ = ex.open_application(runs[app], "cpu")
    files = {g["name"]: tmp_path / g["file"] for g in manifest["graphs"]}
    for graph in manifest["graphs"]:
        assert max(graph["parity"].values()) <= 1e-5
    return loaded, files, manifest


@pytest.mark.parametrize("app", APPS)
def test_torchscript_round_trip(runs, app, tmp_path, capsys):
    loaded, files, _ = _export(runs, app, "torchscript", tmp_path, capsys)
    with torch.no_grad():
        for name, (inputs, expected) in _new_inputs(app, loaded).items():
            got = outputs_of(torch.jit.load(str(files[name]))(*inputs))
            for a, b in zip(got, expected, strict=True):
                torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("app", APPS)
def test_onnx_round_trip(runs, app, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (test extra)")
    loaded, files, manifest = _export(runs, app, "onnx", tmp_path, capsys)
    names = {g["name"]: g for g in manifest["graphs"]}
    with torch.no_grad():
        for name, (inputs, expected) in _new_inputs(app, loaded).items():
            session = ex.onnx_session(ort, files[name])
            feed = {n: t.numpy() for n, t in zip(names[name]["inputs"], inputs, strict=True)}
            got = session.run(names[name]["outputs"], feed)
            for a, b in zip(got, expected, strict=True):
                torch.testing.assert_close(torch.from_numpy(a), b, **TOL)


# ------------------------------------------------------------------ failures


def test_parity_beyond_tolerance_fails_and_leaves_nothing(runs, tmp_path, capsys, monkeypatch):
    from rnnkit.apps import registry

    app_cls = type(registry.get("classify"))
    original = app_cls.export_graphs

    def skewed(self, loaded):  # the "rnnkit model" now differs by 1e-3 from the graph
        graphs = original(self, loaded)
        for graph in graphs:
            graph.reference = lambda *a, _r=graph.reference: tuple(
                t + 1e-3 for t in outputs_of(_r(*a)))
        return graphs

    monkeypatch.setattr(app_cls, "export_graphs", skewed)
    assert main(["export", "--checkpoint", str(runs["classify"]), "--format", "torchscript",
                 "--output", str(tmp_path / "m.pt")]) == 2
    assert "beyond the tolerance 1e-05" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_application_without_export_and_bad_output(runs, tmp_path, capsys):
    with pytest.raises(RnnkitError, match="the echo application has no fixed-graph export"):
        type("Echo", (Application,), {"name": "echo"})().export_graphs(None)
    assert main(["export", "--checkpoint", str(runs["lm"]), "--format", "torchscript",
                 "--output", str(tmp_path)]) == 2
    assert "expected a file name, got a directory" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(tmp_path / "none"), "--format", "onnx",
                 "--output", str(tmp_path / "m.onnx")]) == 2
    assert capsys.readouterr().err.startswith("rnnkit: error:")


def test_missing_onnx_names_the_extra(runs, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert main(["export", "--checkpoint", str(runs["lm"]), "--format", "onnx", "--output",
                 str(tmp_path / "m.onnx")]) == 2
    assert "pip install 'rnnkit[export]'" in capsys.readouterr().err
