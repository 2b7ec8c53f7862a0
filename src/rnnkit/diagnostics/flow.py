r"""Gradient flow through time: how much error reaches each step, layer by layer.

Backpropagation through time carries the error backwards: the error reaching the state ``h_t``
is the error from its own output plus what arrives from ``h_{t+1}``,

.. math::
    \frac{\partial L}{\partial h_t} = \frac{\partial L}{\partial o_t}
        + \Big(\frac{\partial h_{t+1}}{\partial h_t}\Big)^{\!\top}
          \frac{\partial L}{\partial h_{t+1}},

and over k steps the carried part is multiplied by k Jacobians, roughly by ``W_hh`` (times the
slope of the nonlinearity) k times: it shrinks when the spectral radius of ``W_hh`` is below 1
(vanishing gradients) and can grow when it is above (exploding). :func:`gradient_flow` measures
``‖∂L/∂h_t‖`` for every layer, direction and step of a real batch, together with the gradient
norm of every weight and the spectral radius and largest singular value of every ``W_hh``.

The measurement comes from the hand-written BPTT loops themselves (:mod:`rnnkit.functional.probe`)
and therefore needs the ``reference`` backend; recording switches every rnnkit layer of the model
to it for the recorded pass and back afterwards. The layers with the cell options
(:mod:`rnnkit.nn.regularised`) have one backward of their own, which records the same quantity.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.functional import probe as _probe
from rnnkit.functional.cells import spec
from rnnkit.nn.regularised import RegularisedGRU, RegularisedLSTM
from rnnkit.nn.rnn import RecurrentBase

__all__ = ["LayerFlow", "GradientFlow", "gradient_flow", "recording_flow", "recurrent_stats",
           "RECURRENT_LAYERS"]

# Every rnnkit recurrent layer with a W_hh, each recorded by the probe: the plain ones and those
# with the cell options (layer norm, recurrent dropout, zoneout: what --layer-norm,
# --recurrent-dropout and --zoneout build).
RECURRENT_LAYERS = (RecurrentBase, RegularisedLSTM, RegularisedGRU)

_W_HH = re.compile(r"^(?P<prefix>.*?)weight_hh_l(?P<layer>\d+)(?P<suffix>_reverse)?$")


@dataclass
class LayerFlow:
    """‖∂L/∂h_t‖₂ of one layer and direction, averaged over the sequences of the batch.

    Attributes:
        name: ``<module>.l<layer>`` (``_reverse`` for the backward direction), e.g. ``rnn.l0``.
        by_position: ``[t]`` mean over the sequences that reach time position t.
        by_distance: ``[d]`` mean over the sequences, d steps before the last step this
            direction processed (forward: position L−1−d; reverse: position d). With the loss
            at the end, d is the distance from the loss.
    """

    name: str
    by_position: list[float]
    by_distance: list[float]


@dataclass
class GradientFlow:
    """What :func:`gradient_flow` measured on one batch.

    Attributes:
        loss: the loss that was backpropagated (None when not known).
        layers: per layer and direction, in the model's parameter order.
        weight_grad_norms: ‖∂L/∂θ‖₂ of every parameter with a gradient, by parameter name.
        recurrent: per ``W_hh`` parameter name, ``sigma_max`` (largest singular value) and
            ``spectral_radius`` (largest |eigenvalue|; Elman) or ``spectral_radius_<gate>`` per
            square gate block (LSTM gates i f g o, GRU r z n).
    """

    loss: float | None
    layers: dict[str, LayerFlow] = field(default_factory=dict)
    weight_grad_norms: dict[str, float] = field(default_factory=dict)
    recurrent: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``diagnostics`` field of a metrics-log record)."""
        return {
            "loss": _round(self.loss),
            "dh_norm": {n: [_round(v) for v in f.by_position] for n, f in self.layers.items()},
            "dh_norm_by_distance": {n: [_round(v) for v in f.by_distance]
                                    for n, f in self.layers.items()},
            "grad_norm": {n: _round(v) for n, v in self.weight_grad_norms.items()},
            "recurrent": {n: {k: _round(v) for k, v in s.items()}
                          for n, s in self.recurrent.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GradientFlow:
        """Inverse of :meth:`to_json` (values rounded)."""
        by_distance = data.get("dh_norm_by_distance", {})
        layers = {name: LayerFlow(name, _floats(values), _floats(by_distance.get(name, [])))
                  for name, values in data.get("dh_norm", {}).items()}
        return cls(data.get("loss"), layers, dict(data.get("grad_norm", {})),
                   dict(data.get("recurrent", {})))


def _round(value: float | None) -> float | None:
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return None  # JSON has no NaN
    return float(f"{value:.5g}")


def _floats(values: list) -> list[float]:
    return [float("nan") if v is None else float(v) for v in values]


# ---------------------------------------------------------------------- measuring


def gradient_flow(
    model: nn.Module,
    batch: Any,
    loss_fn: Callable[[nn.Module, Any], Any],
) -> GradientFlow:
    """Run ``loss_fn(model, batch)`` forwards and backwards once and measure the gradient flow.

    ``loss_fn`` returns a scalar loss tensor, or anything with a ``.loss`` (a task's
    ``step`` returns a :class:`~rnnkit.train.StepOutput`: ``gradient_flow(model, batch,
    task.step)``). The parameters' ``.grad`` are left as they were before the call.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    saved = [p.grad for p in params]
    for p in params:
        p.grad = None
    try:
        with recording_flow(model) as recording:
            loss = _scalar_loss(loss_fn(model, batch))
            loss.backward()
        return recording.result(float(loss.detach()))
    finally:
        for p, grad in zip(params, saved):
            p.grad = grad


def _scalar_loss(result: Any) -> Tensor:
    loss = getattr(result, "loss", result)
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        raise TypeError(f"loss_fn: expected a scalar tensor or an object with .loss, got "
                        f"{type(loss).__name__}")
    return loss.reshape(())


class FlowRecording:
    """An active recording; :meth:`result` once the backward pass is done."""

    def __init__(self, model: nn.Module, probe: _probe.Probe) -> None:
        self.model, self.probe = model, probe

    def result(self, loss: float | None, grad_scale: float = 1.0) -> GradientFlow:
        """Collect the recorded norms and the current ``.grad`` (divided by ``grad_scale``, the
        loss scale of mixed precision) into a :class:`GradientFlow`."""
        names = _w_hh_names(self.model)
        layers = _layer_flows(self.probe.records, names, grad_scale)
        grads = {name: float(torch.linalg.vector_norm(p.grad.float())) / grad_scale
                 for name, p in self.model.named_parameters() if p.grad is not None}
        return GradientFlow(loss, layers, grads, recurrent_stats(self.model))


@contextmanager
def recording_flow(model: nn.Module) -> Iterator[FlowRecording]:
    """Record the gradient flow of the backward passes run inside the block.

    Every rnnkit layer of ``model`` runs on the ``reference`` backend inside (the fused kernels
    do not record); each gets its own backend back on exit. A layer with the cell options
    (:mod:`rnnkit.nn.regularised`) has no backend: its one backward records its steps.
    """
    layers = [m for m in model.modules() if isinstance(m, RecurrentBase)]
    backends = [m.backend for m in layers]
    for module in layers:
        module.backend = "reference"
    try:
        with _probe.recording() as probe:
            yield FlowRecording(model, probe)
    finally:
        for module, backend in zip(layers, backends):
            module.backend = backend


# ---------------------------------------------------------------------- from records to layers


def _w_hh_names(model: nn.Module) -> dict[int, str]:
    """``data_ptr`` of each ``W_hh`` → layer name ``<module>.l<k>[_reverse]``."""
    names = {}
    for name, param in model.named_parameters():
        match = _W_HH.match(name)
        if match:
            names[param.data_ptr()] = f"{match['prefix']}l{match['layer']}{match['suffix'] or ''}"
    return names


def _layer_flows(records, names: dict[int, str], scale: float) -> dict[str, LayerFlow]:
    sums: dict[str, list[Tensor]] = {}  # name → [Σ by position, count, Σ by distance, count]
    for index, record in enumerate(records):
        name = names.get(record.w_hh.data_ptr(), f"layer{index}")
        norms = record.norms.cpu() / scale
        if record.schedule is None:
            parts = _plain_sums(norms, record.active, record.reverse)
        else:
            parts = _sums(norms, record.schedule)
        if name in sums:
            sums[name] = [_add_padded(a, b) for a, b in zip(sums[name], parts)]
        else:
            sums[name] = list(parts)
    order = list(dict.fromkeys(names.values()))
    ranked = sorted(sums, key=lambda n: order.index(n) if n in order else len(order))
    return {name: LayerFlow(name, _mean(*sums[name][:2]), _mean(*sums[name][2:]))
            for name in ranked}


def _sums(norms: Tensor, schedule) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per position and per distance: sum of the norms over rows, and the number of rows."""
    steps, batch = norms.shape
    lengths = schedule.lengths.cpu().unsqueeze(0)  # (1, B), processing order
    step = torch.arange(steps).unsqueeze(1)  # (T, 1)
    valid = (step < lengths).float()  # (T, B)
    if schedule.rows is None and not schedule.reverse:
        positions, position_valid = norms, valid  # processing order is time order
    else:
        positions = schedule.from_processing(norms.unsqueeze(-1)).squeeze(-1)
        position_valid = schedule.from_processing(valid.unsqueeze(-1)).squeeze(-1)
    distance = (lengths - 1 - step).clamp_min(0)  # (T, B)
    by_distance = torch.zeros(steps, batch).scatter_add_(0, distance, norms * valid)
    distance_count = torch.zeros(steps, batch).scatter_add_(0, distance, valid)
    return (positions.sum(1), position_valid.sum(1), by_distance.sum(1), distance_count.sum(1))


def _plain_sums(norms: Tensor, active: Tensor | None, reverse: bool):
    """As :func:`_sums`, for a record in plain order (every row through every step of the call,
    ``active`` marking the real ones; ``reverse``: step t is position T−1−t)."""
    steps, batch = norms.shape
    valid = torch.ones(steps, batch) if active is None else active.cpu().float()  # (T, B)
    norms = norms * valid
    # distance from the last step the row ran: the real steps after this one in the call
    after = (valid.flip(0).cumsum(0).flip(0) - valid).long()  # (T, B)
    by_distance = torch.zeros(steps, batch).scatter_add_(0, after, norms)
    distance_count = torch.zeros(steps, batch).scatter_add_(0, after, valid)
    if reverse:
        norms, valid = norms.flip(0), valid.flip(0)
    return norms.sum(1), valid.sum(1), by_distance.sum(1), distance_count.sum(1)


def _add_padded(a: Tensor, b: Tensor) -> Tensor:
    size = max(len(a), len(b))
    return nn.functional.pad(a, (0, size - len(a))) + nn.functional.pad(b, (0, size - len(b)))


def _mean(total: Tensor, count: Tensor) -> list[float]:
    return (total / count.clamp_min(1)).where(count > 0, torch.tensor(float("nan"))).tolist()


# ---------------------------------------------------------------------- W_hh


def recurrent_stats(model: nn.Module) -> dict[str, dict[str, float]]:
    """Largest singular value and spectral radius of every ``W_hh`` of the model's rnnkit
    layers, those with the cell options included (per square gate block for LSTM and GRU),
    computed in float64 on the CPU."""
    stats = {}
    for prefix, module in model.named_modules():
        if not isinstance(module, RECURRENT_LAYERS):
            continue
        gates = spec(module.mode).gates
        for name, param in module.named_parameters(recurse=False):
            if _W_HH.match(name):
                full = f"{prefix}.{name}" if prefix else name
                stats[full] = _matrix_stats(param.detach().to("cpu", torch.float64), gates)
    return stats


def _matrix_stats(weight: Tensor, gates: tuple[str, ...]) -> dict[str, float]:
    out = {"sigma_max": float(torch.linalg.matrix_norm(weight, ord=2))}
    if not gates:
        out["spectral_radius"] = _radius(weight)
        return out
    for gate, block in zip(gates, weight.chunk(len(gates), dim=0)):
        if block.shape[0] == block.shape[1]:
            out[f"spectral_radius_{gate}"] = _radius(block)
    return out


def _radius(square: Tensor) -> float:
    return float(torch.linalg.eigvals(square).abs().max()) if square.numel() else 0.0
