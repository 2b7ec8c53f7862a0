"""What the model configs check alike, and the one factory of every model's recurrent stack."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rnnkit._options import option, option_group
from rnnkit.nn import GRU, LSTM, RNN
from rnnkit.nn.regularised import RegularisedGRU, RegularisedLSTM

CELLS = {"lstm": LSTM, "gru": GRU, "rnn": RNN}
# the cells that take the cell options (layer norm, recurrent dropout, zoneout)
OPTION_CELLS = {"lstm": RegularisedLSTM, "gru": RegularisedGRU}
CELL_OPTIONS = ("layer_norm", "recurrent_dropout", "zoneout")


@option_group
@dataclass(kw_only=True)
class CellOptions:
    """The cell options (docs/cells.md), declared once: a model config or an application's
    model section that offers them inherits this class (flags ``--layer-norm``,
    ``--recurrent-dropout``, ``--zoneout``; ``config.json`` keeps them flat, by name).
    Keyword-only, as every model option (``LMConfig(100, cell="gru", zoneout=0.1)``); a config
    saved before they existed loads with all three off. :func:`recurrent_stack` consumes
    them."""

    layer_norm: bool = option(False, "layer-normalised cell, lstm or gru (Ba et al. 2016, per "
                                     "gate; docs/cells.md)")
    recurrent_dropout: float = option(0.0, "recurrent (variational) dropout on h, one mask per "
                                           "sequence, lstm or gru (Gal & Ghahramani 2016)",
                                      bounds="[0, 1)")
    zoneout: float = option(0.0, "zoneout: each unit of h (and c) keeps its previous value with "
                                 "this probability in training, lstm or gru (Krueger et al. "
                                 "2017)", bounds="[0, 1)")

    def __post_init__(self) -> None:
        # as flags (an application's model section): e.g. --zoneout needs --cell lstm or gru;
        # a model config that checks more overrides this and calls check_model_config
        check_cell_options(self, "--")


def cell_options(config) -> dict[str, Any]:
    """The config's cell options; a config (or an old checkpoint's) without them: all off."""
    return {"layer_norm": bool(getattr(config, "layer_norm", False)),
            "recurrent_dropout": float(getattr(config, "recurrent_dropout", 0.0)),
            "zoneout": float(getattr(config, "zoneout", 0.0))}


def check_cell_options(config, flag_prefix: str = "") -> None:
    """``ValueError`` naming the option: the rates in [0, 1), and any option on only with a cell
    that has it (``lstm``, ``gru``). ``flag_prefix="--"`` names them as flags."""
    options = cell_options(config)
    for name in CELL_OPTIONS[1:]:
        value = options[name]
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{_name(name, flag_prefix)}: expected a value in [0, 1), "
                             f"got {value}")
    for name in CELL_OPTIONS:
        if options[name] and config.cell not in OPTION_CELLS:
            raise ValueError(f"{_name(name, flag_prefix)}: only with {_name('cell', flag_prefix)}"
                             f" lstm or gru, got {config.cell!r}")


def _name(field: str, prefix: str) -> str:
    return prefix + field.replace("_", "-") if prefix else field


def recurrent_stack(config, input_size: int, *, bidirectional: bool = False,
                    batch_first: bool = True):
    """The recurrent stack of a model config, for every model: ``cell`` (``lstm``, ``gru``,
    ``rnn``, ``rnn_tanh``, ``rnn_relu``), ``hidden_size``, ``num_layers``, ``dropout`` between
    layers, and the cell options ``layer_norm``, ``recurrent_dropout``, ``zoneout``.

    With every cell option off (or absent: an old config) this is rnnkit's plain layer
    (``rnnkit.LSTM``/``GRU``/``RNN``, the compiled loops); with one on, the
    :mod:`rnnkit.nn.regularised` layer of the cell (same parameter names without layer norm).
    """
    dropout = config.dropout if config.num_layers > 1 else 0.0
    common = {"num_layers": config.num_layers, "batch_first": batch_first,
              "bidirectional": bidirectional, "dropout": dropout}
    options = cell_options(config)
    if any(options.values()):
        check_cell_options(config)
        return OPTION_CELLS[config.cell](input_size, config.hidden_size, **common, **options)
    if config.cell in ("rnn_tanh", "rnn_relu"):
        return RNN(input_size, config.hidden_size, nonlinearity=config.cell[4:], **common)
    return CELLS[config.cell](input_size, config.hidden_size, **common)


def check_model_config(config, positive: tuple[str, ...]) -> None:
    """``ValueError`` naming the field: ``cell`` in :data:`CELLS`, each of ``positive`` ≥ 1,
    ``dropout`` in [0, 1), the cell options (:func:`check_cell_options`)."""
    if config.cell not in CELLS:
        raise ValueError(f"cell: expected one of {', '.join(CELLS)}, got {config.cell!r}")
    for name in positive:
        if getattr(config, name) < 1:
            raise ValueError(f"{name}: expected an integer >= 1, got {getattr(config, name)}")
    if not 0.0 <= config.dropout < 1.0:
        raise ValueError(f"dropout: expected a value in [0, 1), got {config.dropout}")
    check_cell_options(config)


# Old names of model options, as older checkpoints' config.json may hold them.
RENAMED = {"word_dim": "embedding_size", "embed_dim": "embedding_size"}


def renamed(saved: dict) -> dict:
    """A saved model config with old option names (``word_dim``, ``embed_dim``) renamed."""
    return {RENAMED.get(key, key): value for key, value in saved.items()}
