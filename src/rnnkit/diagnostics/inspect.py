"""The HTML report of one run of a checkpoint over a text (``rnnkit inspect``).

Each application's ``inspect`` hook runs its model over the text and returns an
:class:`InspectRun` (the symbols read, the top recurrent layer's outputs, its predictions, a loss
for the gradient flow), built with the helpers here (:class:`Capture`, :func:`limit_symbols`,
:func:`top_k_cells`); :func:`write_inspect_report` adds the activations of chosen units (by
default the ones that vary most over this input), the gradient flow through time on this input
and the training curves of the run's metrics log, and writes the page.

The gradient flow needs a loss: for a language model the next-token loss of the text itself;
for a tagger or classifier, which have no gold labels here, the loss of the model's own
predictions (how strongly each step supports what the model decided).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.diagnostics import plots
from rnnkit.diagnostics.flow import RECURRENT_LAYERS, gradient_flow, recurrent_stats
from rnnkit.diagnostics.report import Report, UnitTrace, write_report
from rnnkit.errors import RnnkitError
from rnnkit.train.logging import read_metrics

__all__ = ["InspectConfig", "InspectRun", "Capture", "top_layer", "limit_symbols", "top_k_cells",
           "write_inspect_report", "write_page", "write_run_report", "default_output",
           "read_input_text"]

@dataclass
class InspectConfig:
    """Options of ``rnnkit inspect``."""

    checkpoint: str
    text: str
    out: str | None = None  # default: report.html in the run directory
    units: list[int] = field(default_factory=list)  # empty: the most input-sensitive ones
    num_units: int = 4
    top_k: int = 5
    max_symbols: int = 2000
    source: str = "--text"  # for messages

    def __post_init__(self) -> None:
        for name in ("num_units", "top_k", "max_symbols"):
            if getattr(self, name) < 1:
                raise RnnkitError(f"--{name.replace('_', '-')}: must be >= 1, "
                                  f"got {getattr(self, name)}")

    def require_text(self) -> None:
        """For a report over an input: the text must not be empty."""
        if self.source == "--text" and not self.text:
            raise RnnkitError("--text or --file: required (the input the model reads)")
        if not self.text.strip():
            raise RnnkitError(f"{self.source}: the text is empty")


@dataclass
class InspectRun:
    """One pass of a model over the input, whatever the application: what an application's
    ``inspect`` hook returns and the report shows."""

    model: nn.Module
    symbols: list[str]
    hidden: Tensor  # (S, U) top recurrent layer's output per symbol
    predictions: list[str]
    loss_fn: Any  # (model, None) -> scalar loss, for gradient_flow
    labels: list[str] = field(default_factory=list)
    table_title: str = ""
    table_header: list[str] = field(default_factory=list)
    table: list[list[str]] = field(default_factory=list)
    class_probs: list[tuple[str, float]] = field(default_factory=list)
    words: bool = False
    notes: list[str] = field(default_factory=list)
    loss_note: str = "loss of the model's own predictions"  # what the gradient flow is of


def default_output(directory: Path) -> Path:
    """``report.html`` in the run directory of checkpoint ``directory``."""
    return _run_dir(directory) / "report.html"


def write_inspect_report(run: InspectRun, directory: Path, saved: dict,
                         config: InspectConfig) -> Path:
    """Write the report of one application's ``run`` over ``config.text``; returns its path."""
    report = _report(run, directory, saved, config)
    out = Path(config.out) if config.out else default_output(directory)
    try:
        write_report(report, out)
    except OSError as err:
        raise RnnkitError(f"--out {out}: cannot write: {err.strerror}") from None
    return out


# ---------------------------------------------------------------------- activations


def top_layer(model: nn.Module) -> nn.Module:
    """The model's recurrent stack (``model.rnn``, else its first rnnkit recurrent layer, one
    with the cell options included)."""
    layer = getattr(model, "rnn", None)
    if isinstance(layer, RECURRENT_LAYERS):
        return layer
    for module in model.modules():
        if isinstance(module, RECURRENT_LAYERS):
            return module
    raise RnnkitError("the model has no rnnkit recurrent layer to inspect")


class Capture:
    """Keep the output ``(T, B, D·H)`` (or batch-first) of the model's recurrent stack."""

    def __init__(self, layer: nn.Module) -> None:
        self.layer, self.output = layer, None

    def __enter__(self) -> Capture:
        self.handle = self.layer.register_forward_hook(self._hook)
        return self

    def _hook(self, module, inputs, outputs) -> None:
        output = outputs[0].detach()
        self.output = output[0] if module.batch_first else output[:, 0]  # (T, D·H), row 0

    def __exit__(self, *exc) -> None:
        self.handle.remove()


def _choose_units(hidden: Tensor, config: InspectConfig) -> list[UnitTrace]:
    size = hidden.shape[1]
    if config.units:
        bad = [u for u in config.units if not 0 <= u < size]
        if bad:
            raise RnnkitError(f"--units: unit {bad[0]} does not exist; the top layer has "
                              f"{size} units (0–{size - 1})")
        return [UnitTrace(u, hidden[:, u].tolist(), "chosen") for u in config.units]
    spread = hidden.std(0, unbiased=False) if hidden.shape[0] > 1 else hidden[0].abs()
    order = torch.argsort(spread, descending=True)[: config.num_units].tolist()
    return [UnitTrace(u, hidden[:, u].tolist(), f"std {float(spread[u]):.3g} over the input")
            for u in order]


