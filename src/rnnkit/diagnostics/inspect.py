"""``rnnkit inspect``: run a checkpoint on a text and write the HTML report.

For a language model, a tagger or a classifier checkpoint: the input read by the model, the
activations of chosen units of its top recurrent layer (by default the ones that vary most over
this input), its predictions (top-k next tokens, per-word labels, or class probabilities), the
gradient flow through time on this input, and the training curves of the run's metrics log.

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
from rnnkit.diagnostics.flow import gradient_flow
from rnnkit.diagnostics.report import Report, UnitTrace, write_report
from rnnkit.errors import RnnkitError
from rnnkit.nn.rnn import RecurrentBase
from rnnkit.train import checkpoint as ckpt
from rnnkit.train.logging import read_metrics

__all__ = ["InspectConfig", "inspect_checkpoint", "default_output", "read_input_text"]

TASKS = ("lm", "tag", "classify")


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
        if not self.text.strip():
            raise RnnkitError(f"{self.source}: the text is empty")


@dataclass
class _Run:
    """One pass of a model over the input, whatever the task."""

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


def default_output(directory: Path) -> Path:
    """``report.html`` in the run directory of checkpoint ``directory``."""
    return _run_dir(directory) / "report.html"


def inspect_checkpoint(config: InspectConfig) -> Path:
    """Write the report of ``config.checkpoint`` on ``config.text``; returns its path."""
    directory = ckpt.resolve_checkpoint(config.checkpoint, prefer="best")
    saved = ckpt.read_json(directory / ckpt.CONFIG)
    task = saved.get("task") if isinstance(saved, dict) else None
    if task not in TASKS:
        raise RnnkitError(f"checkpoint {directory}: inspect reads {', '.join(TASKS)} "
                          f"checkpoints, this one is from task {task!r}")
    run = {"lm": _run_lm, "tag": _run_tagger, "classify": _run_classifier}[task](
        directory, config)
    report = _report(run, directory, saved, config)
    out = Path(config.out) if config.out else default_output(directory)
    try:
        write_report(report, out)
    except OSError as err:
        raise RnnkitError(f"--out {out}: cannot write: {err.strerror}") from None
    return out


# ---------------------------------------------------------------------- activations


def _top_layer(model: nn.Module) -> RecurrentBase:
    layer = getattr(model, "rnn", None)
    if isinstance(layer, RecurrentBase):
        return layer
    for module in model.modules():
        if isinstance(module, RecurrentBase):
            return module
    raise RnnkitError("the model has no rnnkit recurrent layer to inspect")


class _Capture:
    """Keep the output ``(T, B, D·H)`` (or batch-first) of the model's recurrent stack."""

    def __init__(self, layer: RecurrentBase) -> None:
        self.layer, self.output = layer, None

    def __enter__(self) -> _Capture:
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


def _limit(symbols: list, config: InspectConfig, notes: list[str]) -> list:
    if len(symbols) > config.max_symbols:
        notes.append(f"The input has {len(symbols)} symbols; only the first "
                     f"{config.max_symbols} are shown (--max-symbols).")
        return symbols[: config.max_symbols]
    return symbols


def _top_k_text(probs: Tensor, k: int, name) -> tuple[str, list[str]]:
    values, ids = probs.topk(min(k, probs.numel()))
    cells = [f"{name(i)!r} {p:.2f}" for p, i in zip(values.tolist(), ids.tolist())]
    return "next: " + "  ".join(cells), cells


# ---------------------------------------------------------------------- tasks


def _run_lm(directory: Path, config: InspectConfig) -> _Run:
    from rnnkit.tasks.lm import load_lm

    model, tokenizer, _ = load_lm(directory, device="cpu")
    notes: list[str] = []
    ids = _limit([int(i) for i in tokenizer.encode(config.text)], config, notes)
    if not ids:
        raise RnnkitError(f"{config.source}: no tokens in the text")
    tokens = torch.tensor(ids, dtype=torch.long).unsqueeze(1)  # (T, 1)
    with _Capture(_top_layer(model)) as capture, torch.no_grad():
        logits, _ = model(tokens)  # (T, 1, V)
    probs = torch.softmax(logits[:, 0].float(), dim=-1)  # (T, V)
    symbols = [tokenizer.decode([i]) for i in ids]
    predictions, table = [], []
    for t, symbol in enumerate(symbols):
        text, cells = _top_k_text(probs[t], config.top_k, lambda i: tokenizer.decode([i]))
        actual = f"{float(probs[t - 1, ids[t]]):.2f}" if t > 0 else ""
        predictions.append(text)
        table.append([str(t), repr(symbol), actual, *cells])

    def loss_fn(m, _):
        out, _ = m(tokens)
        if len(ids) < 2:
            return out.float().logsumexp(-1).sum()
        return nn.functional.cross_entropy(out[:-1, 0].float(), tokens[1:, 0])

    header = ["t", "symbol", "p(symbol)", *[f"#{k + 1} next" for k in range(config.top_k)]]
    return _Run(model, symbols, capture.output, predictions, loss_fn, table=table,
                table_title=f"Top-{config.top_k} next-token predictions", table_header=header,
                notes=notes)


