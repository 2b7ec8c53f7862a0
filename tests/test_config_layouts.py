"""Checkpoint configs in the layouts older code wrote still load: the cell options (layer norm,
recurrent dropout, zoneout) are declared once (``models._config.CellOptions``) and inherited by
every model config and application model section, and ``config.json`` keeps them flat, by name.

The ``model`` dicts below are what the code before that change wrote (copied from tiny runs it
trained with ``--layer-norm --zoneout 0.1 --recurrent-dropout 0.1``); the ``*_BEFORE_OPTIONS``
variants are the layout from before the cell options existed (all off when loaded)."""

from __future__ import annotations

import dataclasses
import inspect
import json

import pytest

from rnnkit.apps import registry, runner
from rnnkit.models._config import CELL_OPTIONS, CellOptions, renamed
from rnnkit.models.classifier import Classifier, ClassifierConfig
from rnnkit.models.forecaster import ForecastModelConfig
from rnnkit.models.lm import LanguageModel, LMConfig
from rnnkit.models.music import PianoRollConfig, PianoRollRNN
from rnnkit.models.recommender import Recommender, RecommenderConfig
from rnnkit.models.seq2seq import Seq2Seq, Seq2SeqConfig
from rnnkit.models.speech import SpeechModelConfig, SpeechRecognizer
from rnnkit.models.tagger import Tagger, TaggerConfig
from rnnkit.nn import GRU, LSTM
from rnnkit.nn.regularised import RegularisedGRU, RegularisedLSTM
from rnnkit.train.checkpoint import saved_model

ON = {"layer_norm": True, "recurrent_dropout": 0.1, "zoneout": 0.1}

# config.json "model" sections as written before CellOptions (tiny runs, cell options on)
OLD_MODELS = {
    "classify": (ClassifierConfig, Classifier, {
        "vocab_size": 16, "num_classes": 2, "embedding_size": 8, "hidden_size": 8,
        "num_layers": 2, "cell": "lstm", "bidirectional": True, "pooling": "last",
        "dropout": 0.5, "pad_id": 0, "embed_dropout": 0.0, "char_vocab_size": 22, "char_dim": 4,
        "char_hidden": 4, **ON}),
    "tag": (TaggerConfig, Tagger, {
        "vocab_size": 16, "num_tags": 2, "char_vocab_size": 22, "embedding_size": 8,
        "char_dim": 4, "char_hidden": 4, "hidden_size": 8, "num_layers": 2, "cell": "lstm",
        "dropout": 0.33, "pad_id": 0, **ON}),
    "lm": (LMConfig, LanguageModel, {
        "vocab_size": 10, "cell": "lstm", "embedding_size": 8, "hidden_size": 8,
        "num_layers": 2, "dropout": 0.2, "tie_weights": False, "softmax": "full",
        "cutoffs": [], "bidirectional": False, **ON}),
    "translate": (Seq2SeqConfig, Seq2Seq, {
        "src_vocab_size": 14, "tgt_vocab_size": 14, "cell": "gru", "embedding_size": 8,
        "hidden_size": 8, "num_layers": 1, "bidirectional": True, "attention": "additive",
        "dropout": 0.2, "tie_embeddings": False, "pad_id": 0, "bos_id": 1, "eos_id": 2, **ON}),
}