def limit_symbols(symbols: list, config: InspectConfig, notes: list[str]) -> list:
    if len(symbols) > config.max_symbols:
        notes.append(f"The input has {len(symbols)} symbols; only the first "
                     f"{config.max_symbols} are shown (--max-symbols).")
        return symbols[: config.max_symbols]
    return symbols


def top_k_cells(probs: Tensor, k: int, name) -> tuple[str, list[str]]:
    values, ids = probs.topk(min(k, probs.numel()))
    cells = [f"{name(i)!r} {p:.2f}" for p, i in zip(values.tolist(), ids.tolist())]
    return "next: " + "  ".join(cells), cells


# ---------------------------------------------------------------------- the report


def _report(run: InspectRun, directory: Path, saved: dict, config: InspectConfig) -> Report:
    units = _choose_units(run.hidden.float(), config)
    flow = gradient_flow(run.model, None, run.loss_fn)
    loss_note = run.loss_note
    images = []
    png = plots.plot_flow_by_distance(flow, f"Gradient flow on this input ({loss_note})")
    if png:
        images.append(("Gradient flow through time", "Mean ‖∂L/∂h_t‖ per layer "
                       f"({', '.join(flow.layers)}) against the number of steps before the "
                       "last one, log scale: a falling line means the error from the end fades "
                       "before reaching early steps.", png))
    records = read_metrics(_run_dir(directory) / "metrics.jsonl")
    images += _training_images(records)
    notes = list(run.notes)
    if not records:
        notes.append(f"No metrics.jsonl next to {directory}: no training curves.")
    radius = "; ".join(f"{name}: " + ", ".join(f"{k} {v:.3g}" for k, v in stats.items())
                       for name, stats in flow.recurrent.items())
    meta = [("checkpoint", str(directory)), ("task", saved["task"]),
            ("step", str(saved.get("step", "?"))), ("input", config.source),
            ("symbols", str(len(run.symbols))), ("W_hh", radius)]
    return Report(
        title=f"rnnkit inspect — {saved['task']} checkpoint {directory.name}",
        symbols=run.symbols, units=units, meta=meta, predictions=run.predictions,
        labels=run.labels, word_spacing=run.words, table_title=run.table_title,
        table_header=run.table_header, table=run.table, class_probs=run.class_probs,
        images=images, notes=notes,
    )


def write_page(report: Report, directory: Path, config: InspectConfig) -> Path:
    """Write a :class:`Report` an application built whole (its own kind of input)."""
    out = Path(config.out) if config.out else default_output(directory)
    try:
        write_report(report, out)
    except OSError as err:
        raise RnnkitError(f"--out {out}: cannot write: {err.strerror}") from None
    return out


def write_run_report(model: nn.Module, directory: Path, saved: dict, config: InspectConfig,
                     note: str) -> Path:
    """The report of a checkpoint without an input (its application has no ``inspect`` hook):
    the recurrent weights' spectra, the gradient flow recorded during training, the training
    curves."""
    records = read_metrics(_run_dir(directory) / "metrics.jsonl")
    images = _training_images(records)
    stats = recurrent_stats(model)
    meta = [("checkpoint", str(directory)), ("task", saved["task"]),
            ("step", str(saved.get("step", "?")))]
    meta += [(name, ", ".join(f"{k} {v:.3g}" for k, v in values.items()))
             for name, values in stats.items()]
    notes = [note] + ([] if records else [f"No metrics.jsonl next to {directory}: no training "
                                          "curves."])
    report = Report(title=f"rnnkit inspect — {saved['task']} checkpoint {directory.name}",
                    symbols=[], units=[], meta=meta, images=images, notes=notes)
    return write_page(report, directory, config)


def _training_images(records: list[dict]) -> list[tuple[str, str, bytes]]:
    """The run's gradient flow recorded during training and its training curves."""
    images = []
    heat = plots.plot_flow_heatmap(records)
    if heat:
        images.append(("Gradient flow during training", "Recorded with --diagnostics-every: "
                       "training steps × time positions.", heat))
    curves = plots.plot_training_curves(records)
    if curves:
        images.append(("Training curves", "From the run's metrics.jsonl.", curves))
    return images


def _run_dir(directory: Path) -> Path:
    return directory.parent if (directory.parent / "metrics.jsonl").exists() else directory


def read_input_text(path: str | os.PathLike) -> str:
    """The UTF-8 text of ``path`` (``RnnkitError`` naming it when unreadable)."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RnnkitError(f"--file {path}: file not found") from None
    except UnicodeDecodeError as err:
        raise RnnkitError(f"--file {path}: not UTF-8 text ({err.reason} at byte "
                          f"{err.start})") from None
    except OSError as err:
        raise RnnkitError(f"--file {path}: cannot read: {err.strerror}") from None