def _run_tagger(directory: Path, config: InspectConfig) -> _Run:
    from rnnkit.tasks import tag

    model, vocabs, _ = tag.load(str(directory))
    notes: list[str] = []
    words = _limit(config.text.split(), config, notes)
    norm = [w.lower() if vocabs.lowercase else w for w in words]
    chars = ([vocabs.chars.encode(w[: vocabs.max_word_length]) for w in words]
             if vocabs.chars is not None else [])
    item = tag.Encoded(vocabs.words.encode(norm), chars, [None] * len(words))
    batch = tag.collate([item], vocabs)
    with _Capture(_top_layer(model)) as capture, torch.no_grad():
        logits = tag.forward(model, batch)[0]  # (T, K)
    probs = torch.softmax(logits.float(), dim=-1)
    best = probs.argmax(-1)
    labels = vocabs.tags.decode(best.tolist())
    predictions, table = [], []
    for t, word in enumerate(words):
        text, cells = _top_k_text(probs[t], config.top_k, lambda i: vocabs.tags.decode([i])[0])
        predictions.append(text.replace("next: ", "labels: "))
        table.append([str(t), word, labels[t], f"{float(probs[t, best[t]]):.2f}", *cells[1:]])

    def loss_fn(m, _):
        return nn.functional.cross_entropy(tag.forward(m, batch)[0].float(), best)

    header = ["t", "word", "label", "p", *[f"#{k + 2}" for k in range(config.top_k - 1)]]
    return _Run(model, words, capture.output, predictions, loss_fn, labels=labels, table=table,
                table_title="Per-word labels", table_header=header, words=True, notes=notes)


def _run_classifier(directory: Path, config: InspectConfig) -> _Run:
    from rnnkit.tasks import classify

    model, vocab, label_vocab, data = classify.load(str(directory))
    notes: list[str] = []
    words = _limit(config.text.split(), config, notes)
    tokens = [w.lower() for w in words] if data.get("lowercase") else words
    chars = data.get("chars")  # the character vocabulary of a --chars classifier, or None
    batch = classify.collate([vocab.encode(tokens)], None, vocab,
                             char_ids=None if chars is None else [chars.encode(tokens)],
                             char_pad=0 if chars is None else chars.vocab.pad_id)
    with _Capture(_top_layer(model)) as capture, torch.no_grad():
        logits = classify.logits_of(model, batch)[0]  # (K,)
    probs = torch.softmax(logits.float(), dim=-1)
    names = label_vocab.decode(list(range(len(probs))))
    ranked = sorted(zip(names, probs.tolist()), key=lambda pair: -pair[1])
    best = probs.argmax().reshape(1)
    summary = "classes: " + "  ".join(f"{n} {p:.2f}" for n, p in ranked[: config.top_k])

    def loss_fn(m, _):
        return nn.functional.cross_entropy(classify.logits_of(m, batch).float(), best)

    return _Run(model, words, capture.output, [summary] * len(words), loss_fn,
                class_probs=ranked, words=True, notes=notes)


# ---------------------------------------------------------------------- the report


def _report(run: _Run, directory: Path, saved: dict, config: InspectConfig) -> Report:
    units = _choose_units(run.hidden.float(), config)
    flow = gradient_flow(run.model, None, run.loss_fn)
    loss_note = ("next-token loss of the input" if saved["task"] == "lm"
                 else "loss of the model's own predictions")
    images = []
    png = plots.plot_flow_by_distance(flow, f"Gradient flow on this input ({loss_note})")
    if png:
        images.append(("Gradient flow through time", "Mean ‖∂L/∂h_t‖ per layer against the "
                       "number of steps before the last one, log scale: a falling line means "
                       "the error from the end fades before reaching early steps.", png))
    records = read_metrics(_run_dir(directory) / "metrics.jsonl")
    heat = plots.plot_flow_heatmap(records)
    if heat:
        images.append(("Gradient flow during training", "Recorded with --diagnostics-every: "
                       "training steps × time positions.", heat))
    curves = plots.plot_training_curves(records)
    if curves:
        images.append(("Training curves", "From the run's metrics.jsonl.", curves))
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
