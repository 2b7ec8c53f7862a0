"""The HTML report of ``rnnkit speech report``: where each character fires.

One page (:mod:`rnnkit.diagnostics.report`): the utterance's normalised features as a
spectrogram, under it the per-frame CTC posteriors of each character on the same time axis
(the blank drawn grey), the decoded transcript with ``log p(text | audio)``, and the output
frames coloured by the four most varying units of the top recurrent layer (hover for the frame's
best symbols).

Axes: T frames in, T' frames out, F features, V symbols.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnnkit.data.audio import load_frames
from rnnkit.diagnostics.report import Report, UnitTrace, render_report
from rnnkit.models.speech_decoding import greedy_decode, transcript_log_prob

__all__ = ["speech_report", "fill_report"]

_BLANK_MARK = "·"


def speech_report(loaded: Any, path: Path) -> str:
    """The report page for the WAV file at ``path`` as one HTML document."""
    report = Report(title=f"rnnkit speech: {path.name}", symbols=[], units=[])
    fill_report(loaded, path, report)
    return render_report(report)


def fill_report(loaded: Any, path: Path, report: Report) -> None:
    """Add to ``report`` the frames, posteriors, units and transcript of the file at ``path``."""
    features = loaded.config.feature_config()
    frames = load_frames(path, features)  # (T, F)
    captured: list[torch.Tensor] = []
    hook = loaded.model.rnn.register_forward_hook(lambda m, i, out: captured.append(out[0]))
    try:
        with torch.no_grad():
            log_probs, _ = loaded.model(torch.from_numpy(frames)[None],
                                        torch.tensor([len(frames)]))
    finally:
        hook.remove()
    log_probs = log_probs[0].float()  # (T', V)
    ids = greedy_decode(log_probs)
    report.symbols = [_symbol(loaded.alphabet, k) for k in log_probs.argmax(-1).tolist()]
    report.units = _top_units(captured[0][0], 4)
    report.meta += [
        ("file", str(path)), ("transcript", loaded.alphabet.decode(ids)),
        ("log p(text | audio)", f"{transcript_log_prob(log_probs, ids):.4f}"),
        ("frames", f"{len(frames)} in, {len(log_probs)} out "
                   f"({features.hop_ms * loaded.config.model.subsample:g} ms each)")]
    report.predictions = [_top_symbols(loaded.alphabet, row) for row in log_probs]
    report.images.append((
        "Spectrogram and CTC posteriors", f"Top: the normalised {features.kind} features. "
        "Bottom: p_t(symbol | audio) per output frame; each character is labelled where it "
        "fires, the blank is grey.",
        _plot(frames, log_probs.exp().numpy(), loaded.alphabet, features.hop_ms / 1000,
              loaded.config.model.subsample)))
    report.notes.append("The symbols below are the best symbol of each output frame "
                        "(· the blank).")


def _symbol(alphabet, k: int) -> str:
    return _BLANK_MARK if k == 0 else alphabet.decode([k])


def _top_symbols(alphabet, row: torch.Tensor) -> str:
    values, indices = row.exp().topk(min(3, row.numel()))
    return ", ".join(f"{_symbol(alphabet, int(k))!r} {float(v):.2f}"
                     for v, k in zip(values, indices, strict=True))


def _top_units(states: torch.Tensor, count: int) -> list[UnitTrace]:
    """The ``count`` units of ``states`` ``(T', 2H)`` that vary most over the utterance."""
    spread = states.std(0) if states.shape[0] > 1 else states.abs()[0]
    units = spread.argsort(descending=True)[:count].tolist()
    return [UnitTrace(u, states[:, u].tolist(), f"std {float(spread[u]):.2f} over the frames")
            for u in units]


def _plot(frames: np.ndarray, posteriors: np.ndarray, alphabet, hop_s: float,
          subsample: int) -> bytes:
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 5.5), dpi=100)
    top, bottom = figure.subplots(2, 1, sharex=True)
    seconds = len(frames) * hop_s
    top.imshow(frames.T, origin="lower", aspect="auto", cmap="magma",
               extent=(0, seconds, 0, frames.shape[1]))
    top.set_ylabel("feature")
    times = (np.arange(len(posteriors)) + 0.5) * hop_s * subsample
    bottom.plot(times, posteriors[:, 0], color="0.75", label="blank")
    best = posteriors.argmax(1)  # (T',)
    colours = {}
    for k in range(1, posteriors.shape[1]):
        if posteriors[:, k].max() > 0.2:
            line, = bottom.plot(times, posteriors[:, k], linewidth=1)
            colours[k] = line.get_color()
    for t, k in enumerate(best):  # label each character where it fires
        if k != 0 and (t == 0 or best[t - 1] != k) and k in colours:
            bottom.annotate(alphabet.decode([int(k)]).replace(" ", "␣"),
                            (times[t], posteriors[t, k]),
                            color=colours[k], ha="center", va="bottom", fontsize=9)
    bottom.set_ylim(0, 1.1)
    bottom.set_xlabel("time (s)")
    bottom.set_ylabel("p(symbol)")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
