"""Where training metrics go: a JSONL file, TensorBoard when it is installed, a progress bar."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["MetricsLog", "Progress", "format_duration"]


class MetricsLog:
    """Append one JSON object per line to ``path``; mirror numbers to TensorBoard if available."""

    def __init__(self, path: Path, tensorboard: bool = True) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        cut_torn_tail(path)
        self._file = path.open("a", encoding="utf-8")
        self._writer = _tensorboard_writer(path.parent / "tensorboard") if tensorboard else None

    def write(self, record: dict[str, Any]) -> None:
        """Log ``record`` (must hold ``step``); non-finite floats are written as null."""
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                 for k, v in record.items()}
        self._file.write(json.dumps(clean) + "\n")
        self._file.flush()
        if self._writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step":
                    self._writer.add_scalar(key, value, record["step"])

    def close(self) -> None:
        self._file.close()
        if self._writer is not None:
            self._writer.close()


def _tensorboard_writer(directory: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(directory))


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All records of a metrics JSONL file (missing file → []); a line that is not a JSON
    object (a torn last line after a crash or a full disk) is skipped."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "step" in record:
            records.append(record)
    return records


def cut_torn_tail(path: Path) -> None:
    """Drop a partial last line (no final newline), so that new records never join it."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        with path.open("r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)


def format_duration(seconds: float) -> str:
    """``1:02:03`` / ``2:03`` style."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """tqdm bar over steps (or a plain line every few seconds without tqdm / a terminal)."""

    def __init__(self, total: int | None, initial: int, enabled: bool, unit: str) -> None:
        self.unit = unit
        self._bar = None
        self._last_print = 0.0
        self.enabled = enabled
        if not enabled:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return
        self._bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True,
                         file=sys.stderr, leave=False)

    def update(self, step: int, stats: dict[str, float], eta: float | None) -> None:
        """Show loss, perplexity, throughput and ETA after ``step``."""
        if not self.enabled:
            return
        text = {"loss": f"{stats['loss']:.3f}"}
        if "ppl" in stats:
            text["ppl"] = f"{stats['ppl']:.2f}"
        text[f"{self.unit}/s"] = f"{stats['rate']:.0f}"
        if eta is not None:
            text["eta"] = format_duration(eta)
        if self._bar is not None:
            self._bar.n = step
            self._bar.set_postfix(text, refresh=True)
        elif time.monotonic() - self._last_print > 5:
            self._last_print = time.monotonic()
            fields = " ".join(f"{k}={v}" for k, v in text.items())
            print(f"step {step} {fields}", file=sys.stderr)

    def set_total(self, total: int | None) -> None:
        """Change the number of steps the bar counts to (once the epoch length is known)."""
        if self._bar is not None and total != self._bar.total:
            self._bar.total = total
            self._bar.refresh()

    def write(self, message: str) -> None:
        """Print ``message`` above the bar."""
        if self._bar is not None:
            self._bar.write(message, file=sys.stdout)
        else:
            print(message, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
