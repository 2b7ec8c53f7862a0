"""PNG of the loss curves of a run (matplotlib, optional)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from rnnkit._io import atomic_write_bytes

__all__ = ["plot_losses"]


def plot_losses(records: list[dict[str, Any]], path: Path, title: str = "") -> Path | None:
    """Train and validation loss against step, written atomically to ``path``.

    Returns ``path``, or None when matplotlib is not installed or there is nothing to plot.
    """
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        from matplotlib.figure import Figure
    except ImportError:
        return None
    train = [(r["step"], r["train_loss"]) for r in records if r.get("train_loss") is not None]
    valid = [(r["step"], r["valid_loss"]) for r in records if r.get("valid_loss") is not None]
    if not train and not valid:
        return None
    figure = Figure(figsize=(7, 4.5), dpi=100)
    axes = figure.add_subplot()
    for points, label, style in ((train, "train", "-"), (valid, "validation", "o-")):
        if points:
            axes.plot(*zip(*points), style, label=label, markersize=3)
    axes.set_xlabel("step")
    axes.set_ylabel("loss (nats per token)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())
    return path
