"""Validation at the layers' boundary: one specific message naming the argument, never a shape
error from deep inside the math."""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

from rnnkit.errors import LayerError


def check_constructor(mode, input_size, hidden_size, num_layers, dropout, proj_size, backend,
                      backends) -> None:
    for name, value, low in (
        ("input_size", input_size, 1),
        ("hidden_size", hidden_size, 1),
        ("num_layers", num_layers, 1),
        ("proj_size", proj_size, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
        if value < low:
            raise ValueError(f"{name}: expected an int >= {low}, got {value}")
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real):
        raise TypeError(f"dropout: expected a float in [0, 1], got {type(dropout).__name__}")
    if not 0 <= dropout <= 1:
        raise ValueError(f"dropout: expected a float in [0, 1], got {dropout}")
    if proj_size and mode != "LSTM":
        raise ValueError("proj_size: only LSTM supports a projection")
    if proj_size >= hidden_size:
        raise ValueError(f"proj_size: expected < hidden_size ({hidden_size}), got {proj_size}")
    if backend not in backends:
        raise ValueError(f"backend: expected one of {', '.join(map(repr, backends))}, "
                         f"got {backend!r}")


def check_transforms() -> None:
    """Refuse, with the way out, what rnnkit's hand-written backward cannot follow:
    ``torch.func`` transforms (grad, vmap, jacrev: the compiled loops read raw memory, which
    functorch's wrapped tensors do not have) and ``torch.jit.trace``."""
    functorch = getattr(torch._C, "_functorch", None)
    if functorch is not None and functorch.maybe_current_level() is not None:
        raise RuntimeError(
            "rnnkit layers do not support torch.func transforms (grad, vmap, jacrev, "
            "functional_call under them); use torch.nn's layer with the same weights "
            "(rnnkit.nn.exportable.to_torch(layer)) inside the transform, or torch.autograd "
            "(create_graph=True is supported)")
    if torch.jit.is_tracing():
        raise RuntimeError(
            "rnnkit layers cannot be traced by torch.jit.trace; trace torch.nn's layer with the "
            "same weights (rnnkit.nn.exportable.to_torch(layer)), or export a trained "
            "application with rnnkit export (ONNX or TorchScript)")


def check_flags(**flags) -> None:
    """``bias`` and ``batch_first`` are bools, as torch.nn requires."""
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise TypeError(f"{name}: expected a bool, got {type(value).__name__} {value!r}")


def check_dtype(input: Tensor, weight: Tensor) -> None:  # noqa: A002
    """The input's floating dtype is the weights' (torch.nn's message, with the two fixes);
    under autocast the products cast both, as torch.nn's do."""
    if input.dtype != weight.dtype and not torch.is_autocast_enabled(input.device.type):
        raise LayerError(f"input: dtype {input.dtype} does not match the weights' "
                         f"{weight.dtype}; convert the input (input.to({weight.dtype})) or the "
                         f"model (model.to({input.dtype}))")


def check_input(input: Tensor, input_size: int, batch_first: bool) -> None:  # noqa: A002
    if not isinstance(input, Tensor):
        raise TypeError(f"input: expected a Tensor or PackedSequence, got {type(input).__name__}")
    if input.dim() not in (2, 3):
        raise LayerError(f"input: expected a 2D (unbatched) or 3D (batched) tensor, "
                         f"got {input.dim()}D with shape {tuple(input.shape)}")
    if not input.is_floating_point():
        raise TypeError(f"input: expected a floating-point tensor, got {input.dtype}")
    if input.shape[-1] != input_size:
        layout = "(B, T, I)" if batch_first and input.dim() == 3 else "(T, B, I)"
        if input.dim() == 2:
            layout = "(T, I)"
        hint = ""
        if input.dim() == 3 and input.shape[-1] != input_size and input_size in input.shape[:2]:
            hint = " (is batch_first set correctly?)"
        raise LayerError(f"input: expected last dimension I = input_size = {input_size} in a "
                         f"{layout} tensor, got shape {tuple(input.shape)}{hint}")
    steps = input.shape[1] if batch_first and input.dim() == 3 else input.shape[0]
    if steps == 0:  # torch.nn refuses it too; an empty batch (B = 0) is fine
        raise LayerError(f"input: expected at least one step, got shape {tuple(input.shape)}")


def check_lengths(lengths, batch: int, steps: int, unbatched: bool) -> Tensor | None:
    """Validate ``lengths`` and return it as a CPU int64 tensor (or None)."""
    if lengths is None:
        return None
    if isinstance(lengths, Tensor):
        if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
            raise TypeError(f"lengths: expected integers, got a tensor of {lengths.dtype}")
        values = lengths.detach().to("cpu", torch.int64)
    else:
        try:
            items = list(lengths)
        except TypeError:
            raise TypeError(f"lengths: expected a list or 1D integer tensor, "
                            f"got {type(lengths).__name__}") from None
        for item in items:
            if isinstance(item, bool) or not isinstance(item, numbers.Integral):
                raise TypeError(f"lengths: expected integers, got {item!r}")
        values = torch.tensor(items, dtype=torch.int64)
    if unbatched and values.dim() == 0:
        values = values.reshape(1)
    if values.dim() != 1 or values.numel() != batch:
        hint = " (is batch_first set correctly?)" if values.numel() == steps != batch else ""
        raise LayerError(f"lengths: expected {batch} lengths (one per sequence, shape ({batch},)),"
                         f" got shape {tuple(values.shape)}{hint}")
    low, high = int(values.min()), int(values.max())
    if low < 1 or high > steps:
        raise LayerError(f"lengths: expected every length in [1, T = {steps}], "
                         f"got min {low} and max {high}")
    return values


def check_hx(hx, shapes, seq: Tensor, unbatched: bool, is_lstm: bool) -> tuple[Tensor, ...]:
    if is_lstm:
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError(f"hx: expected a tuple (h_0, c_0) for LSTM, got {type(hx).__name__}")
        states, names = tuple(hx), ("hx[0] (h_0)", "hx[1] (c_0)")
    else:
        if not isinstance(hx, Tensor):
            raise TypeError(f"hx: expected a Tensor, got {type(hx).__name__}")
        states, names = (hx,), ("hx",)
    for state, name, shape in zip(states, names, shapes):
        if not isinstance(state, Tensor):
            raise TypeError(f"{name}: expected a Tensor, got {type(state).__name__}")
        want = (shape[0], shape[2]) if unbatched else shape
        if tuple(state.shape) != want:
            raise LayerError(f"{name}: expected shape {want}, got {tuple(state.shape)}")
        if state.dtype != seq.dtype:
            raise TypeError(f"{name}: expected dtype {seq.dtype} (the input's), got {state.dtype}")
        if state.device != seq.device:
            raise ValueError(f"{name}: expected device {seq.device} (the input's), "
                             f"got {state.device}")
    return states
