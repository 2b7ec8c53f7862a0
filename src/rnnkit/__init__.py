"""rnnkit: recurrent neural networks on PyTorch.

The layers are drop-in for ``torch.nn`` (same arguments, parameter names, ``state_dict``), with a
hand-written backpropagation through time and ``lengths=`` for variable-length batches::

    import rnnkit
    lstm = rnnkit.LSTM(input_size=32, hidden_size=64, num_layers=2, bidirectional=True)
    output, (h_n, c_n) = lstm(x, lengths=[7, 5, 3])
"""

from rnnkit._version import __version__
from rnnkit.nn import (
    GRU,
    LSTM,
    RNN,
    ConvGRU,
    ConvLSTM,
    GRUCell,
    LayerNormGRU,
    LayerNormLSTM,
    LSTMCell,
    RegularisedGRU,
    RegularisedLSTM,
    RNNCell,
)

__all__ = ["__version__", "RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell",
           "RegularisedLSTM", "RegularisedGRU", "LayerNormLSTM", "LayerNormGRU",
           "ConvLSTM", "ConvGRU"]
