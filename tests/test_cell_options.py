"""The cell options: layer-normalised LSTM/GRU, recurrent (variational) dropout, zoneout.

Hand-written backward against gradcheck (float64) and the autograd reference loops; the layers
against rnnkit's plain layers where the options are off; lengths=, masks, and training vs
evaluation as the papers say.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

import rnnkit
from rnnkit.functional import regularised as R
from rnnkit.nn import regularised as nr

T, B, I, H = 3, 3, 4, 3
OPTIONS = ("plain", "mask", "zoneout", "lengths", "all")


pytestmark = pytest.mark.usefixtures("one_thread")


def _constants(option: str, dtype=torch.float64, steps=T, batch=B, size=H, seed=0):
    """(active, keep_h, keep_c, mask) for one combination of options."""
    gen = torch.Generator().manual_seed(seed)
    active = keep_h = keep_c = mask = None
    if option in ("lengths", "all"):
        lengths = torch.tensor([(steps, max(1, steps // 2), 1)[b % 3] for b in range(batch)])
        active = (torch.arange(steps)[:, None] < lengths[None]).to(dtype).unsqueeze(-1)
    if option in ("zoneout", "all"):
        keep_h = torch.bernoulli(torch.full((steps, batch, size), 0.3), generator=gen).to(dtype)
        keep_c = torch.bernoulli(torch.full((steps, batch, size), 0.3), generator=gen).to(dtype)
    if option in ("mask", "all"):
        mask = (torch.bernoulli(torch.full((batch, size), 0.7), generator=gen) / 0.7).to(dtype)
    return active, keep_h, keep_c, mask


def _params(cell: str, layer_norm: bool, dtype=torch.float64, size=H, inputs=I, seed=1):
    gen = torch.Generator().manual_seed(seed)
    blocks = 4 if cell == "lstm" else 3

    def rand(*shape):
        return (torch.randn(*shape, generator=gen) * 0.5).to(dtype).requires_grad_()

    weights = [rand(blocks * size, inputs), rand(blocks * size, size), rand(blocks * size),
               rand(blocks * size)]
    ln = []
    if layer_norm:
        ln = [rand(blocks * size) + 1, rand(blocks * size) + 1]
        ln = [g.detach().requires_grad_() for g in ln]
        if cell == "lstm":
            ln += [(rand(size) + 1).detach().requires_grad_(), rand(size)]
    return weights, ln


def _run(cell, weights, ln, constants, x, state):
    active, keep_h, keep_c, mask = constants
    if cell == "lstm":
        return R.lstm_options(x, *state, *weights, tuple(ln) if ln else None, active, keep_h,
                              keep_c, mask)
    return R.gru_options(x, *state, *weights, tuple(ln) if ln else None, active, keep_h, mask)


def _reference(cell, weights, ln, constants, x, state):
    active, keep_h, keep_c, mask = constants
    if cell == "lstm":
        ln = list(ln) if ln else [None] * 4
        return R.reference_lstm(x, *state, *weights, *ln, active, keep_h, keep_c, mask)
    ln = list(ln) if ln else [None] * 2
    return R.reference_gru(x, *state, *weights, *ln, active, keep_h, mask)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("layer_norm, option", [
    (False, "plain"), (False, "all"), *((True, option) for option in OPTIONS)])
def test_gradcheck_float64(cell, layer_norm, option):
    """The hand-written BPTT against finite differences, every input and parameter: each
    option alone (with layer norm), all together, and neither."""
    weights, ln = _params(cell, layer_norm)
    constants = _constants(option)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    state = [torch.randn(B, H, dtype=torch.float64, requires_grad=True)
             for _ in range(2 if cell == "lstm" else 1)]
    count = len(state)

    def fn(x, *rest):
        return _run(cell, rest[count: count + 4], rest[count + 4:], constants, x, rest[:count])

    assert gradcheck(fn, (x, *state, *weights, *ln), eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gradgradcheck_create_graph(cell):  # the slowest test here (~1 s of CPU each)
    """create_graph=True runs the reference loop under autograd: second derivatives hold."""
    weights, ln = _params(cell, True, size=2, inputs=2)
    constants = _constants("all", steps=2, batch=2, size=2)
    x = torch.randn(2, 2, 2, dtype=torch.float64, requires_grad=True)
    state = [torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
             for _ in range(2 if cell == "lstm" else 1)]
    count = len(state)

    def fn(x, *rest):
        return _run(cell, rest[count: count + 4], rest[count + 4:], constants, x, rest[:count])

    assert gradgradcheck(fn, (x, *state, *weights, *ln), eps=1e-6, atol=1e-5, rtol=1e-3)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("layer_norm", [False, True])
def test_parity_with_autograd_reference(cell, layer_norm):
    """float32, larger sizes, all options at once: outputs within 1e-5, gradients within 1e-4
    (relative to each gradient's largest entry) of autograd through the reference loop."""
    steps, batch, size, inputs = 12, 5, 16, 7
    weights, ln = _params(cell, layer_norm, torch.float32, size, inputs)
    constants = _constants("all", torch.float32, steps, batch, size)
    x = torch.randn(steps, batch, inputs, requires_grad=True)
    state = [torch.randn(batch, size, requires_grad=True)
             for _ in range(2 if cell == "lstm" else 1)]
    leaves = [x, *state, *weights, *ln]
    got = _run(cell, weights, ln, constants, x, state)
    want = _reference(cell, weights, ln, constants, x, state)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    probes = [torch.randn_like(o) for o in got]
    grads = torch.autograd.grad(got, leaves, probes)
    ref_grads = torch.autograd.grad(want, leaves, probes)
    for a, b in zip(grads, ref_grads):
        scale = b.abs().max().item() + 1e-12
        assert (a - b).abs().max().item() <= 1e-4 * scale


@pytest.mark.parametrize("cls, plain", [(nr.RegularisedLSTM, rnnkit.LSTM),
                                        (nr.RegularisedGRU, rnnkit.GRU)])
def test_options_off_equals_plain_layer(cls, plain):
    """Without options: torch.nn's parameter names and rnnkit's layer's results (2 layers,
    bidirectional, batch_first, lengths), gradients included."""
    torch.manual_seed(0)
    layer = cls(5, 7, num_layers=2, bidirectional=True, batch_first=True)
    twin = plain(5, 7, num_layers=2, bidirectional=True, batch_first=True)
    twin.load_state_dict(layer.state_dict())
    x = torch.randn(3, 6, 5)
    out, final = layer(x, lengths=[6, 3, 1])
    out2, final2 = twin(x, lengths=[6, 3, 1])
    torch.testing.assert_close(out, out2, atol=1e-6, rtol=1e-5)
    for a, b in zip(final if isinstance(final, tuple) else (final,),
                    final2 if isinstance(final2, tuple) else (final2,)):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    out.square().sum().backward()
    out2.square().sum().backward()
    for (name, p), q in zip(layer.named_parameters(), twin.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("cls", [nr.RegularisedLSTM, nr.RegularisedGRU])
def test_lengths_semantics(cls):
    """Padded steps leave the state untouched and output zero; each row of a padded batch gives
    what the sequence gives alone (eval, so zoneout is its deterministic expectation), both
    directions."""
    torch.manual_seed(0)
    layer = cls(4, 6, num_layers=2, bidirectional=True, layer_norm=True, zoneout=0.3,
                recurrent_dropout=0.2).eval()
    x = torch.randn(5, 3, 4)
    lengths = [5, 2, 3]
    out, final = layer(x, lengths=lengths)
    finals = final if isinstance(final, tuple) else (final,)
    for b, length in enumerate(lengths):
        assert torch.all(out[length:, b] == 0)
        alone, alone_final = layer(x[:length, b: b + 1])
        torch.testing.assert_close(out[:length, b: b + 1], alone, atol=1e-6, rtol=1e-5)
        alone_finals = alone_final if isinstance(alone_final, tuple) else (alone_final,)
        for s, s_alone in zip(finals, alone_finals):
            torch.testing.assert_close(s[:, b: b + 1], s_alone, atol=1e-6, rtol=1e-5)


def test_padded_steps_keep_state_in_training():
    """With zoneout and recurrent dropout in training too: a row that ended keeps its final
    state, whatever the padding holds."""
    torch.manual_seed(0)
    layer = nr.RegularisedLSTM(3, 5, zoneout=0.4, recurrent_dropout=0.3, layer_norm=True)
    x = torch.randn(6, 2, 3)
    torch.manual_seed(1)
    out, (h, c) = layer(x, lengths=[6, 2])
    x2 = x.clone()
    x2[2:, 1] = 100.0  # different padding
    torch.manual_seed(1)
    out2, (h2, c2) = layer(x2, lengths=[6, 2])
    torch.testing.assert_close(h, h2)
    torch.testing.assert_close(c, c2)
    assert torch.all(out[2:, 1] == 0)


class _Spy:
    """Wraps a functional entry point to record the masks a layer hands it."""

    def __init__(self, monkeypatch, name):
        self.calls = []
        real = getattr(nr, name)

        def spy(*args, **kwargs):  # reverse= is a keyword
            self.calls.append(args)
            return real(*args, **kwargs)

        monkeypatch.setattr(nr, name, spy)


def test_recurrent_dropout_mask_per_sequence(monkeypatch):
    """Gal & Ghahramani: one (B, H) mask of 0 and 1/(1-p) per sequence (the layer's output is the
    reference loop's with that one mask at every step), rows differ, a new batch draws anew,
    each layer its own; no mask in evaluation (= the plain LSTM)."""
    spy = _Spy(monkeypatch, "lstm_options")
    torch.manual_seed(0)
    p = 0.5
    layer = nr.RegularisedLSTM(4, 64, num_layers=2, recurrent_dropout=p)
    x = torch.randn(7, 8, 4)
    out, _ = layer(x)
    masks = [call[-1] for call in spy.calls]
    assert len(masks) == 2 and all(m.shape == (8, 64) for m in masks)
    for m in masks:
        assert set(m.unique().tolist()) <= {0.0, 1 / (1 - p)}
        assert abs((m == 0).float().mean().item() - p) < 0.1
        assert len({tuple(row.tolist()) for row in m}) == 8  # different across sequences
    assert not torch.equal(masks[0], masks[1])  # each layer its own
    # the output is the reference with the one mask at every step
    h0 = x.new_zeros(8, 64)
    ref, _, _ = R.reference_lstm(x, h0, h0, layer.weight_ih_l0, layer.weight_hh_l0,
                                 layer.bias_ih_l0, layer.bias_hh_l0, None, None, None, None,
                                 None, None, None, masks[0])
    ref2, _, _ = R.reference_lstm(ref, h0, h0, layer.weight_ih_l1, layer.weight_hh_l1,
                                  layer.bias_ih_l1, layer.bias_hh_l1, None, None, None, None,
                                  None, None, None, masks[1])
    torch.testing.assert_close(out, ref2, atol=1e-5, rtol=1e-5)
    layer(x)
    assert not torch.equal(spy.calls[2][-1], masks[0])  # a new forward draws new masks
    # evaluation: no mask, the plain LSTM's result
    layer.eval()
    plain = rnnkit.LSTM(4, 64, num_layers=2)
    plain.load_state_dict(layer.state_dict())
    torch.testing.assert_close(layer(x)[0], plain(x)[0], atol=1e-6, rtol=1e-5)
    assert spy.calls[-1][-1] is None
    layer.train()
    assert (layer(x)[0] - plain(x)[0]).abs().max() > 1e-3


@pytest.mark.parametrize("cls", [nr.RegularisedLSTM, nr.RegularisedGRU])
def test_zoneout_training_keeps_units_with_probability_p(cls):
    """Krueger et al.: in training each unit of h keeps its previous value exactly with
    probability p, a fresh draw every step (the kept units differ between steps)."""
    torch.manual_seed(0)
    p = 0.3
    layer = cls(4, 200, zoneout=p)
    x = torch.randn(6, 10, 4)
    out, _ = layer(x)
    kept = out[1:] == out[:-1]  # (T-1, B, H): unit kept its previous value
    assert abs(kept.float().mean().item() - p) < 0.03
    assert (kept[0] != kept[1]).float().mean() > 0.2  # a new mask each step
    assert (kept[:, 0] != kept[:, 1]).float().mean() > 0.2  # and each sequence


def test_zoneout_lstm_cell_state_and_eval_expectation():
    """LSTM zoneout acts on c too; in evaluation h_t = p h_{t-1} + (1-p) h̃_t and
    c_t = p c_{t-1} + (1-p) c̃_t, with (h̃, c̃) the plain LSTM's step from the same state."""
    torch.manual_seed(0)
    p = 0.25
    layer = nr.RegularisedLSTM(4, 300, zoneout=p)
    plain = rnnkit.LSTM(4, 300)
    plain.load_state_dict(layer.state_dict())
    x = torch.randn(1, 5, 4)
    h0, c0 = torch.randn(1, 5, 300), torch.randn(1, 5, 300)
    _, (h, c) = layer(x, (h0, c0))  # training
    assert abs((c == c0).float().mean().item() - p) < 0.03
    assert abs((h == h0).float().mean().item() - p) < 0.03
    layer.eval()
    _, (h, c) = layer(x, (h0, c0))
    _, (h_new, c_new) = plain(x, (h0, c0))
    torch.testing.assert_close(h, p * h0 + (1 - p) * h_new, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(c, p * c0 + (1 - p) * c_new, atol=1e-6, rtol=1e-5)


def test_zoneout_gru_eval_expectation():
    torch.manual_seed(0)
    p = 0.4
    layer = nr.RegularisedGRU(3, 8, zoneout=p).eval()
    plain = rnnkit.GRU(3, 8)
    plain.load_state_dict(layer.state_dict())
    x, h0 = torch.randn(1, 4, 3), torch.randn(1, 4, 8)
    _, h = layer(x, h0)
    _, h_new = plain(x, h0)
    torch.testing.assert_close(h, p * h0 + (1 - p) * h_new, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("cls", [nr.LayerNormLSTM, nr.LayerNormGRU])
def test_layer_norm_is_per_gate(cls):
    """Per-gate normalisation: scaling one gate's rows of W_ih (or W_hh) by a positive factor
    leaves the output unchanged (a whole-vector LN would not be), and layer norm changes the
    result compared with the plain cell."""
    torch.manual_seed(0)
    layer = cls(4, 16).double().eval()
    x = torch.randn(5, 2, 4, dtype=torch.float64)
    h0 = torch.randn(1, 2, 16, dtype=torch.float64)
    state = (h0, torch.randn_like(h0)) if isinstance(layer, nr.RegularisedLSTM) else h0
    before, _ = layer(x, state)
    with torch.no_grad():
        layer.weight_ih_l0[16:32] *= 7.0  # the second gate block
        layer.weight_hh_l0[:16] *= 3.0  # the first
    after, _ = layer(x, state)
    # equal up to LN's ε = 1e-5 against the per-gate variances
    torch.testing.assert_close(before, after, atol=2e-4, rtol=0)
    plain_cls = nr.RegularisedLSTM if isinstance(layer, nr.RegularisedLSTM) else nr.RegularisedGRU
    plain = plain_cls(4, 16).double().eval()
    plain.load_state_dict(layer.state_dict(), strict=False)
    assert (plain(x, state)[0] - after).abs().max() > 1e-3


def test_layer_norm_parameters_and_state_dict():
    layer = nr.LayerNormLSTM(4, 6, num_layers=2, bidirectional=True)
    names = dict(layer.named_parameters())
    assert names["ln_ih_weight_l1_reverse"].shape == (24,)
    assert names["ln_c_bias_l0"].shape == (6,)
    assert torch.all(names["ln_hh_weight_l0"] == 1) and torch.all(names["ln_c_bias_l1"] == 0)
    gru = nr.LayerNormGRU(4, 6)
    assert set(dict(gru.named_parameters())) == {
        "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "ln_ih_weight_l0",
        "ln_hh_weight_l0"}
    # without layer norm the parameters are torch.nn's
    assert set(dict(nr.RegularisedLSTM(4, 6, zoneout=0.1).named_parameters())) == set(
        dict(torch.nn.LSTM(4, 6).named_parameters()))


def test_batch_first_unbatched_and_gradients_flow():
    torch.manual_seed(0)
    layer = nr.RegularisedGRU(3, 5, batch_first=True, layer_norm=True, zoneout=0.1,
                              recurrent_dropout=0.1)
    x = torch.randn(2, 4, 3, requires_grad=True)
    out, h = layer(x, lengths=torch.tensor([4, 2]))
    assert out.shape == (2, 4, 5) and h.shape == (1, 2, 5)
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in layer.parameters())
    single, h1 = layer.eval()(torch.randn(4, 3))
    assert single.shape == (4, 5) and h1.shape == (1, 5)


@pytest.mark.parametrize("kwargs, name, error", [
    ({"layer_norm": "yes"}, "layer_norm", TypeError),
    ({"layer_norm": 1}, "layer_norm", TypeError),
    ({"recurrent_dropout": 1.0}, "recurrent_dropout", ValueError),
    ({"recurrent_dropout": -0.1}, "recurrent_dropout", ValueError),
    ({"recurrent_dropout": "0.2"}, "recurrent_dropout", TypeError),
    ({"zoneout": 1}, "zoneout", ValueError),
    ({"zoneout": math.nan}, "zoneout", ValueError),
    ({"zoneout": True}, "zoneout", TypeError),
    ({"dropout": 2.0}, "dropout", ValueError),
])
def test_bad_options_name_the_argument(kwargs, name, error):
    for cls in (nr.RegularisedLSTM, nr.RegularisedGRU):
        with pytest.raises(error, match=f"^{name}:"):
            cls(3, 4, **kwargs)


def test_packed_sequence_refused_with_the_way_out():
    layer = nr.RegularisedLSTM(3, 4)
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.randn(3, 2, 3), [3, 2])
    with pytest.raises(TypeError, match="^input: .*lengths="):
        layer(packed)
    with pytest.raises(ValueError, match="^input: expected last dimension"):
        layer(torch.randn(3, 2, 5))
    with pytest.raises(ValueError, match="^lengths:"):
        layer(torch.randn(3, 2, 3), lengths=[4, 1])


# ---------------------------------------------------------------- the models' one factory


def test_factory_picks_the_layer_and_old_configs_mean_off():
    from types import SimpleNamespace

    from rnnkit.models._config import recurrent_stack

    old = SimpleNamespace(cell="lstm", hidden_size=6, num_layers=2, dropout=0.1)  # no new keys
    assert type(recurrent_stack(old, 4)) is rnnkit.LSTM
    new = SimpleNamespace(cell="gru", hidden_size=6, num_layers=2, dropout=0.1, layer_norm=True,
                          recurrent_dropout=0.2, zoneout=0.1)
    layer = recurrent_stack(new, 4, bidirectional=True, batch_first=False)
    assert type(layer) is nr.RegularisedGRU
    assert (layer.layer_norm, layer.recurrent_dropout, layer.zoneout) == (True, 0.2, 0.1)
    assert layer.bidirectional and not layer.batch_first and layer.dropout == 0.1
    relu = SimpleNamespace(cell="rnn_relu", hidden_size=6, num_layers=1, dropout=0.0,
                           layer_norm=False, recurrent_dropout=0.0, zoneout=0.0)
    assert recurrent_stack(relu, 4).nonlinearity == "relu"


def test_model_configs_take_the_options_and_refuse_them_by_name():
    from rnnkit.models.classifier import ClassifierConfig
    from rnnkit.models.lm import LanguageModel, LMConfig
    from rnnkit.models.tagger import Tagger, TaggerConfig

    with pytest.raises(ValueError, match="^zoneout: only with cell lstm or gru, got 'rnn'"):
        ClassifierConfig(vocab_size=5, num_classes=2, cell="rnn", zoneout=0.1)
    with pytest.raises(ValueError, match="^--layer-norm: only with --cell lstm or gru"):
        LMConfig(vocab_size=5, cell="rnn_tanh", layer_norm=True)
    with pytest.raises(ValueError, match=r"^--recurrent-dropout: expected a value in \[0, 1\)"):
        LMConfig(vocab_size=5, recurrent_dropout=1.0)
    # a config.json written before the options: they are off, the plain layer
    saved = {"vocab_size": 5, "cell": "lstm", "embedding_size": 4, "hidden_size": 6,
             "num_layers": 1, "dropout": 0.0, "tie_weights": False}
    assert type(LanguageModel(LMConfig(**saved)).rnn) is rnnkit.LSTM
    lm = LanguageModel(LMConfig(**saved, layer_norm=True, zoneout=0.1))
    assert type(lm.rnn) is nr.RegularisedLSTM and lm.rnn.layer_norm
    logits, _ = lm(torch.randint(0, 5, (7, 2)))
    assert logits.shape == (7, 2, 5)
    tagger = Tagger(TaggerConfig(vocab_size=6, num_tags=3, embedding_size=4, hidden_size=5,
                                 layer_norm=True, recurrent_dropout=0.1))
    assert type(tagger.rnn) is nr.RegularisedLSTM and tagger.rnn.bidirectional
    scores = tagger(torch.randint(1, 6, (2, 4)), torch.tensor([4, 2]))
    assert scores.shape == (2, 4, 3)


def test_cli_config_refuses_bad_cell_options(tmp_path, capsys):
    """One line naming the flag, exit status 2, no run directory."""
    from rnnkit.cli.main import main

    text = tmp_path / "t.txt"
    text.write_text("hello world\n" * 20, encoding="utf-8")
    for flags, message in ((["--cell", "rnn_tanh", "--zoneout", "0.1"],
                            "--zoneout: only with --cell lstm or gru"),
                           (["--zoneout", "1.5"], "--zoneout: expected a value in [0, 1)")):
        code = main(["lm", "train", "--train", str(text), "--out", str(tmp_path / "run"),
                     *flags])
        err = capsys.readouterr().err
        assert code == 2 and message in err and "Traceback" not in err
        assert not (tmp_path / "run").exists()


def test_every_model_builds_and_trains_with_the_options():
    """Each model's recurrent stack comes from the one factory: with the three options on it is
    the options layer, and a forward and backward run."""
    from rnnkit.models.forecaster import DeepAR, ForecastModelConfig, Seq2SeqForecaster
    from rnnkit.models.music import PianoRollConfig, PianoRollRNN
    from rnnkit.models.recommender import Recommender, RecommenderConfig
    from rnnkit.models.seq2seq import Seq2Seq, Seq2SeqConfig
    from rnnkit.models.speech import SpeechModelConfig, SpeechRecognizer

    torch.manual_seed(0)
    on = {"layer_norm": True, "recurrent_dropout": 0.1, "zoneout": 0.1}
    forecast = ForecastModelConfig(cell="gru", hidden_size=8, **on)
    deepar, seq2seq = DeepAR(2, 4, forecast), Seq2SeqForecaster(2, 1, 4, 5, forecast)
    runs = [
        (seq2seq.encoder, lambda: seq2seq(torch.randn(3, 10, 2), torch.randn(3, 10, 4),
                                          torch.randn(3, 5, 4)).sum()),
        (deepar.rnn, lambda: deepar.loss(torch.randn(3, 10, 2), torch.randn(3, 5, 2),
                                         torch.randn(3, 10, 4), torch.randn(3, 5, 4), 0.0)),
    ]
    roll = PianoRollRNN(PianoRollConfig(pitches=2, hidden_size=3, **on))
    runs.append((roll.rnn, lambda: roll(torch.rand(1, 3, 2).round(), torch.tensor([3])).sum()))
    speech = SpeechRecognizer(5, 4, SpeechModelConfig(hidden_size=8, conv_channels=6, **on))
    runs.append((speech.rnn, lambda: speech(torch.randn(2, 9, 5), torch.tensor([9, 6]))[0].sum()))
    rec = Recommender(6, RecommenderConfig(embedding_size=4, hidden_size=5, **on))
    runs.append((rec.rnn, lambda: rec(torch.randint(1, 6, (2, 4)), torch.tensor([4, 2])).sum()))
    s2s = Seq2Seq(Seq2SeqConfig(7, 8, cell="lstm", embedding_size=4, hidden_size=5, **on))
    runs.append((s2s.decoder, lambda: s2s(torch.randint(3, 7, (2, 4)), torch.tensor([4, 3]),
                                          torch.randint(3, 8, (2, 3)))[0].sum()))
    for layer, run in runs:
        assert isinstance(layer, (nr.RegularisedLSTM, nr.RegularisedGRU)) and layer.layer_norm
        assert layer.zoneout == 0.1 and layer.recurrent_dropout == 0.1
        run().backward()
        assert layer.ln_hh_weight_l0.grad is not None
