"""The math: each cell's forward over a whole sequence and its hand-written BPTT backward.

One layer, one direction per call, time-major ``(T, B, ·)``. :mod:`rnnkit.nn` stacks layers and
directions on top of these. What each cell is (gate blocks and order, states) is the table in
:mod:`rnnkit.functional.cells`; its textbook step, the yardstick for the fast code, is in
:mod:`rnnkit.functional.textbook`.
"""

from rnnkit.functional.conv import ConvGRUFunction, ConvLSTMFunction, conv_gru, conv_lstm
from rnnkit.functional.elman import ElmanFunction, elman
from rnnkit.functional.gru import GRUFunction, gru
from rnnkit.functional.lstm import LSTMFunction, lstm
from rnnkit.functional.regularised import gru_options, lstm_options
from rnnkit.functional.schedule import Schedule, make_schedule

__all__ = [
    "elman",
    "lstm",
    "gru",
    "ElmanFunction",
    "LSTMFunction",
    "GRUFunction",
    "conv_lstm",
    "conv_gru",
    "ConvLSTMFunction",
    "ConvGRUFunction",
    "lstm_options",
    "gru_options",
    "Schedule",
    "make_schedule",
]
