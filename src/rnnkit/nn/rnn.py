r"""``RNN``, ``LSTM`` and ``GRU`` layers: drop-in for their ``torch.nn`` namesakes.

Same constructor arguments, parameter names and shapes, initialisation, gate order, forward
signature and return values as ``torch.nn``, so a ``state_dict`` moves either way. One generic
layer (:class:`RecurrentBase`) owns stacking, directions, dropout between layers, lengths and
packing; the cell math lives in :mod:`rnnkit.functional`.

rnnkit adds two keywords: ``lengths=`` on ``forward`` (a padded batch with PackedSequence
semantics, no packing needed) and ``backend=`` on the constructor.

Axes: T steps, B batch, I input features, H hidden units, P projection size (= H without
projection), L layers, D directions (2 if bidirectional else 1).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnkit import functional as F
from rnnkit.functional.cells import spec
from rnnkit.nn import _backends as backends
from rnnkit.nn import _checks as checks

__all__ = ["RNN", "LSTM", "GRU", "RecurrentBase", "BACKENDS"]

BACKENDS = ("auto", "reference", "native", "triton")


class RecurrentBase(nn.Module):
    """Stack of recurrent layers; subclasses name the cell (``mode``)."""

    def __init__(
        self,
        mode: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device=None,
        dtype=None,
        *,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        checks.check_constructor(
            mode, input_size, hidden_size, num_layers, dropout, proj_size, backend, BACKENDS
        )
        checks.check_flags(bias=bias, batch_first=batch_first)  # as torch.nn (not bidirectional)
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        self.backend = backend
        self._create_parameters(device, dtype)
        self.reset_parameters()

    def _create_parameters(self, device, dtype) -> None:
        factory = {"device": device, "dtype": dtype}
        gate_size = spec(self.mode).blocks * self.hidden_size
        out_size = self.proj_size or self.hidden_size
        self._flat_weights_names: list[str] = []
        for layer in range(self.num_layers):
            layer_input = self.input_size if layer == 0 else out_size * self.num_directions
            for suffix in self._suffixes():
                shapes = {
                    f"weight_ih_l{layer}{suffix}": (gate_size, layer_input),
                    f"weight_hh_l{layer}{suffix}": (gate_size, out_size),
                }
                if self.bias:
                    shapes[f"bias_ih_l{layer}{suffix}"] = (gate_size,)
                    shapes[f"bias_hh_l{layer}{suffix}"] = (gate_size,)
                if self.proj_size > 0:
                    shapes[f"weight_hr_l{layer}{suffix}"] = (self.proj_size, self.hidden_size)
                for name, shape in shapes.items():
                    self.register_parameter(name, nn.Parameter(torch.empty(shape, **factory)))
                    self._flat_weights_names.append(name)

    def _suffixes(self) -> tuple[str, ...]:
        return ("", "_reverse") if self.bidirectional else ("",)

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        """Parameters grouped per layer and direction, as ``torch.nn.RNNBase.all_weights``."""
        per = len(self._flat_weights_names) // (self.num_layers * self.num_directions)
        names = self._flat_weights_names
        return [
            [getattr(self, n) for n in names[k : k + per]] for k in range(0, len(names), per)
        ]

    def reset_parameters(self) -> None:
        """U(−1/√H, 1/√H) for every weight and bias, as torch.nn."""
        bound = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0.0
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def flatten_parameters(self) -> None:
        """No-op, kept for torch.nn compatibility (there is no cuDNN weight buffer to compact)."""

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            text += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            text += f", num_layers={self.num_layers}"
        if self.mode == "RNN_RELU":
            text += ", nonlinearity='relu'"
        for name, default in (("bias", True), ("batch_first", False), ("dropout", 0.0)):
            if getattr(self, name) != default:
                text += f", {name}={getattr(self, name)}"
        if self.bidirectional:
            text += ", bidirectional=True"
        if self.backend != "auto":
            text += f", backend={self.backend!r}"
        return text

    # ---------------------------------------------------------------- forward

    def forward(self, input, hx=None, *, lengths=None):  # noqa: A002 - torch.nn's name
        """Run the stack. See the class docstring for shapes."""
        checks.check_transforms()
        if isinstance(input, PackedSequence):
            return self._forward_packed(input, hx, lengths)
        checks.check_input(input, self.input_size, self.batch_first)
        unbatched = input.dim() == 2
        seq = input.unsqueeze(1) if unbatched else input
        if self.batch_first and not unbatched:
            seq = seq.transpose(0, 1)
        steps, batch = seq.shape[0], seq.shape[1]
        checks.check_dtype(seq, self.weight_ih_l0)
        lengths_cpu = checks.check_lengths(lengths, batch, steps, unbatched)
        state = self._initial_state(hx, seq, unbatched)
        if batch == 0:
            output, final = self._empty(seq, state)
        else:
            output, final = self._run(seq, state, lengths_cpu)
        if self.batch_first and not unbatched:
            output = output.transpose(0, 1)
        if unbatched:
            output = output.squeeze(1)
            final = tuple(s.squeeze(1) for s in final)
        return output, self._pack_state(final)

    def _forward_packed(self, packed: PackedSequence, hx, lengths):
        if lengths is not None:
            raise ValueError("lengths: must be None when input is a PackedSequence, which "
                             "carries its own lengths")
        padded, lengths_cpu = pad_packed_sequence(packed)  # (T, B, I), batch in original order
        checks.check_input(padded, self.input_size, batch_first=False)
        state = self._initial_state(hx, padded, unbatched=False)
        output, final = self._run(padded, state, lengths_cpu)
        sorted_indices = packed.sorted_indices
        if sorted_indices is not None:
            output = output.index_select(1, sorted_indices)
            lengths_cpu = lengths_cpu.index_select(0, sorted_indices.cpu())
        data = pack_padded_sequence(output, lengths_cpu, enforce_sorted=True).data
        out = PackedSequence(data, packed.batch_sizes, sorted_indices, packed.unsorted_indices)
        return out, self._pack_state(final)

    def _empty(self, seq: Tensor, state: tuple[Tensor, ...]):
        """An empty batch (B = 0): output ``(T, 0, D·P)`` and the (empty) states, as torch.nn,
        still joined to the input and the weights so that backward runs (to zero gradients)."""
        anchor = seq.sum() * 0 + sum(p.sum() for p in self.parameters()) * 0
        size = self.num_directions * (self.proj_size or self.hidden_size)
        output = seq.new_zeros(seq.shape[0], 0, size) + anchor
        return output, tuple(s + anchor for s in state)

    def _state_shapes(self, batch: int) -> list[tuple[int, ...]]:
        count = self.num_layers * self.num_directions
        shapes = [(count, batch, self.proj_size or self.hidden_size)]  # h
        if "c" in spec(self.mode).states:
            shapes.append((count, batch, self.hidden_size))
        return shapes

    def _initial_state(self, hx, seq: Tensor, unbatched: bool) -> tuple[Tensor, ...]:
        shapes = self._state_shapes(seq.shape[1])
        if hx is None:
            return tuple(seq.new_zeros(shape) for shape in shapes)
        states = checks.check_hx(hx, shapes, seq, unbatched, len(shapes) == 2)
        if unbatched:
            states = tuple(s.unsqueeze(1) for s in states)
        return states

    def _pack_state(self, final: tuple[Tensor, ...]):
        return final if len(final) == 2 else final[0]

    def _run(self, seq: Tensor, state: tuple[Tensor, ...], lengths: Tensor | None):
        """seq ``(T, B, I)``, state tensors ``(L·D, B, ·)`` → output ``(T, B, D·P)``, finals."""
        backend = self._resolve_backend(seq)
        schedules = [
            F.make_schedule(seq.shape[0], seq.shape[1], lengths, seq.device, reverse)
            for reverse in (False, True)[: self.num_directions]
        ]
        finals: list[list[Tensor]] = [[] for _ in state]
        layer_input = seq
        weights = self.all_weights
        for layer in range(self.num_layers):
            outputs = []
            for direction, schedule in enumerate(schedules):
                index = layer * self.num_directions + direction
                init = tuple(s[index] for s in state)
                out, *last = self._cell(layer_input, init, weights[index], schedule, backend)
                outputs.append(out)
                for store, value in zip(finals, last):
                    store.append(value)
            layer_input = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                # padded steps are zero and stay zero under dropout
                layer_input = nn.functional.dropout(layer_input, self.dropout, training=True)
        return layer_input, tuple(torch.stack(values) for values in finals)

    def _cell(self, x, init, params, schedule, backend):
        if self.bias:
            w_ih, w_hh, b_ih, b_hh, *rest = params
        else:
            (w_ih, w_hh, *rest), b_ih, b_hh = params, None, None
        cell = spec(self.mode)
        if cell.cell == "lstm":
            w_hr = rest[0] if rest else None
            return F.lstm(x, init[0], init[1], w_ih, w_hh, b_ih, b_hh, w_hr, schedule, backend)
        if cell.cell == "gru":
            return F.gru(x, init[0], w_ih, w_hh, b_ih, b_hh, schedule, backend)
        return F.elman(x, init[0], w_ih, w_hh, b_ih, b_hh, schedule, cell.nonlinearity, backend)

    def _resolve_backend(self, seq: Tensor) -> str:
        """The backend serving this call (see :func:`rnnkit.nn._backends.resolve`)."""
        return backends.resolve(self, seq)


class RNN(RecurrentBase):
    r"""Elman RNN, the primer's :math:`s_t = f(U x_t + W s_{t-1})`: a multi-layer recurrent
    network with a tanh or ReLU nonlinearity, drop-in for :class:`torch.nn.RNN`.

    For each element of the input sequence, each layer computes

    .. math::
        h_t = \tanh(x_t W_{ih}^T + b_{ih} + h_{t-1} W_{hh}^T + b_{hh})

    where :math:`h_t` is the hidden state at time t, :math:`x_t` the input at time t (the
    previous layer's output :math:`h_t^{(l-1)}` for layers after the first) and
    :math:`h_{t-1}` the hidden state at time t-1 (:math:`h_0` at the start). With
    ``nonlinearity='relu'``, ReLU replaces tanh.

    Args:
        input_size: features I of the input x.
        hidden_size: features H of the hidden state h.
        num_layers: stacked layers L (default 1).
        nonlinearity: ``'tanh'`` (default) or ``'relu'``.
        bias: with the biases b_ih and b_hh (default True).
        batch_first: input and output as ``(B, T, ·)`` instead of ``(T, B, ·)`` (the states
            stay ``(L·D, B, H)``), as torch.nn.
        dropout: dropout on the outputs of every layer but the last (default 0).
        bidirectional: D = 2 directions (default False).
        backend (keyword-only): ``"auto"`` (default: the compiled loop on the CPU, the Triton
            kernels on CUDA where they serve, else the reference loop), ``"reference"``,
            ``"native"`` or ``"triton"``; an explicit backend that cannot serve a call raises.

    Inputs: ``input, hx=None, *, lengths=None``
        input: ``(T, B, I)``, ``(B, T, I)`` with batch_first, ``(T, I)`` unbatched, or a
            :class:`~torch.nn.utils.rnn.PackedSequence`.
        hx: ``(L·D, B, H)`` (``(L·D, H)`` unbatched), the initial hidden state; zeros if None.
        lengths (rnnkit): ``(B,)`` list or integer tensor, the length of each sequence of a
            padded batch, with PackedSequence semantics: outputs past a sequence's end are
            zero, h_n is the state after its last step, the reverse direction starts there.

    Outputs: ``output, h_n``
        output: ``(T, B, D·H)`` (or batch-first, unbatched, packed as the input), the last
            layer's :math:`h_t` for every t, both directions concatenated.
        h_n: ``(L·D, B, H)``, the final hidden state of every layer and direction.

    Attributes (as torch.nn; shapes for layer k, ``_reverse`` for the second direction):
        weight_ih_l[k]: ``(H, I)`` for k = 0, else ``(H, D·H)``.
        weight_hh_l[k]: ``(H, H)``.
        bias_ih_l[k], bias_hh_l[k]: ``(H,)``.
        All initialised from :math:`\mathcal{U}(-\sqrt{k}, \sqrt{k})`, :math:`k = 1/H`.

    Axes: T steps, B batch, I input features, H hidden units, L layers, D directions.

    Example::

        >>> rnn = rnnkit.RNN(10, 20, num_layers=2)
        >>> output, h_n = rnn(torch.randn(5, 3, 10), lengths=[5, 3, 2])
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device=None,
        dtype=None,
        *,
        backend: str = "auto",
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(
                f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}"
            )
        self.nonlinearity = nonlinearity
        mode = "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"
        super().__init__(
            mode, input_size, hidden_size, num_layers, bias, batch_first, dropout,
            bidirectional, 0, device, dtype, backend=backend,
        )


