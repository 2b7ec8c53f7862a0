r"""``ConvLSTM`` and ``ConvGRU``: recurrent layers over sequences of feature maps (video frames).

The convolutional LSTM of Shi et al. (2015), and the GRU made convolutional the same way: the
gates come from one convolution over the input frame and the previous state stacked along the
channels, with "same" padding, so every state keeps the frame's height and width. The math and
its hand-written backward are in :mod:`rnnkit.functional.conv`; this module stacks layers,
applies dropout between them, checks arguments (errors name the argument, as
:class:`rnnkit.LSTM`'s) and handles ``lengths=`` with the PackedSequence semantics of the other
layers.

Axes: T steps, B batch, C input channels, H hidden channels, Y × X the frame (height × width),
L layers.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor, nn

from rnnkit.errors import LayerError
from rnnkit.functional import conv as F
from rnnkit.functional.schedule import make_schedule
from rnnkit.nn import _checks as checks

__all__ = ["ConvLSTM", "ConvGRU", "ConvRecurrentBase"]


def _kernel(kernel_size) -> tuple[int, int]:
    if isinstance(kernel_size, numbers.Integral) and not isinstance(kernel_size, bool):
        kernel = (int(kernel_size), int(kernel_size))
    elif (isinstance(kernel_size, tuple | list) and len(kernel_size) == 2
          and all(isinstance(k, numbers.Integral) and not isinstance(k, bool)
                  for k in kernel_size)):
        kernel = (int(kernel_size[0]), int(kernel_size[1]))
    else:
        raise TypeError(f"kernel_size: expected an int or a pair of ints, got {kernel_size!r}")
    if min(kernel) < 1 or kernel[0] % 2 == 0 or kernel[1] % 2 == 0:
        raise ValueError(f"kernel_size: expected odd sizes >= 1 (the padding k // 2 keeps the "
                         f"frame's size), got {kernel_size!r}")
    return kernel


class ConvRecurrentBase(nn.Module):
    """Stack of convolutional recurrent layers; subclasses name the cell."""

    blocks: int = 0  # gate blocks of H channels (LSTM 4, GRU 3)
    states: tuple[str, ...] = ("h",)

    def __init__(self, input_channels: int, hidden_channels: int, kernel_size=3,
                 num_layers: int = 1, bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, device=None, dtype=None) -> None:
        super().__init__()
        for name, value in (("input_channels", input_channels),
                            ("hidden_channels", hidden_channels), ("num_layers", num_layers)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
            if value < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {value}")
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real):
            raise TypeError(f"dropout: expected a float in [0, 1], got {type(dropout).__name__}")
        if not 0 <= dropout <= 1:
            raise ValueError(f"dropout: expected a float in [0, 1], got {dropout}")
        checks.check_flags(bias=bias, batch_first=batch_first)
        self.input_channels = int(input_channels)
        self.hidden_channels = int(hidden_channels)
        self.kernel_size = _kernel(kernel_size)
        self.padding = (self.kernel_size[0] // 2, self.kernel_size[1] // 2)
        self.num_layers = int(num_layers)
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        factory = {"device": device, "dtype": dtype}
        gates = self.blocks * self.hidden_channels
        for layer in range(self.num_layers):
            channels = (self.input_channels if layer == 0 else self.hidden_channels)
            shape = (gates, channels + self.hidden_channels, *self.kernel_size)
            self.register_parameter(f"weight_l{layer}", nn.Parameter(torch.empty(shape,
                                                                                 **factory)))
            if bias:
                self.register_parameter(f"bias_l{layer}",
                                        nn.Parameter(torch.empty(gates, **factory)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """U(−1/√fan_in, 1/√fan_in) for every weight and bias, fan_in = (C + H)·kh·kw: what
        ``torch.nn.Conv2d`` initialises to."""
        for layer in range(self.num_layers):
            weight = getattr(self, f"weight_l{layer}")
            bound = 1.0 / math.sqrt(weight[0].numel())
            nn.init.uniform_(weight, -bound, bound)
            if self.bias:
                nn.init.uniform_(getattr(self, f"bias_l{layer}"), -bound, bound)

    def extra_repr(self) -> str:
        text = (f"{self.input_channels}, {self.hidden_channels}, "
                f"kernel_size={self.kernel_size}")
        if self.num_layers != 1:
            text += f", num_layers={self.num_layers}"
        for name, default in (("bias", True), ("batch_first", False), ("dropout", 0.0)):
            if getattr(self, name) != default:
                text += f", {name}={getattr(self, name)}"
        return text

    # ---------------------------------------------------------------- forward

    def forward(self, input, hx=None, *, lengths=None):  # noqa: A002 - torch.nn's name
        outputs, final = self.forward_layers(input, hx, lengths=lengths)
        return outputs[-1], final

    def forward_layers(self, input, hx=None, *, lengths=None):  # noqa: A002
        """As :meth:`forward`, with the outputs of every layer: ``([output of layer 0, …,
        output of layer L−1], final states)``, each output ``(T, B, H, Y, X)`` (batch-first as
        the input), the last one what :meth:`forward` returns. For read-outs that look at all
        layers (Shi et al.'s forecaster concatenates them)."""
        checks.check_transforms()
        self._check_input(input)
        seq = input.transpose(0, 1) if self.batch_first else input
        steps, batch = seq.shape[:2]
        checks.check_dtype(seq, self.weight_l0)
        lengths_cpu = checks.check_lengths(lengths, batch, steps, unbatched=False)
        state = self._initial_state(hx, seq)
        if batch == 0:
            output, final = self._empty(seq, state)
            outputs = [output] * self.num_layers
        else:
            outputs, final = self._run(seq.contiguous(), state, lengths_cpu, hx is None)
        if self.batch_first:
            outputs = [output.transpose(0, 1) for output in outputs]
        return outputs, (final if len(final) == 2 else final[0])

    def _check_input(self, input) -> None:  # noqa: A002
        if not isinstance(input, Tensor):
            raise TypeError(f"input: expected a Tensor, got {type(input).__name__}")
        layout = "(B, T, C, Y, X)" if self.batch_first else "(T, B, C, Y, X)"
        if input.dim() != 5:
            raise LayerError(f"input: expected a 5D tensor {layout}, got {input.dim()}D with "
                             f"shape {tuple(input.shape)}")
        if not input.is_floating_point():
            raise TypeError(f"input: expected a floating-point tensor, got {input.dtype}")
        if input.shape[2] != self.input_channels:
            raise LayerError(f"input: expected dimension 2 C = input_channels = "
                             f"{self.input_channels} in a {layout} tensor, got shape "
                             f"{tuple(input.shape)}")
        steps = input.shape[1] if self.batch_first else input.shape[0]
        if steps == 0:
            raise LayerError(f"input: expected at least one step, got shape "
                             f"{tuple(input.shape)}")
        if input.shape[3] == 0 or input.shape[4] == 0:
            raise LayerError(f"input: expected frames of at least 1 × 1 pixels, got shape "
                             f"{tuple(input.shape)}")

    def _initial_state(self, hx, seq: Tensor) -> tuple[Tensor, ...]:
        shape = (self.num_layers, seq.shape[1], self.hidden_channels, *seq.shape[3:])
        shapes = [shape] * len(self.states)
        if hx is None:
            return tuple(seq.new_zeros(s) for s in shapes)
        return checks.check_hx(hx, shapes, seq, unbatched=False, is_lstm=len(shapes) == 2)

    def _empty(self, seq: Tensor, state: tuple[Tensor, ...]):
        """An empty batch (B = 0): empty outputs and states joined to the input and the weights,
        so that backward runs (to zero gradients), as the other layers."""
        anchor = seq.sum() * 0 + sum(p.sum() for p in self.parameters()) * 0
        output = seq.new_zeros(seq.shape[0], 0, self.hidden_channels, *seq.shape[3:]) + anchor
        return output, tuple(s + anchor for s in state)

    def _run(self, seq: Tensor, state: tuple[Tensor, ...], lengths: Tensor | None,
             zero_start: bool = False):
        """Every layer's output (before dropout) and the final states."""
        schedule = make_schedule(seq.shape[0], seq.shape[1], lengths, seq.device, False)
        finals: list[list[Tensor]] = [[] for _ in state]
        outputs: list[Tensor] = []
        layer_input = seq
        for layer in range(self.num_layers):
            weight = getattr(self, f"weight_l{layer}")
            bias = getattr(self, f"bias_l{layer}") if self.bias else None
            init = tuple(s[layer] for s in state)
            out, *last = self._cell(layer_input, init, weight, bias, schedule, zero_start)
            for store, value in zip(finals, last):
                store.append(value)
            outputs.append(out)
            layer_input = out
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                layer_input = nn.functional.dropout(layer_input, self.dropout, training=True)
        return outputs, tuple(torch.stack(values) for values in finals)

    def _cell(self, x, init, weight, bias, schedule, zero_start):
        raise NotImplementedError


class ConvLSTM(ConvRecurrentBase):
    r"""Convolutional LSTM (Shi et al. 2015): the LSTM with its products replaced by
    convolutions over feature maps.

    For each frame, each layer computes, with :math:`*` a 2-D convolution with padding k // 2:

    .. math::
        \begin{array}{ll}
        (i_t, f_t, g_t, o_t) = (\sigma, \sigma, \tanh, \sigma)(W * [x_t, h_{t-1}] + b) \\
        c_t = f_t \odot c_{t-1} + i_t \odot g_t \\
        h_t = o_t \odot \tanh(c_t)
        \end{array}

    (no peephole terms). The backward is hand-written BPTT (:mod:`rnnkit.functional.conv`).

    Args:
        input_channels: C, channels of each input frame.
        hidden_channels: H, channels of h and c in every layer.
        kernel_size: odd int or pair (kh, kw) (default 3); padding k // 2 keeps the frame size.
        num_layers: stacked layers L (default 1).
        bias: with the bias b (default True).
        batch_first: input and output as ``(B, T, ·)`` (the states stay ``(L, B, ·)``).
        dropout: dropout on the outputs of every layer but the last (default 0).

    Inputs: ``input, (h_0, c_0)=None, *, lengths=None``
        input: ``(T, B, C, Y, X)`` (``(B, T, C, Y, X)`` with batch_first).
        h_0, c_0: ``(L, B, H, Y, X)`` each; zeros if the pair is None.
        lengths: ``(B,)`` list or integer tensor with PackedSequence semantics, as
            :class:`rnnkit.LSTM`: outputs past a clip's end are zero, h_n and c_n are the states
            after its last frame.

    Outputs: ``output, (h_n, c_n)``
        output: ``(T, B, H, Y, X)`` (batch-first as the input), the last layer's h_t.
        h_n, c_n: ``(L, B, H, Y, X)``.

        The output is stored channels-last (each frame's ``(B, H, Y, X)`` slice is a
        ``torch.channels_last`` tensor, the layout the layer computes in); ``.contiguous()``
        gives the usual layout. :meth:`forward_layers` also returns every layer's output.

    Attributes:
        weight_l[k]: ``(4H, C + H, kh, kw)`` for k = 0, else ``(4H, 2H, kh, kw)``; output blocks
            i, f, g, o; input channels x first, then h.
        bias_l[k]: ``(4H,)``.

    Example::

        >>> layer = rnnkit.ConvLSTM(1, 8, kernel_size=3, num_layers=2)
        >>> output, (h_n, c_n) = layer(torch.randn(10, 4, 1, 16, 16), lengths=[10, 8, 6, 3])
    """

    blocks = 4
    states = ("h", "c")

    def _cell(self, x, init, weight, bias, schedule, zero_start):
        return F.conv_lstm(x, init[0], init[1], weight, bias, schedule, zero_start)


class ConvGRU(ConvRecurrentBase):
    r"""Convolutional GRU in torch's (and :class:`rnnkit.GRU`'s) form:

    .. math::
        \begin{array}{ll}
        (a_r, a_z, a_n) = W_x * x_t + b, \quad (u_r, u_z, u_n) = W_h * h_{t-1} \\
        r_t = \sigma(a_r + u_r), \quad z_t = \sigma(a_z + u_z) \\
        n_t = \tanh(a_n + r_t \odot u_n) \\
        h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}
        \end{array}

    with ``weight_l[k] = [W_x | W_h]`` one ``(3H, C + H, kh, kw)`` weight over
    ``[x_t, h_{t-1}]`` and one bias ``(3H,)`` (blocks r, z, n).

    Args, inputs and outputs: as :class:`ConvLSTM`, with one state: ``input, h_0=None, *,
    lengths=None`` → ``output, h_n``.
    """

    blocks = 3
    states = ("h",)

    def _cell(self, x, init, weight, bias, schedule, zero_start):
        return F.conv_gru(x, init[0], weight, bias, schedule, zero_start)
