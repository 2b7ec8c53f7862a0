"""Time series tables: a CSV/TSV with a time column, validated, split, scaled and windowed.

A file holds one header line and one row per time step: a time column (ISO 8601 dates such as
``2016-07-01 00:00:00``, or integers) and numeric columns. :func:`read_series` checks every
cell and names ``file:line`` and the column of the first bad one (a date that does not parse, a
number that is not one, a missing value without ``fill``, a timestamp out of order or repeated).
:func:`split_bounds` cuts the rows chronologically, :class:`Scaler` z-scores with statistics of
the training rows only, and :func:`window_starts` lists the forecast origins of one part.

Axis legend: N rows (time steps), C columns, F time features, B windows, L input length,
H horizon.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from rnnkit.errors import RnnkitError

__all__ = ["Series", "Scaler", "read_series", "split_bounds", "window_starts", "time_features",
           "future_times", "gather_windows", "read_header", "FILLS", "MISSING"]

FILLS = ("none", "ffill", "interpolate", "zero")
MISSING = frozenset({"", "nan", "na", "n/a", "null", "none", "?"})


@dataclass
class Series:
    """One table read from ``path``.

    Attributes:
        names: the numeric columns kept, in the order asked for.
        values: (N, C) float64, missing values already filled.
        times: the time column as datetimes, or None when it holds integers (or there is none).
        index: (N,) int64, the integer time column (or the row number) when ``times`` is None.
        lines: (N,) the file line of each row (for messages).
        filled: how many missing cells ``fill`` replaced.
    """

    path: str
    names: list[str]
    values: np.ndarray
    times: list[datetime] | None
    index: np.ndarray
    lines: np.ndarray
    filled: int = 0

    def __len__(self) -> int:
        return len(self.values)

    def time_labels(self) -> list[str]:
        if self.times is not None:
            return [t.isoformat(sep=" ") for t in self.times]
        return [str(int(i)) for i in self.index]


@dataclass
class Scaler:
    """Per-column z-score, ``(x - mean) / std``, std with ddof = 0 (a constant column: std 1)."""

    names: list[str]
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, names: list[str], values: np.ndarray) -> Scaler:
        """Statistics of ``values`` (N, C): pass the training rows only."""
        std = values.std(axis=0)
        return cls(list(names), values.mean(axis=0), np.where(std > 0, std, 1.0))

    def transform(self, values: np.ndarray) -> np.ndarray:
        return (values - self.mean) / self.std

    def inverse(self, values: np.ndarray, columns: list[int] | None = None) -> np.ndarray:
        """Back to the original scale; ``columns`` picks the statistics of a subset (…, C')."""
        cols = slice(None) if columns is None else columns
        return values * self.std[cols] + self.mean[cols]

    def to_json(self) -> dict[str, Any]:
        return {"names": self.names, "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Scaler:
        return cls(list(data["names"]), np.asarray(data["mean"]), np.asarray(data["std"]))


# ---------------------------------------------------------------------- reading


def read_series(path: str | Path, time_column: str, columns: list[str] | None,
                fill: str = "none", sort: bool = False) -> Series:
    """Read ``path`` (comma- or tab-separated, by the header), keeping ``columns`` (None: every
    column but the time column). ``time_column`` "" means the row number is the time.

    Raises RnnkitError naming file:line and the column of the first bad cell.
    """
    path = str(path)
    rows, header = _read_rows(path)
    names = _pick_columns(path, header, time_column, columns)
    positions = [header.index(n) for n in names]
    lines = np.array([line for line, _ in rows], dtype=np.int64)
    values, missing = _numbers(path, rows, header, positions, fill)
    times, index = _parse_times(path, rows, header, time_column)
    order = _time_order(path, lines, times, index, sort)
    times = [times[i] for i in order] if times is not None else None
    values = values[order]
    filled = _fill(values, fill) if missing else 0
    return Series(path, names, values, times, index[order], lines[order], filled)


def read_header(path: str | Path) -> list[str]:
    """The column names of ``path``'s header line."""
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            first = handle.readline()
    except FileNotFoundError:
        raise RnnkitError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise RnnkitError(f"{path}: cannot read: {err}") from None
    delimiter = "\t" if "\t" in first or str(path).endswith((".tsv", ".tab")) else ","
    return [name.strip() for name in next(csv.reader([first], delimiter=delimiter), [])]


def _read_rows(path: str) -> tuple[list[tuple[int, list[str]]], list[str]]:
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise RnnkitError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise RnnkitError(f"{path}: cannot read: {err}") from None
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise RnnkitError(f"{path}:1: expected a header line naming the columns")
    delimiter = "\t" if "\t" in lines[0] or path.endswith((".tsv", ".tab")) else ","
    table = list(csv.reader(lines, delimiter=delimiter))
    header = [name.strip() for name in table[0]]
    rows = []
    for number, fields in enumerate(table[1:], 2):
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue  # blank line
        if len(fields) != len(header):
            raise RnnkitError(f"{path}:{number}: expected {len(header)} fields as in the "
                              f"header, got {len(fields)}")
        rows.append((number, [field.strip() for field in fields]))
    if not rows:
        raise RnnkitError(f"{path}: no data rows after the header")
    return rows, header


def _pick_columns(path: str, header: list[str], time_column: str,
                  columns: list[str] | None) -> list[str]:
    if time_column and time_column not in header:
        raise RnnkitError(f"--time-column {time_column!r}: no such column in {path} "
                          f"(columns: {', '.join(header)})")
    if columns is None:
        return [name for name in header if name != time_column]
    for name in columns:
        if name not in header:
            raise RnnkitError(f"{path}: no column {name!r} (columns: {', '.join(header)})")
        if name == time_column:
            raise RnnkitError(f"{path}: column {name!r} is the time column, not a value")
    return list(columns)


def _numbers(path: str, rows, header: list[str], positions: list[int],
             fill: str) -> tuple[np.ndarray, bool]:
    """(N, C) values with NaN where a cell is missing (an error unless ``fill``)."""
    values = np.empty((len(rows), len(positions)))
    missing = False
    for r, (line, fields) in enumerate(rows):
        for c, position in enumerate(positions):
            cell = fields[position]
            try:
                number = float(cell)
            except ValueError:
                if cell.lower() not in MISSING:
                    raise RnnkitError(f"{path}:{line}: column {header[position]!r}: "
                                      f"{cell!r} is not a number") from None
                number = math.nan
            if not math.isfinite(number):
                if fill == "none" or math.isinf(number):
                    what = "missing value" if math.isnan(number) else f"{cell!r} is not finite"
                    raise RnnkitError(f"{path}:{line}: column {header[position]!r}: {what} "
                                      f"(fill gaps with --fill ffill, interpolate or zero)")
                missing = True
            values[r, c] = number
    return values, missing


def _parse_times(path: str, rows, header: list[str],
                 time_column: str) -> tuple[list[datetime] | None, np.ndarray]:
    if not time_column:
        return None, np.arange(len(rows), dtype=np.int64)
    position = header.index(time_column)
    first = rows[0][1][position]
    if _is_int(first):
        return None, np.array([_int_time(path, line, f[position], time_column)
                               for line, f in rows], dtype=np.int64)
    times = [_date(path, line, fields[position], time_column) for line, fields in rows]
    if len({t.tzinfo is None for t in times}) > 1:
        raise RnnkitError(f"{path}: column {time_column!r}: dates with and without a time zone")
    return times, np.arange(len(rows), dtype=np.int64)


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


def _int_time(path: str, line: int, text: str, column: str) -> int:
    if not _is_int(text):
        raise RnnkitError(f"{path}:{line}: column {column!r}: {text!r} is not an integer time "
                          f"index like the rows before")
    return int(text)


def _date(path: str, line: int, text: str, column: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise RnnkitError(f"{path}:{line}: column {column!r}: cannot parse {text!r} as a date "
                          f"(expected ISO 8601, e.g. 2016-07-01 00:00:00)") from None


def _time_order(path: str, lines: np.ndarray, times, index: np.ndarray, sort: bool) -> np.ndarray:
    """Row order by time: checked increasing, or sorted (``sort``); repeated times are errors."""
    keys = [t.timestamp() if t.tzinfo else t for t in times] if times is not None else index
    order = np.arange(len(lines))
    if sort:
        order = np.array(sorted(order, key=lambda i: keys[i]), dtype=np.int64)
    for previous, current in zip(order[:-1], order[1:], strict=True):
        if keys[current] == keys[previous]:
            raise RnnkitError(f"{path}:{lines[current]}: duplicated timestamp "
                              f"{_shown(times, index, current)} (also at line {lines[previous]})")
        if keys[current] < keys[previous]:
            raise RnnkitError(f"{path}:{lines[current]}: timestamp "
                              f"{_shown(times, index, current)} is earlier than the one at line "
                              f"{lines[previous]}; sort the file or pass --sort")
    return order


def _shown(times, index, row: int) -> str:
    return times[row].isoformat(sep=" ") if times is not None else str(index[row])


def _fill(values: np.ndarray, fill: str) -> int:
    """Replace NaN in place (per column); returns how many cells were filled."""
    gaps = np.isnan(values)
    count = int(gaps.sum())
    for c in range(values.shape[1]):
        column, holes = values[:, c], gaps[:, c]
        if not holes.any():
            continue
        known = np.flatnonzero(~holes)
        if fill == "zero" or known.size == 0:
            column[holes] = 0.0
        elif fill == "interpolate":
            column[holes] = np.interp(np.flatnonzero(holes), known, column[known])
        else:  # ffill; leading gaps take the first known value
            last = np.maximum.accumulate(np.where(holes, 0, np.arange(len(column))))
            last[: known[0]] = known[0]
            column[:] = column[last]
    return count


# ---------------------------------------------------------------------- splits and windows


def split_bounds(spec: str, rows: int, times: list[datetime] | None) -> tuple[int, int, int]:
    """Row ends of the train, validation and test parts (each starts where the one before
    ends; rows after the test part are unused).

    ``spec``: three fractions ``0.7,0.1,0.2``, three row counts ``8640,2880,2880``, or two
    dates ``2017-06-26,2017-10-24`` (first validation and first test time; test runs to the end).
    """
    parts = [p.strip() for p in spec.split(",")]
    if len(parts) == 2 and not all(_is_int(p) for p in parts):
        ends = _date_bounds(parts, rows, times)
    elif len(parts) == 3 and all(_is_int(p) for p in parts):
        counts = [int(p) for p in parts]
        ends = (counts[0], counts[0] + counts[1], sum(counts))
    elif len(parts) == 3:
        ends = _fraction_bounds(spec, parts, rows)
    else:
        raise RnnkitError(f"--split {spec!r}: expected three fractions (0.7,0.1,0.2), three row "
                          f"counts (8640,2880,2880) or two dates (valid start, test start)")
    counts = _sizes(ends)
    if not 0 < ends[0] <= ends[1] <= ends[2] <= rows:
        raise RnnkitError(f"--split {spec!r}: parts of {counts} rows do not fit the "
                          f"{rows} rows of the file")
    return ends


def _sizes(ends: tuple[int, int, int]) -> list[int]:
    return [ends[0], ends[1] - ends[0], ends[2] - ends[1]]


def _fraction_bounds(spec: str, parts: list[str], rows: int) -> tuple[int, int, int]:
    try:
        fractions = [float(p) for p in parts]
    except ValueError:
        raise RnnkitError(f"--split {spec!r}: expected numbers") from None
    if min(fractions) < 0 or sum(fractions) > 1 + 1e-9:
        raise RnnkitError(f"--split {spec!r}: fractions must be >= 0 and sum to at most 1")
    train = int(round(fractions[0] * rows))
    valid = train + int(round(fractions[1] * rows))
    return train, valid, min(rows, valid + int(round(fractions[2] * rows)))


def _date_bounds(parts: list[str], rows: int, times) -> tuple[int, int, int]:
    if times is None:
        raise RnnkitError("--split: dates need a date time column (use row counts instead)")
    try:
        starts = [datetime.fromisoformat(p) for p in parts]
    except ValueError:
        raise RnnkitError(f"--split {','.join(parts)!r}: cannot parse the dates") from None
    valid = sum(t < starts[0] for t in times)
    test = sum(t < starts[1] for t in times)
    return valid, test, rows


def window_starts(start: int, end: int, input_length: int, horizon: int,
                  stride: int = 1) -> np.ndarray:
    """Forecast origins t of a part: the targets t … t+H-1 lie in [start, end), the inputs
    t-L … t-1 may reach back before ``start`` (into the part before, as in Informer)."""
    first = max(start, input_length)
    return np.arange(first, end - horizon + 1, stride, dtype=np.int64)


# ---------------------------------------------------------------------- time features


def time_features(times: list[datetime] | None, rows: int) -> np.ndarray:
    """(N, 4) hour of day, day of week, day of month, day of year, each scaled to
    [-0.5, 0.5]; (N, 0) for an integer time index."""
    if times is None:
        return np.zeros((rows, 0))
    return np.array([[t.hour / 23 - 0.5, t.weekday() / 6 - 0.5, (t.day - 1) / 30 - 0.5,
                      (t.timetuple().tm_yday - 1) / 365 - 0.5] for t in times])


def future_times(series: Series, steps: int) -> tuple[list[str], list[datetime] | None]:
    """Labels (and datetimes) of the ``steps`` time steps after the last row, at the file's
    usual spacing (the median difference of the last rows)."""
    if series.times is not None:
        recent = series.times[-50:]
        gaps = sorted(b - a for a, b in zip(recent[:-1], recent[1:], strict=True))
        step = gaps[len(gaps) // 2] if gaps else timedelta(hours=1)
        times = [series.times[-1] + step * (k + 1) for k in range(steps)]
        return [t.isoformat(sep=" ") for t in times], times
    recent = series.index[-50:]
    step = int(np.median(np.diff(recent))) if len(recent) > 1 else 1
    return [str(int(series.index[-1]) + step * (k + 1)) for k in range(steps)], None


def gather_windows(values: np.ndarray, features: np.ndarray, starts: np.ndarray,
                   input_length: int, horizon: int, targets: int):
    """Arrays of the windows at ``starts`` (B,): inputs (B, L, C_in), past time features
    (B, L, F), future time features (B, H, F) and the true future of the first ``targets``
    columns (B, H, C) (empty along H where the rows end)."""
    past = starts[:, None] + np.arange(-input_length, 0)  # (B, L)
    ahead = starts[:, None] + np.arange(horizon)  # (B, H)
    ahead_known = np.minimum(ahead, len(values) - 1)
    return (values[past], features[past], features[ahead_known],
            values[ahead_known][..., :targets])
