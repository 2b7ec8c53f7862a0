"""Layers, drop-in for torch.nn: ``RNN``, ``LSTM``, ``GRU`` and the single-step cells."""

from rnnkit.nn.cells import GRUCell, LSTMCell, RNNCell
from rnnkit.nn.conv import ConvGRU, ConvLSTM
from rnnkit.nn.regularised import LayerNormGRU, LayerNormLSTM, RegularisedGRU, RegularisedLSTM
from rnnkit.nn.rnn import GRU, LSTM, RNN

__all__ = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "RegularisedLSTM",
           "RegularisedGRU", "LayerNormLSTM", "LayerNormGRU", "ConvLSTM", "ConvGRU"]
