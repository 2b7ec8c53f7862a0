"""What the tagger, classifier and encoder-decoder configs check alike."""

from __future__ import annotations

from rnnkit.nn import GRU, LSTM, RNN

CELLS = {"lstm": LSTM, "gru": GRU, "rnn": RNN}


def stacked_rnn(config, input_size: int, bidirectional: bool):
    """The batch-first recurrent stack of a model config (``cell``, ``hidden_size``,
    ``num_layers``, ``dropout`` between layers)."""
    return CELLS[config.cell](
        input_size, config.hidden_size, num_layers=config.num_layers, batch_first=True,
        bidirectional=bidirectional, dropout=config.dropout if config.num_layers > 1 else 0.0)


def check_model_config(config, positive: tuple[str, ...]) -> None:
    """``ValueError`` naming the field: ``cell`` in :data:`CELLS`, each of ``positive`` ≥ 1,
    ``dropout`` in [0, 1)."""
    if config.cell not in CELLS:
        raise ValueError(f"cell: expected one of {', '.join(CELLS)}, got {config.cell!r}")
    for name in positive:
        if getattr(config, name) < 1:
            raise ValueError(f"{name}: expected an integer >= 1, got {getattr(config, name)}")
    if not 0.0 <= config.dropout < 1.0:
        raise ValueError(f"dropout: expected a value in [0, 1), got {config.dropout}")


# Old names of model options, as older checkpoints' config.json may hold them.
RENAMED = {"word_dim": "embedding_size", "embed_dim": "embedding_size"}


def renamed(saved: dict) -> dict:
    """A saved model config with old option names (``word_dim``, ``embed_dim``) renamed."""
    return {RENAMED.get(key, key): value for key, value in saved.items()}
