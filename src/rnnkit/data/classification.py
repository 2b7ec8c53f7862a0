"""Readers for sequence-classification data: one text and (optionally) one label a record.

Formats (``fmt``):

- ``label-text``: ``LABEL TEXT`` lines, the label up to the first space (the SST-2 files).
- ``tsv`` / ``csv``: delimited rows (CSV quoting rules for both). Columns are chosen by header
  name or 1-based number; a header row is assumed when a column is given by name, or with
  ``header=True``. Defaults: label in column 1, text in column 2.
- ``jsonl``: one JSON object a line; fields chosen by name (defaults ``text`` and ``label``).

The text is split on whitespace into tokens (optionally lower-cased); blank lines are skipped.
Problems raise :class:`~rnnkit.errors.RnnkitError` naming the file and line.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

from rnnkit.data.conll import read_text
from rnnkit.errors import RnnkitError

__all__ = ["FORMATS", "Example", "read_examples", "guess_format"]

FORMATS = ("label-text", "tsv", "csv", "jsonl")


@dataclass
class Example:
    """One record: its text, tokens, label (None when absent) and 1-based line number."""

    text: str
    tokens: list[str]
    label: str | None
    line: int


def guess_format(path: str | os.PathLike, fmt: str | None = None) -> str:
    """``fmt`` if given, else from the extension (``.tsv``, ``.csv``, ``.jsonl``/``.json``),
    else ``label-text``."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise RnnkitError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
        return fmt
    suffix = Path(str(path)).suffix.lower()
    return {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}.get(
        suffix, "label-text"
    )


def read_examples(
    path: str | os.PathLike,
    *,
    fmt: str | None = None,
    text_column: str | int | None = None,
    label_column: str | int | None = None,
    header: bool | None = None,
    require_labels: bool = True,
    lowercase: bool = False,
    text: str | None = None,
) -> list[Example]:
    """Read a classification file (see the module docstring). ``text`` replaces reading
    ``path`` (e.g. stdin), which is then only used in messages."""
    fmt = guess_format(path, fmt)
    if text is None:
        text = read_text(path)
    if fmt == "label-text":
        records = _label_text(str(path), text, require_labels)
    elif fmt == "jsonl":
        records = _jsonl(str(path), text, text_column, label_column, require_labels)
    else:
        delimiter = "\t" if fmt == "tsv" else ","
        records = _delimited(
            str(path), text, delimiter, text_column, label_column, header, require_labels
        )
    examples = []
    for body, label, line in records:
        tokens = (body.lower() if lowercase else body).split()
        if not tokens:
            raise RnnkitError(f"{path}:{line}: empty text")
        examples.append(Example(body, tokens, label, line))
    if not examples:
        raise RnnkitError(f"{path}: no examples found (empty file?)")
    return examples


def _label_text(path: str, text: str, require_labels: bool):
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if not require_labels:
            yield line.strip(), None, number
            continue
        parts = line.strip().split(maxsplit=1)
        if len(parts) < 2:
            raise RnnkitError(f"{path}:{number}: expected 'LABEL TEXT', got only {parts[0]!r}")
        yield parts[1], parts[0], number


def _jsonl(path: str, text: str, text_field, label_field, require_labels: bool):
    text_field = "text" if text_field is None else str(text_field)
    label_field = "label" if label_field is None else str(label_field)
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise RnnkitError(f"{path}:{number}: not valid JSON: {err.msg}") from None
        if not isinstance(record, dict):
            raise RnnkitError(f"{path}:{number}: expected a JSON object")
        body = _field(record, text_field, path, number, "text")
        label = None
        if require_labels:
            label = _field(record, label_field, path, number, "label")
        yield body, label, number


def _field(record: dict, name: str, path: str, number: int, what: str) -> str:
    if name not in record:
        fields = ", ".join(map(repr, record)) or "none"
        raise RnnkitError(f"{path}:{number}: no {what} field {name!r} (fields: {fields})")
    value = record[name]
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise RnnkitError(f"{path}:{number}: {what} field {name!r} must be a string or number")
    return str(value)


def _delimited(path, text, delimiter, text_column, label_column, header, require_labels):
    text_column = 2 if text_column is None else text_column
    label_column = 1 if label_column is None else label_column
    named = not (_is_number(text_column) and _is_number(label_column))
    header = named if header is None else header
    rows = csv.reader(io.StringIO(text), delimiter=delimiter)
    names: list[str] | None = None
    try:
        for row in rows:
            number = rows.line_num
            if not any(cell.strip() for cell in row):
                continue
            if header and names is None:
                names = [cell.strip() for cell in row]
                text_index = _column(text_column, names, path, number, "--text-column")
                label_index = _column(label_column, names, path, number, "--label-column")
                continue
            if names is None:
                text_index = _column(text_column, None, path, number, "--text-column")
                label_index = _column(label_column, None, path, number, "--label-column")
                names = []
            _check_width(row, text_index, text_column, path, number, "--text-column")
            if require_labels:
                _check_width(row, label_index, label_column, path, number, "--label-column")
            label = row[label_index].strip() if require_labels else None
            if require_labels and not label:
                raise RnnkitError(f"{path}:{number}: empty label")
            yield row[text_index].strip(), label, number
    except csv.Error as err:
        raise RnnkitError(f"{path}:{rows.line_num}: {err}") from None


def _check_width(row, index, column, path, number, option) -> None:
    if index >= len(row):
        raise RnnkitError(f"{path}:{number}: {option} {column} does not exist "
                          f"(the line has {len(row)} columns)")


def _is_number(column) -> bool:
    return isinstance(column, int) or str(column).strip().isdigit()


def _column(column, names: list[str] | None, path: str, number: int, option: str) -> int:
    if _is_number(column):
        index = int(column) - 1
        if index < 0:
            raise RnnkitError(f"{option}: column numbers start at 1, got {column}")
        if names is not None and index >= len(names):
            raise RnnkitError(f"{path}:{number}: {option} {column} does not exist "
                              f"(the header has {len(names)} columns)")
        return index
    if names is None:
        raise RnnkitError(f"{option}: {column!r} is a name, but the file has no header "
                          "(give a 1-based column number, or --header)")
    if column not in names:
        raise RnnkitError(f"{path}:{number}: {option} {column!r} is not in the header "
                          f"(columns: {', '.join(names)})")
    return names.index(column)
