"""PNG plots of the gradient flow and of a run's metrics log (matplotlib, Agg, no display).

Each function returns the PNG as bytes, or None when there is nothing to plot;
:func:`write_png` saves one atomically. ``records`` are the lines of a run's ``metrics.jsonl``
(:func:`rnnkit.train.logging.read_metrics`).
"""

from __future__ import annotations

import io
import math
import os
from typing import Any

from rnnkit._io import atomic_write_bytes
from rnnkit.diagnostics.flow import GradientFlow

__all__ = [
    "plot_flow_by_distance",
    "plot_flow_heatmap",
    "plot_training_curves",
    "flows_from_records",
    "write_png",
]

MAX_HEATMAP_LAYERS = 4


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100)


def _png(figure) -> bytes:
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def write_png(path: str | os.PathLike, png: bytes) -> None:
    """Write ``png`` to ``path`` atomically."""
    atomic_write_bytes(path, png)


def _finite_positive(values: list[float]) -> list[tuple[int, float]]:
    return [(i, v) for i, v in enumerate(values) if v is not None and math.isfinite(v) and v > 0]


def plot_flow_by_distance(flow: GradientFlow, title: str = "") -> bytes | None:
    """‖∂L/∂h_t‖ against the distance (in steps) from the last step, one line per layer and
    direction, on a log scale: a falling line is a vanishing gradient, a rising one explodes."""
    lines = {name: _finite_positive(layer.by_distance) for name, layer in flow.layers.items()}
    lines = {name: points for name, points in lines.items() if points}
    if not lines:
        return None
    figure = _figure(7, 4.2)
    axes = figure.add_subplot()
    for name, points in lines.items():
        style = "--" if name.endswith("_reverse") else "-"
        axes.plot(*zip(*points), style, label=name, linewidth=1.5)
    axes.set_yscale("log")
    axes.set_xlabel("steps before the last step (distance from the loss at the end)")
    axes.set_ylabel("mean ‖∂L/∂h_t‖₂")
    axes.set_title(title or "Gradient flow through time")
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize=8)
    return _png(figure)


def flows_from_records(records: list[dict[str, Any]]) -> list[tuple[int, GradientFlow]]:
    """(training step, flow) of every diagnostics record of a metrics log, in log order."""
    return [(int(r["step"]), GradientFlow.from_json(r["diagnostics"]))
            for r in records if isinstance(r.get("diagnostics"), dict)]


def plot_flow_heatmap(records: list[dict[str, Any]]) -> bytes | None:
    """log₁₀ ‖∂L/∂h_t‖ over training steps (rows) × time positions (columns), one panel per
    layer and direction (the first four), from the ``--diagnostics-every`` records."""
    flows = flows_from_records(records)
    if not flows:
        return None
    import numpy as np

    names = list(dict.fromkeys(n for _, flow in flows for n in flow.layers))[:MAX_HEATMAP_LAYERS]
    figure = _figure(7, 1.2 + 2.4 * len(names))
    steps = [step for step, _ in flows]
    for index, name in enumerate(names):
        rows = [flow.layers[name].by_position if name in flow.layers else [] for _, flow in flows]
        width = max((len(r) for r in rows), default=0)
        grid = np.full((len(rows), max(width, 1)), np.nan)
        for i, row in enumerate(rows):
            values = np.array([np.nan if v is None else v for v in row], dtype=float)
            with np.errstate(divide="ignore", invalid="ignore"):
                grid[i, : len(values)] = np.where(values > 0, np.log10(values), np.nan)
        axes = figure.add_subplot(len(names), 1, index + 1)
        image = axes.imshow(grid, aspect="auto", origin="lower", cmap="viridis",
                            interpolation="nearest",
                            extent=(-0.5, grid.shape[1] - 0.5, -0.5, len(rows) - 0.5))
        ticks = np.linspace(0, len(rows) - 1, min(len(rows), 6)).round().astype(int)
        axes.set_yticks(ticks, [str(steps[t]) for t in ticks])
        axes.set_ylabel("training step")
        axes.set_title(f"{name}: log₁₀ mean ‖∂L/∂h_t‖", fontsize=10)
        figure.colorbar(image, ax=axes)
    axes.set_xlabel("time position t")
    return _png(figure)


def _series(records: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    return [(r["step"], r[key]) for r in records
            if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]


def _radius_series(records: list[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    series: dict[str, list[tuple[int, float]]] = {}
    for step, flow in flows_from_records(records):
        for name, stats in flow.recurrent.items():
            for key, value in stats.items():
                if value is not None and key != "sigma_max":
                    label = name + key.removeprefix("spectral_radius").replace("_", " ")
                    series.setdefault(label, []).append((step, value))
    return series


def plot_training_curves(records: list[dict[str, Any]], title: str = "") -> bytes | None:
    """Loss (train, validation), learning rate, gradient norm before clipping and, with
    diagnostics records, the spectral radius of each ``W_hh`` against the training step."""
    panels = [
        ("loss", {"train": _series(records, "train_loss"),
                  "validation": _series(records, "valid_loss")}, False),
        ("learning rate", {"lr": _series(records, "lr")}, False),
        ("gradient norm (before clipping)", {"‖g‖": _series(records, "grad_norm")}, True),
        ("spectral radius of W_hh", _radius_series(records), False),
    ]
    panels = [(label, {k: v for k, v in lines.items() if v}, log)
              for label, lines, log in panels]
    panels = [panel for panel in panels if panel[1]]
    if not panels:
        return None
    figure = _figure(7, 0.6 + 2.3 * len(panels))
    for index, (label, lines, log) in enumerate(panels):
        axes = figure.add_subplot(len(panels), 1, index + 1)
        for name, points in lines.items():
            axes.plot(*zip(*points), "o-" if len(points) < 30 else "-", label=name,
                      markersize=3, linewidth=1.2)
        values = [v for points in lines.values() for _, v in points]
        if log and min(values) > 0 and max(values) > 20 * min(values):  # a wide range only
            axes.set_yscale("log")
        axes.set_ylabel(label, fontsize=9)
        axes.grid(alpha=0.3)
        if len(lines) > 1:
            axes.legend(fontsize=8)
    axes.set_xlabel("step")
    if title:
        figure.suptitle(title)
    return _png(figure)
