"""help(rnnkit.LSTM) and friends show the equations, shapes and gate order as torch.nn's do,
and their examples run."""

from __future__ import annotations

import re

import pytest
import torch

import rnnkit


@pytest.mark.parametrize("cls, needles", [
    (rnnkit.RNN, ["h_t = \\tanh(x_t W_{ih}^T", "weight_hh_l[k]: ``(H, H)``"]),
    (rnnkit.LSTM, ["c_t = f_t \\odot c_{t-1} + i_t \\odot g_t", "(W_i | W_f | W_g | W_o)",
                   "weight_hr_l[k]: ``(P, H)``"]),
    (rnnkit.GRU, ["r_t \\odot (W_{hn} h_{t-1} + b_{hn})", "(W_r | W_z | W_n)",
                  "weight_ih_l[k]: ``(3H, I)``"]),
])
def test_docstring_has_equations_shapes_and_gate_order(cls, needles):
    for needle in needles:
        assert needle in cls.__doc__, needle
    assert "Axes:" in cls.__doc__ and "lengths" in cls.__doc__


@pytest.mark.parametrize("cls", [rnnkit.RNN, rnnkit.LSTM, rnnkit.GRU])
def test_docstring_example_runs(cls):
    lines = [line.strip()[4:] for line in cls.__doc__.splitlines()
             if line.strip().startswith(">>> ")]
    scope = {"rnnkit": rnnkit, "torch": torch}
    exec("\n".join(lines), scope)  # noqa: S102 - the docstring's own example
    outputs = [v for k, v in scope.items() if re.fullmatch(r"output", k)]
    assert outputs and outputs[0].shape[-1] in (20, 40)
