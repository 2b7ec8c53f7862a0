r"""LSTM and GRU layers with the cell options practitioners know from Haste and Keras:
layer normalisation, recurrent (variational) dropout and zoneout.

:class:`RegularisedLSTM` and :class:`RegularisedGRU` take ``torch.nn.LSTM`` / ``GRU``'s
arguments (without ``proj_size``) plus three keywords:

- ``layer_norm`` (Ba et al. 2016, per-gate; for the LSTM also the cell state feeding the output,
  as Haste's ``LayerNormLSTM``),
- ``recurrent_dropout`` p (Gal & Ghahramani 2016): one mask on ``h_{t-1}`` where it enters
  ``W_hh``, drawn per sequence, layer and direction and kept for every step; off in evaluation,
- ``zoneout`` p (Krueger et al. 2017): in training each unit of h (and of c) keeps its previous
  value with probability p, a fresh mask every step; in evaluation the expectation
  ``p · previous + (1 − p) · new``.

The exact equations are in :mod:`rnnkit.functional.regularised`, which holds the hand-written
backward. Without layer norm the parameters are exactly ``torch.nn``'s (names and shapes), so a
plain LSTM's ``state_dict`` loads into a :class:`RegularisedLSTM` and back; layer norm adds
``ln_ih_weight_l{k}``, ``ln_hh_weight_l{k}`` (``(G,)``, G = 4H or 3H, initialised to 1) and for
the LSTM ``ln_c_weight_l{k}`` ``(H,)`` (1) and ``ln_c_bias_l{k}`` ``(H,)`` (0), with the
``_reverse`` suffix for the second direction.

``forward(input, hx=None, *, lengths=None)`` as :class:`rnnkit.LSTM`: ``(T, B, I)`` (or
batch-first, or unbatched ``(T, I)``), ``lengths=`` with PackedSequence semantics (a padded step
leaves the state untouched and its output is zero; the reverse direction starts at each
sequence's last step). A ``PackedSequence`` input is refused: pass the padded batch and
``lengths=``. Masks come from torch's global generator (``torch.manual_seed`` fixes them).

The time loop is Python over per-step tensor operations (no compiled backend), so these layers
are slower per step than :class:`rnnkit.LSTM` (``docs/cells.md`` has the measured ratio).
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from rnnkit.functional.regularised import gru_options, lstm_options
from rnnkit.nn import _checks as checks

__all__ = ["RegularisedLSTM", "RegularisedGRU", "LayerNormLSTM", "LayerNormGRU",
           "check_cell_options"]


def check_cell_options(layer_norm, recurrent_dropout, zoneout) -> None:
    """``TypeError`` / ``ValueError`` naming the argument: ``layer_norm`` a bool, the two rates
    floats in [0, 1)."""
    if not isinstance(layer_norm, bool):
        raise TypeError(f"layer_norm: expected a bool, got {type(layer_norm).__name__} "
                        f"{layer_norm!r}")
    for name, value in (("recurrent_dropout", recurrent_dropout), ("zoneout", zoneout)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name}: expected a float in [0, 1), got {type(value).__name__} "
                            f"{value!r}")
        if not 0 <= value < 1:  # also refuses NaN
            raise ValueError(f"{name}: expected a float in [0, 1), got {value}")


class _OptionsBase(nn.Module):
    """Stack of layers with the cell options; subclasses name the cell."""

    blocks = 4
    states = 2

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device=None, dtype=None, *, layer_norm: bool = False,
                 recurrent_dropout: float = 0.0, zoneout: float = 0.0) -> None:
        super().__init__()
        mode = "LSTM" if self.blocks == 4 else "GRU"
        checks.check_constructor(mode, input_size, hidden_size, num_layers, dropout, 0, "auto",
                                 ("auto",))
        checks.check_flags(bias=bias, batch_first=batch_first, bidirectional=bidirectional)
        check_cell_options(layer_norm, recurrent_dropout, zoneout)
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.layer_norm = layer_norm
        self.recurrent_dropout = float(recurrent_dropout)
        self.zoneout = float(zoneout)
        factory = {"device": device, "dtype": dtype}
        gates = self.blocks * hidden_size
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * self.num_directions
            for suffix in self._suffixes():
                shapes = {f"weight_ih_l{layer}{suffix}": (gates, layer_input),
                          f"weight_hh_l{layer}{suffix}": (gates, hidden_size)}
                if bias:
                    shapes[f"bias_ih_l{layer}{suffix}"] = (gates,)
                    shapes[f"bias_hh_l{layer}{suffix}"] = (gates,)
                if layer_norm:
                    shapes[f"ln_ih_weight_l{layer}{suffix}"] = (gates,)
                    shapes[f"ln_hh_weight_l{layer}{suffix}"] = (gates,)
                    if self.blocks == 4:
                        shapes[f"ln_c_weight_l{layer}{suffix}"] = (hidden_size,)
                        shapes[f"ln_c_bias_l{layer}{suffix}"] = (hidden_size,)
                for name, shape in shapes.items():
                    self.register_parameter(name, nn.Parameter(torch.empty(shape, **factory)))
        self.reset_parameters()

    def _suffixes(self) -> tuple[str, ...]:
        return ("", "_reverse") if self.bidirectional else ("",)

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def reset_parameters(self) -> None:
        """Weights and biases U(−1/√H, 1/√H) as torch.nn; layer-norm gains 1, shifts 0."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for name, weight in self.named_parameters():
            if name.startswith("ln_"):
                nn.init.constant_(weight, 0.0 if "_bias_" in name else 1.0)
            else:
                nn.init.uniform_(weight, -bound, bound)

    def flatten_parameters(self) -> None:
        """No-op, kept for torch.nn compatibility."""

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            text += f", num_layers={self.num_layers}"
        for name, default in (("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False), ("layer_norm", False),
                              ("recurrent_dropout", 0.0), ("zoneout", 0.0)):
            if getattr(self, name) != default:
                text += f", {name}={getattr(self, name)}"
        return text

    def _layer(self, index: int) -> dict[str, Tensor | None]:
        layer, direction = divmod(index, self.num_directions)
        suffix = self._suffixes()[direction]

        def get(name: str) -> Tensor | None:
            return getattr(self, f"{name}_l{layer}{suffix}", None)

        return {name: get(name) for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh",
                                             "ln_ih_weight", "ln_hh_weight", "ln_c_weight",
                                             "ln_c_bias")}

    # ------------------------------------------------------------ forward

    def forward(self, input, hx=None, *, lengths=None):  # noqa: A002 - torch.nn's name
        checks.check_transforms()
        if isinstance(input, PackedSequence):
            raise TypeError(f"input: {type(self).__name__} takes a padded tensor and lengths=, "
                            "not a PackedSequence (torch.nn.utils.rnn.pad_packed_sequence "
                            "gives both)")
        checks.check_input(input, self.input_size, self.batch_first)
        unbatched = input.dim() == 2
        seq = input.unsqueeze(1) if unbatched else input
        if self.batch_first and not unbatched:
            seq = seq.transpose(0, 1)
        steps, batch = seq.shape[0], seq.shape[1]
        checks.check_dtype(seq, self.weight_ih_l0)
        lengths_cpu = checks.check_lengths(lengths, batch, steps, unbatched)
        state = self._initial_state(hx, seq, unbatched)
        output, final = self._run(seq, state, lengths_cpu)
        if self.batch_first and not unbatched:
            output = output.transpose(0, 1)
        if unbatched:
            output = output.squeeze(1)
            final = tuple(s.squeeze(1) for s in final)
        return output, (final if self.states == 2 else final[0])

    def _initial_state(self, hx, seq: Tensor, unbatched: bool) -> tuple[Tensor, ...]:
        count = self.num_layers * self.num_directions
        shapes = [(count, seq.shape[1], self.hidden_size)] * self.states
        if hx is None:
            return tuple(seq.new_zeros(shape) for shape in shapes)
        states = checks.check_hx(hx, shapes, seq, unbatched, self.states == 2)
        if unbatched:
            states = tuple(s.unsqueeze(1) for s in states)
        return states

    def _run(self, seq: Tensor, state: tuple[Tensor, ...], lengths: Tensor | None):
        steps, batch = seq.shape[0], seq.shape[1]
        active = None
        if lengths is not None:
            running = torch.arange(steps).unsqueeze(1) < lengths.unsqueeze(0)  # (T, B)
            active = running.to(seq.device, seq.dtype).unsqueeze(2)
        finals: list[list[Tensor]] = [[] for _ in state]
        layer_input = seq
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(self.num_directions):
                index = layer * self.num_directions + direction
                init = tuple(s[index] for s in state)
                reverse = direction == 1
                # the reverse direction runs the flipped sequence: a row's padding then comes
                # first, where its state stays the initial one, and it starts at its last step
                x = layer_input.flip(0) if reverse else layer_input
                act = active.flip(0) if reverse and active is not None else active
                out, *last = self._cell(x, init, self._layer(index), act, batch, reverse)
                outputs.append(out.flip(0) if reverse else out)
                for store, value in zip(finals, last):
                    store.append(value)
            layer_input = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                layer_input = nn.functional.dropout(layer_input, self.dropout, training=True)
        return layer_input, tuple(torch.stack(values) for values in finals)

    def _masks(self, x: Tensor, batch: int):
        """(recurrent-dropout mask ``(B, H)`` or None, zoneout factors for h and c
        ``(T, B, H)`` or None)."""
        size, steps = self.hidden_size, x.shape[0]
        mask = None
        p = self.recurrent_dropout
        if p > 0 and self.training:
            mask = torch.bernoulli(x.new_full((batch, size), 1 - p)).div_(1 - p)
        keep_h = keep_c = None
        z = self.zoneout
        if z > 0:
            if self.training:
                draw = [torch.bernoulli(x.new_full((steps, batch, size), z))
                        for _ in range(self.states)]
            else:
                draw = [x.new_full((1, 1, 1), z).expand(steps, batch, size)] * self.states
            keep_h, keep_c = draw[0], draw[-1]
        return mask, keep_h, keep_c