class LSTM(RecurrentBase):
    r"""Long short-term memory, drop-in for :class:`torch.nn.LSTM`.

    For each element of the input sequence, each layer computes

    .. math::
        \begin{array}{ll}
        i_t = \sigma(W_{ii} x_t + b_{ii} + W_{hi} h_{t-1} + b_{hi}) \\
        f_t = \sigma(W_{if} x_t + b_{if} + W_{hf} h_{t-1} + b_{hf}) \\
        g_t = \tanh(W_{ig} x_t + b_{ig} + W_{hg} h_{t-1} + b_{hg}) \\
        o_t = \sigma(W_{io} x_t + b_{io} + W_{ho} h_{t-1} + b_{ho}) \\
        c_t = f_t \odot c_{t-1} + i_t \odot g_t \\
        h_t = o_t \odot \tanh(c_t)
        \end{array}

    where :math:`c_t` is the cell state, :math:`i_t, f_t, g_t, o_t` the input, forget, cell and
    output gates, :math:`\sigma` the sigmoid and :math:`\odot` the element-wise product. With
    ``proj_size`` P > 0, :math:`h_t = W_{hr}(o_t \odot \tanh(c_t))` has P features and is what
    the recurrence and the output carry (Sak et al. 2014).

    Gate order: the rows of ``weight_ih``/``weight_hh``/the biases are the blocks
    ``(W_i | W_f | W_g | W_o)``, as torch.nn (and cuDNN).

    Args: as :class:`RNN` without ``nonlinearity``, plus
        proj_size: P, the size of the projected h (default 0: no projection, P = H).

    Inputs: ``input, (h_0, c_0)=None, *, lengths=None``
        input, lengths: as :class:`RNN`.
        h_0: ``(L·D, B, P)``; c_0: ``(L·D, B, H)``; zeros if the pair is None.

    Outputs: ``output, (h_n, c_n)``
        output: ``(T, B, D·P)`` (batch-first, unbatched, packed as the input).
        h_n: ``(L·D, B, P)``; c_n: ``(L·D, B, H)``, the final states.

    Attributes (layer k, ``_reverse`` for the second direction):
        weight_ih_l[k]: ``(4H, I)`` for k = 0, else ``(4H, D·P)``.
        weight_hh_l[k]: ``(4H, P)``.
        bias_ih_l[k], bias_hh_l[k]: ``(4H,)``.
        weight_hr_l[k]: ``(P, H)``, only with ``proj_size > 0``.
        All initialised from :math:`\mathcal{U}(-\sqrt{k}, \sqrt{k})`, :math:`k = 1/H`.

    Axes: T steps, B batch, I input features, H hidden units, P projection size (= H without
    projection), L layers, D directions.

    Example::

        >>> lstm = rnnkit.LSTM(10, 20, num_layers=2, bidirectional=True)
        >>> output, (h_n, c_n) = lstm(torch.randn(5, 3, 10), lengths=[5, 3, 2])
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device=None,
        dtype=None,
        *,
        backend: str = "auto",
    ) -> None:
        super().__init__(
            "LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout,
            bidirectional, proj_size, device, dtype, backend=backend,
        )


class GRU(RecurrentBase):
    r"""Gated recurrent unit in torch's formulation, drop-in for :class:`torch.nn.GRU`.

    For each element of the input sequence, each layer computes

    .. math::
        \begin{array}{ll}
        r_t = \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr}) \\
        z_t = \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz}) \\
        n_t = \tanh(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn})) \\
        h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}
        \end{array}

    where :math:`r_t, z_t, n_t` are the reset, update and new gates. Note ``b_hn`` inside the
    reset product: torch's (and cuDNN's) form, which differs from Cho et al. (2014), where
    :math:`r_t` multiplies :math:`h_{t-1}` before :math:`W_{hn}`.

    Gate order: the rows of ``weight_ih``/``weight_hh``/the biases are the blocks
    ``(W_r | W_z | W_n)``, as torch.nn.

    Args, inputs and outputs: as :class:`RNN` (without ``nonlinearity``).

    Attributes (layer k, ``_reverse`` for the second direction):
        weight_ih_l[k]: ``(3H, I)`` for k = 0, else ``(3H, D·H)``.
        weight_hh_l[k]: ``(3H, H)``.
        bias_ih_l[k], bias_hh_l[k]: ``(3H,)``.
        All initialised from :math:`\mathcal{U}(-\sqrt{k}, \sqrt{k})`, :math:`k = 1/H`.

    Axes: T steps, B batch, I input features, H hidden units, L layers, D directions.

    Example::

        >>> gru = rnnkit.GRU(10, 20, batch_first=True)
        >>> output, h_n = gru(torch.randn(3, 5, 10), lengths=[5, 3, 2])
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device=None,
        dtype=None,
        *,
        backend: str = "auto",
    ) -> None:
        super().__init__(
            "GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout,
            bidirectional, 0, device, dtype, backend=backend,
        )
