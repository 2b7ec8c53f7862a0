"""The HTML report of ``rnnkit caption report`` (and ``rnnkit inspect``): where the model looked.

One page (:mod:`rnnkit.diagnostics.report`): the caption and its ``log p``, the image as the
model sees it (the central crop), then one panel per generated word: the image under that word's
attention weights ``α_t`` (the ``G × G`` grid upsampled to the crop), the word, its probability
and the gate ``β_t``; and a table of the same numbers.

Axes: T generated words, S = G² regions.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import torch

from rnnkit.data.images import center_crop, normalise
from rnnkit.diagnostics.report import Report, render_report

__all__ = ["caption_report", "fill_report", "attend_words"]


def caption_report(loaded: Any, path: Path, beam: int, alpha: float) -> str:
    """The report page for the image at ``path`` as one HTML document."""
    report = Report(title=f"rnnkit caption: {path.name}", symbols=[], units=[])
    fill_report(loaded, path, report, beam, alpha)
    return render_report(report)


@torch.no_grad()
def attend_words(loaded: Any, pixels: torch.Tensor, ids: list[int]) -> dict[str, Any]:
    """Re-run the decoder over the chosen words ``ids`` (teacher forcing, ``<eos>`` last) of one
    ``uint8`` image ``(1, 3, S, S)``: per step the attention ``(S,)``, the gate, ``p(word)``."""
    model, vocab = loaded.model, loaded.vocab
    image = normalise(center_crop(pixels, loaded.config.crop)).to(loaded.device)
    regions = model.features(image)
    memory, state = model.encode(regions)
    token = torch.tensor([vocab.bos_id], device=loaded.device)
    rows = []
    for word in [*ids, vocab.eos_id]:
        gate = float(torch.sigmoid(model.gate(state[0][0]))) if model.config.image else 1.0
        logits, state, weights = model.step(token, state, memory)
        prob = float(torch.softmax(logits.float(), -1)[0, word])
        rows.append({"word": vocab.token_of(word), "p": prob, "gate": gate,
                     "weights": None if weights is None else weights[0].cpu()})
        token = torch.tensor([word], device=loaded.device)
    return {"rows": rows, "crop": center_crop(pixels, loaded.config.crop)[0]}


def fill_report(loaded: Any, path: Path, report: Report, beam: int, alpha: float) -> None:
    """Add the caption, the heat maps and the per-word table of the image at ``path``."""
    from rnnkit.apps.caption import caption_pixels, read_files

    pixels = read_files(loaded, [path])
    words = caption_pixels(loaded.model, loaded.vocab, pixels, loaded.config, beam, alpha)[0][0]
    ids = loaded.vocab.encode(words)
    found = attend_words(loaded, pixels, ids)
    rows = found["rows"]
    log_p = sum(math.log(max(r["p"], 1e-30)) for r in rows)
    report.meta += [("file", str(path)), ("caption", " ".join(words)),
                    ("log p(caption | image)", f"{log_p:.4f}"),
                    ("decoding", f"beam {beam}, length penalty {alpha:g}" if beam > 1
                     else "greedy")]
    report.table_title = "Words"
    report.table_header = ["step", "word", "p(word)", "gate β", "most attended region"]
    grid = None
    for t, row in enumerate(rows):
        where = "—"
        if row["weights"] is not None:
            grid = int(round(math.sqrt(row["weights"].numel())))
            best = int(row["weights"].argmax())
            where = f"row {best // grid}, column {best % grid} ({float(row['weights'][best]):.2f})"
        report.table.append([str(t + 1), row["word"], f"{row['p']:.3f}", f"{row['gate']:.2f}",
                             where])
    if not loaded.model.config.image:
        report.notes.append("A blind model (no image): there is no attention to show.")
        return
    report.images.append((
        "Attention per word",
        f"The central {loaded.config.crop}×{loaded.config.crop} crop the model reads; then, for "
        f"each generated word, its attention weights over the {grid}×{grid} grid of regions "
        "(brighter = more weight), with p(word) and the gate β.",
        _plot(found["crop"], rows)))


def _plot(crop: torch.Tensor, rows: list[dict]) -> bytes:
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    image = crop.permute(1, 2, 0).numpy()
    side = image.shape[0]
    panels = len(rows) + 1
    columns = min(5, panels)
    lines = math.ceil(panels / columns)
    figure = Figure(figsize=(2.4 * columns, 2.6 * lines), dpi=90)
    axes = figure.subplots(lines, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    axes[0][0].imshow(image)
    axes[0][0].set_title("image", fontsize=10)
    for k, row in enumerate(rows, 1):
        ax = axes[k // columns][k % columns]
        weights = row["weights"]
        grid = int(round(math.sqrt(weights.numel())))
        heat = weights.view(1, 1, grid, grid).float()
        heat = torch.nn.functional.interpolate(heat, size=(side, side), mode="bilinear",
                                               align_corners=False)[0, 0].numpy()
        ax.imshow(image)
        ax.imshow(heat / max(float(heat.max()), 1e-12), cmap="gray", alpha=0.7,
                  extent=(-0.5, side - 0.5, side - 0.5, -0.5), vmin=0, vmax=1)
        ax.set_title(f"{row['word']}  p={row['p']:.2f}  β={row['gate']:.2f}", fontsize=9)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()