class RegularisedLSTM(_OptionsBase):
    r"""LSTM with ``layer_norm``, ``recurrent_dropout`` and ``zoneout`` (keyword-only), else
    as :class:`rnnkit.LSTM` without ``proj_size``; see the module docstring. Returns
    ``output, (h_n, c_n)``.

    Example::

        >>> lstm = rnnkit.RegularisedLSTM(10, 20, layer_norm=True, zoneout=0.1)
        >>> output, (h_n, c_n) = lstm(torch.randn(5, 3, 10), lengths=[5, 3, 2])
    """

    blocks, states = 4, 2

    def _cell(self, x, init, w, active, batch, reverse):
        mask, keep_h, keep_c = self._masks(x, batch)
        ln = None
        if self.layer_norm:
            ln = (w["ln_ih_weight"], w["ln_hh_weight"], w["ln_c_weight"], w["ln_c_bias"])
        return lstm_options(x, init[0], init[1], w["weight_ih"], w["weight_hh"], w["bias_ih"],
                            w["bias_hh"], ln, active, keep_h, keep_c, mask, reverse=reverse)


class RegularisedGRU(_OptionsBase):
    r"""GRU (torch's form) with ``layer_norm``, ``recurrent_dropout`` and ``zoneout``
    (keyword-only), else as :class:`rnnkit.GRU`; see the module docstring. Returns
    ``output, h_n``."""

    blocks, states = 3, 1

    def _cell(self, x, init, w, active, batch, reverse):
        mask, keep_h, _ = self._masks(x, batch)
        ln = (w["ln_ih_weight"], w["ln_hh_weight"]) if self.layer_norm else None
        return gru_options(x, init[0], w["weight_ih"], w["weight_hh"], w["bias_ih"],
                           w["bias_hh"], ln, active, keep_h, mask, reverse=reverse)


class LayerNormLSTM(RegularisedLSTM):
    """:class:`RegularisedLSTM` with ``layer_norm=True`` by default."""

    def __init__(self, *args, layer_norm: bool = True, **kwargs) -> None:
        super().__init__(*args, layer_norm=layer_norm, **kwargs)


class LayerNormGRU(RegularisedGRU):
    """:class:`RegularisedGRU` with ``layer_norm=True`` by default."""

    def __init__(self, *args, layer_norm: bool = True, **kwargs) -> None:
        super().__init__(*args, layer_norm=layer_norm, **kwargs)
