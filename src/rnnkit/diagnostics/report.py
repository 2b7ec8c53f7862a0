"""One self-contained HTML report: the input coloured by hidden units, predictions, plots.

Everything is inside the file: CSS in a ``<style>`` element, plots as ``data:image/png;base64``
URIs, no scripts, no fonts or images from elsewhere; it opens offline. Each input symbol is one
``<span class="sym">`` per unit shown, its background the unit's activation (red positive, blue
negative) and its tooltip the position, the exact value and the model's prediction there.
"""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass, field

from rnnkit._io import atomic_write_text

__all__ = ["UnitTrace", "Report", "render_report", "write_report"]

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222;
       line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
.meta { color: #555; font-size: 0.9em; }
.text { font-family: ui-monospace, monospace; white-space: pre-wrap; word-break: break-all;
        background: #fafafa; border: 1px solid #e4e4e4; padding: 0.6em; }
.sym { border-radius: 2px; }
.words .sym { margin-right: 0.35em; padding: 0 0.1em; }
.label { font-size: 0.7em; color: #555; vertical-align: sub; margin-left: 0.1em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
td, th { border: 1px solid #e4e4e4; padding: 0.15em 0.5em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { background: #f2f2f2; padding: 0 0.2em; }
.bar { display: inline-block; height: 0.8em; background: #268bd2; vertical-align: middle; }
img { max-width: 100%; border: 1px solid #eee; }
"""


@dataclass
class UnitTrace:
    """One hidden unit over the input: ``values[i]`` is its activation after symbol i."""

    unit: int
    values: list[float]
    why: str = ""  # e.g. "std 0.41 over the input"


@dataclass
class Report:
    """What a report shows. ``predictions[i]`` is the tooltip/table text at symbol i;
    ``labels[i]`` (tagger) is shown under symbol i; ``table`` rows are (symbol, cells…)."""

    title: str
    symbols: list[str]
    units: list[UnitTrace]
    meta: list[tuple[str, str]] = field(default_factory=list)
    predictions: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    word_spacing: bool = False  # words (tagger, classifier) vs characters / subword pieces
    table_title: str = ""
    table_header: list[str] = field(default_factory=list)
    table: list[list[str]] = field(default_factory=list)
    class_probs: list[tuple[str, float]] = field(default_factory=list)
    images: list[tuple[str, str, bytes]] = field(default_factory=list)  # (heading, note, png)
    notes: list[str] = field(default_factory=list)


def _colour(value: float, scale: float) -> str:
    strength = 0.0 if scale <= 0 else min(abs(value) / scale, 1.0)
    rgb = "220,50,47" if value >= 0 else "38,139,210"
    return f"rgba({rgb},{strength:.3f})"


def _visible(symbol: str) -> str:
    """The symbol as shown: newlines and tabs stay visible and still break lines."""
    return symbol.replace("\t", "→\t").replace("\n", "↵\n") if symbol.strip() == "" else symbol


def _unit_block(report: Report, trace: UnitTrace) -> str:
    scale = max((abs(v) for v in trace.values), default=0.0)
    spans = []
    for index, (symbol, value) in enumerate(zip(report.symbols, trace.values)):
        tip = f"position {index}: {symbol!r}  unit {trace.unit} = {value:+.3f}"
        if index < len(report.predictions) and report.predictions[index]:
            tip += "\n" + report.predictions[index]
        label = ""
        if index < len(report.labels):
            label = f'<span class="label">{html.escape(report.labels[index])}</span>'
        spans.append(f'<span class="sym" style="background:{_colour(value, scale)}" '
                     f'title="{html.escape(tip)}">{html.escape(_visible(symbol))}{label}</span>')
    kind = "text words" if report.word_spacing else "text"
    why = f" — {html.escape(trace.why)}" if trace.why else ""
    return (f"<h3>unit {trace.unit}{why} (max |a| = {scale:.3g})</h3>\n"
            f'<div class="{kind}" data-unit="{trace.unit}">{"".join(spans)}</div>')


def _table(report: Report) -> str:
    if not report.table:
        return ""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in report.table_header)
    rows = "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
        for row in report.table
    )
    return (f"<h2>{html.escape(report.table_title)}</h2>\n"
            f"<table><tr>{head}</tr>\n{rows}</table>")


def _class_probs(report: Report) -> str:
    if not report.class_probs:
        return ""
    rows = "\n".join(
        f'<tr><td>{html.escape(name)}</td><td class="num">{prob:.3f}</td>'
        f'<td><span class="bar" style="width:{prob * 20:.2f}em"></span></td></tr>'
        for name, prob in report.class_probs
    )
    return f"<h2>Class probabilities</h2>\n<table>{rows}</table>"


def _images(report: Report) -> str:
    parts = []
    for heading, note, png in report.images:
        data = base64.b64encode(png).decode("ascii")
        parts.append(f"<h2>{html.escape(heading)}</h2>\n<p>{html.escape(note)}</p>\n"
                     f'<img alt="{html.escape(heading)}" src="data:image/png;base64,{data}">')
    return "\n".join(parts)


def _units_section(report: Report, units: str) -> str:
    if not report.units:
        return ""  # a run report without an input
    return f"""<h2>Hidden units over the input</h2>
<p class="meta">Each symbol is coloured by the unit's activation after reading it (red positive,
blue negative, white near zero; scaled per unit). Hover a symbol for the exact value and the
model's prediction at that position.</p>
{units}"""


def render_report(report: Report) -> str:
    """The report as one HTML document."""
    meta = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                   for k, v in report.meta)
    notes = "".join(f"<p class=\"meta\">{html.escape(n)}</p>" for n in report.notes)
    units = "\n".join(_unit_block(report, trace) for trace in report.units)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(report.title)}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>{html.escape(report.title)}</h1>
<table class="meta">{meta}</table>
{notes}
{_units_section(report, units)}
{_class_probs(report)}
{_table(report)}
{_images(report)}
</body>
</html>
"""


def write_report(report: Report, path: str | os.PathLike) -> None:
    """Render ``report`` and write it to ``path`` atomically."""
    atomic_write_text(path, render_report(report))