# the flat "options" of config.json (what --resume reuses) of the applications whose model
# section changed, as written before CellOptions: the model part of each tiny run
OLD_OPTIONS = {
    "classify": {"cell": "lstm", "embedding_size": 8, "hidden_size": 8, "num_layers": 2,
                 "bidirectional": True, "pooling": "last", "dropout": 0.5, **ON,
                 "embed_dropout": 0.0, "char_dim": 4, "char_hidden": 4},
    "tag": {"cell": "lstm", "embedding_size": 8, "char_dim": 4, "char_hidden": 4,
            "hidden_size": 8, "num_layers": 2, "dropout": 0.33, **ON},
    "lm": {"cell": "lstm", "embedding_size": 8, "hidden_size": 8, "num_layers": 2,
           "dropout": 0.2, "tie_weights": False, **ON, "softmax": "full", "cutoffs": "",
           "bidirectional": False},
    "translate": {"cell": "gru", "embedding_size": 8, "hidden_size": 8, "num_layers": 1,
                  "bidirectional": True, "attention": "additive", "dropout": 0.2, **ON,
                  "tie_embeddings": False},
    "music": {"cell": "lstm", "hidden_size": 8, "num_layers": 2, "dropout": 0.0, **ON,
              "distribution": "bernoulli", "nade_hidden": 64, "embedding_size": 64},
    "speech": {"cell": "lstm", "hidden_size": 8, "num_layers": 2, "dropout": 0.1, **ON,
               "subsample": 2, "conv_channels": 8},
    "forecast": {"architecture": "seq2seq", "cell": "lstm", "hidden_size": 8, "num_layers": 1,
                 "dropout": 0.0, **ON, "attention": True, "window_norm": True,
                 "channel_independent": False, "likelihood": "gaussian"},
    "recommend": {"embedding_size": 8, "hidden_size": 8, "cell": "gru", "num_layers": 2,
                  "dropout": 0.1, **ON, "embedding_dropout": 0.25, "item_bias": True},
}


def _stack(model):
    """The (first) recurrent stack of a model: ``rnn``, or the encoder of an encoder–decoder."""
    return model.encoder if hasattr(model, "encoder") else model.rnn


def _without_options(values: dict) -> dict:
    return {k: v for k, v in values.items() if k not in CELL_OPTIONS}


def _write(tmp_path, saved: dict):
    (tmp_path / "config.json").write_text(json.dumps(saved))
    return tmp_path


@pytest.mark.parametrize("app", sorted(OLD_MODELS))
def test_old_model_section_loads_with_its_cell_options(app, tmp_path):
    cls, model_cls, old = OLD_MODELS[app]
    config = saved_model(cls, tmp_path, {"model": old}, rename=renamed)
    assert {name: getattr(config, name) for name in CELL_OPTIONS} == ON
    # the LM keeps a tuple; fields added since take their defaults (the LM's sampled softmax,
    # the classifier's and the tagger's LM features: off)
    added = {"lm": {"cutoffs": (), "softmax_samples": 1024},
             "classify": {"lm_features": None}, "tag": {"lm_features": None}}
    expected = {**old, **added.get(app, {})}
    assert dataclasses.asdict(config) == expected
    rnn = _stack(model_cls(config))
    assert type(rnn) in (RegularisedLSTM, RegularisedGRU)
    assert (rnn.layer_norm, rnn.recurrent_dropout, rnn.zoneout) == (True, 0.1, 0.1)


@pytest.mark.parametrize("app", sorted(OLD_MODELS))
def test_model_section_from_before_the_cell_options_loads_them_off(app, tmp_path):
    cls, model_cls, old = OLD_MODELS[app]
    config = saved_model(cls, tmp_path, {"model": _without_options(old)}, rename=renamed)
    assert {name: getattr(config, name) for name in CELL_OPTIONS} == {
        "layer_norm": False, "recurrent_dropout": 0.0, "zoneout": 0.0}
    assert type(_stack(model_cls(config))) in (LSTM, GRU)


@pytest.mark.parametrize("app", sorted(OLD_OPTIONS))
def test_old_flat_options_rebuild_the_application_config(app, tmp_path):
    application = registry.get(app)
    old = OLD_OPTIONS[app]
    config = application.options_from({"options": old}, tmp_path)
    model = config.model
    assert isinstance(model, CellOptions)
    for name, value in old.items():
        assert getattr(model, name) == value, name
    # and what --resume starts from: the same flat values, by name
    saved = {"task": app, "options": old, "train": {}}
    resumed = runner.saved_options(application, _write(tmp_path, saved))
    assert {k: resumed[k] for k in old} == old


