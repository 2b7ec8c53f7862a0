"""The HTML report: written atomically, parses, one coloured span per input symbol and unit,
the plots embedded, nothing fetched from elsewhere; a headless browser renders it."""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser

import pytest
import torch

import rnnkit
from rnnkit.diagnostics import gradient_flow, plots
from rnnkit.diagnostics.report import Report, UnitTrace, write_report

PNG = b"\x89PNG\r\n\x1a\n"


class Collect(HTMLParser):
    """Tags and attributes of a document, and the spans of each unit's text block."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.spans: dict[str, int] = {}
        self._unit: str | None = None
        self._depth = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "div" and "data-unit" in attrs:
            self._unit, self._depth = attrs["data-unit"], 0
            self.spans[self._unit] = 0
        elif self._unit is not None and tag == "span":
            self._depth += 1
            if "sym" in attrs.get("class", "").split():
                assert attrs["style"].startswith("background:rgba(")
                self.spans[self._unit] += 1

    def handle_endtag(self, tag):
        if self._unit is not None and tag == "div":
            self._unit = None


def _flow():
    model = rnnkit.GRU(3, 6, bidirectional=True)
    return gradient_flow(model, torch.randn(9, 2, 3), lambda m, b: m(b)[0][-1].sum())


def _records(flow):
    records = []
    for step in (10, 20, 30):
        records.append({"step": step, "train_loss": 3.0 / step, "lr": 1e-3, "grad_norm": 0.5})
        records.append({"step": step, "diagnostics": flow.to_json()})
    records.append({"step": 30, "valid_loss": 0.2})
    return records


def _report(flow) -> Report:
    symbols = list("def f(x):\n\treturn x")
    units = [UnitTrace(u, torch.randn(len(symbols)).tolist(), "test") for u in (3, 7)]
    images = [("flow", "by distance", plots.plot_flow_by_distance(flow)),
              ("heatmap", "steps × positions", plots.plot_flow_heatmap(_records(flow))),
              ("curves", "loss", plots.plot_training_curves(_records(flow)))]
    return Report("test <report>", symbols, units, meta=[("task", "lm")],
                  predictions=[f"next: {s!r}" for s in symbols], images=images,
                  table_header=["t"], table=[["0"]], table_title="table")


def test_plots_are_png():
    flow = _flow()
    assert plots.plot_flow_by_distance(flow).startswith(PNG)
    assert plots.plot_flow_heatmap(_records(flow)).startswith(PNG)
    assert plots.plot_training_curves(_records(flow)).startswith(PNG)
    assert plots.plot_flow_heatmap([{"step": 1, "train_loss": 1.0}]) is None
    assert plots.plot_training_curves([]) is None


def test_report_parses_with_one_span_per_symbol_and_embedded_plots(tmp_path):
    report = _report(_flow())
    path = tmp_path / "report.html"
    write_report(report, path)
    parser = Collect()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    assert parser.spans == {"3": len(report.symbols), "7": len(report.symbols)}
    images = [attrs["src"] for tag, attrs in parser.tags if tag == "img"]
    assert len(images) == 3 and all(s.startswith("data:image/png;base64,") for s in images)
    assert "test &lt;report&gt;" in path.read_text(encoding="utf-8")


def test_report_makes_no_external_requests(tmp_path):
    path = tmp_path / "report.html"
    write_report(_report(_flow()), path)
    text = path.read_text(encoding="utf-8")
    parser = Collect()
    parser.feed(text)
    for tag, attrs in parser.tags:
        assert tag not in ("script", "link", "iframe", "object", "embed"), tag
        for name in ("src", "href", "srcset", "action", "data"):
            value = attrs.get(name) or ""
            assert not value.startswith(("http:", "https:", "//", "ftp:")), (tag, name, value)
            assert not value or value.startswith("data:"), (tag, name, value)
    assert "@import" not in text and "url(" not in text


def test_report_is_written_atomically(tmp_path, monkeypatch):
    path = tmp_path / "report.html"
    path.write_text("old report")

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_report(_report(_flow()), path)
    assert path.read_text() == "old report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temporary left


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_headless_browser_renders_the_report(tmp_path):
    browser = _browser()
    if browser is None:
        pytest.skip("no chromium / chromium-browser installed: headless screenshot not taken")
    page = tmp_path / "report.html"
    write_report(_report(_flow()), page)
    shot = tmp_path / "shot.png"
    done = subprocess.run(
        [browser, "--headless", "--disable-gpu", "--no-sandbox", "--window-size=1200,1600",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
         f"--screenshot={shot}", page.as_uri()],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.read_bytes().startswith(PNG) and shot.stat().st_size > 10_000