def test_model_configs_that_are_sections_keep_their_constructor():
    """A model config takes the sizes that come from the data by position and every option by
    keyword (``LMConfig(12, cell="gru")``); the cell options reach the layers (speech,
    recommend, forecast, music)."""
    assert LMConfig(12, cell="gru", embedding_size=8, zoneout=0.1).cell == "gru"
    assert PianoRollConfig(3, cell="lstm", hidden_size=4).hidden_size == 4
    forecast = ForecastModelConfig(cell="gru", hidden_size=8, **ON)
    assert {n: getattr(forecast, n) for n in CELL_OPTIONS} == ON
    assert type(PianoRollRNN(PianoRollConfig(2, hidden_size=3, **ON)).rnn) is RegularisedLSTM
    speech = SpeechRecognizer(5, 4, SpeechModelConfig(hidden_size=8, conv_channels=6, **ON))
    assert type(speech.rnn) is RegularisedGRU
    assert type(Recommender(6, RecommenderConfig(embedding_size=4, hidden_size=5, **ON)).rnn) \
        is RegularisedGRU
    for config, sizes in ((LMConfig, (12,)), (ClassifierConfig, (12, 3, 0)),
                          (TaggerConfig, (12, 3, 0)), (Seq2SeqConfig, (12, 12, 0, 1, 2)),
                          (PianoRollConfig, (3,))):
        config(*sizes)
        with pytest.raises(TypeError):
            config(*sizes, "gru")  # an option by position (the order before 3 December 2026)


@pytest.mark.parametrize("app, config, own", [
    ("lm", LMConfig, {"vocab_size", "cutoffs"}),
    ("classify", ClassifierConfig, {"vocab_size", "num_classes", "pad_id"}),
    ("tag", TaggerConfig, {"vocab_size", "num_tags", "pad_id"}),
    ("translate", Seq2SeqConfig, {"src_vocab_size", "tgt_vocab_size", "pad_id", "bos_id",
                                  "eos_id"}),
    ("music", PianoRollConfig, {"pitches"}),
])
def test_an_applications_model_section_is_declared_once_with_the_model(app, config, own):
    """The ``model`` section of an application is the model's options class, or extends it;
    the model config inherits the same class and declares only the sizes that come from the
    data (``cutoffs``: the flag's text parsed to integers)."""
    section = registry.get(app).Config.__dataclass_fields__["model"].default_factory
    options = config.__mro__[1]
    assert issubclass(section, options), (section, options)
    assert set(inspect.get_annotations(config)) == own
    made, declared = section(), options()
    for f in dataclasses.fields(options):
        assert getattr(made, f.name) == getattr(declared, f.name), f.name


@pytest.mark.parametrize("config", [ClassifierConfig, TaggerConfig])
def test_word_char_configs_are_checked_alike(config):
    """One check for the tagger's and the classifier's sizes (check_word_char_config): the
    character RNN's sizes count only with a character vocabulary."""
    assert config(5, 3, char_vocab_size=0, char_dim=0).char_dim == 0  # no character RNN
    for bad, name in ((dict(char_vocab_size=-1), "char_vocab_size"),
                      (dict(char_vocab_size=4, char_dim=0), "char_dim"),
                      (dict(char_vocab_size=4, char_hidden=0), "char_hidden"),
                      (dict(hidden_size=0), "hidden_size"),
                      (dict(cell="rnn", zoneout=0.1), "zoneout")):
        with pytest.raises(ValueError, match=f"^{name}: "):
            config(5, 3, **bad)


def test_help_lists_a_sections_own_options_before_the_inherited_groups():
    """Every model option is keyword-only; --help still lists the section's own options first,
    then the character and the cell option groups."""
    from rnnkit._options import leaf_fields
    from rnnkit.models.tagger import TaggerOptions

    names = [f.name for _, f in leaf_fields(TaggerOptions)]
    assert names[:5] == ["cell", "embedding_size", "hidden_size", "num_layers", "dropout"]
    assert names[5:] == ["char_dim", "char_hidden", *CELL_OPTIONS]
