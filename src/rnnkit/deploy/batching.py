"""Batching concurrent requests of ``rnnkit serve``: requests to one model with the same options
that arrive while the model is busy (or within ``window`` seconds of each other) run as one
``predict`` call over their texts joined, which the application runs as padded batches; the
output is cut back into each request's part.

An application allows this by its *unit* (``Application.batch_unit``; ``""``: never
batched): ``"line"``, each non-blank input line gives one output line (a classifier);
``"block"``, each block of lines between blank lines gives one output block ending in a blank
line (a tagger's sentences).
A merged run is checked: when its output does not hold exactly one unit per input unit, or
when it fails (one request's bad text), every request of the batch is run alone instead, so a
batched answer is always the one that request would get alone.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["unit_of", "split_units", "join_units", "split_output", "Batcher"]

_BLANK = re.compile(r"\n[ \t\r]*\n")


def unit_of(app: Any) -> str:
    """``"line"``, ``"block"`` or ``""`` (no batching) for an application."""
    return getattr(app, "batch_unit", "")


def split_units(text: str, unit: str) -> list[str]:
    """The units of a request's text: its non-blank lines, or its blocks of lines."""
    if unit == "line":
        return [line for line in text.splitlines() if line.strip()]
    blocks = _BLANK.split(text.replace("\r\n", "\n"))
    return [block.strip("\n") for block in blocks if block.strip()]


def join_units(units: list[str], unit: str) -> str:
    return ("\n" if unit == "line" else "\n\n").join(units) + "\n"


def split_output(output: str, unit: str, counts: list[int]) -> list[str] | None:
    """The output cut into each request's part (``counts`` units each), or None when it does
    not hold exactly ``sum(counts)`` units."""
    if unit == "line":
        pieces = output.splitlines(keepends=True)
    else:
        pieces = [block + "\n\n" for block in output.split("\n\n") if block.strip("\n")]
        if not output.endswith("\n\n"):
            return None
    if len(pieces) != sum(counts):
        return None
    parts, start = [], 0
    for count in counts:
        parts.append("".join(pieces[start:start + count]))
        start += count
    return parts


@dataclass
class _Pending:
    text: str
    units: list[str]
    done: threading.Event = field(default_factory=threading.Event)
    result: str = ""
    error: BaseException | None = None


@dataclass
class _Group:
    items: list[_Pending] = field(default_factory=list)
    closed: bool = False


class Batcher:
    """Gathers one model's requests and runs them together (called from worker threads).

    ``run(options, text)`` → the joined output of ``predict`` on ``text``; ``slots`` is the
    semaphore bounding the predictions running at once (a batch takes one slot).
    """

    def __init__(self, predict: Callable[[Any, str], str], unit: str, slots: threading.Semaphore,
                 window: float, max_batch: int) -> None:
        self.predict, self.unit, self.slots = predict, unit, slots
        self.window, self.max_batch = window, max_batch
        self.lock = threading.Lock()
        self.open: dict[str, _Group] = {}
        self.batches = self.batched = 0  # merged runs, requests in them

    def submit(self, options: Any, text: str) -> str:
        units = split_units(text, self.unit)
        if not units:  # nothing to merge: run alone
            with self.slots:
                return self.predict(options, text)
        key = repr(options)
        item = _Pending(text, units)
        with self.lock:
            group = self.open.get(key)
            leader = group is None
            if leader:
                group = self.open[key] = _Group()
            group.items.append(item)
            if len(group.items) >= self.max_batch:
                self._close(key, group)
        if not leader:
            item.done.wait()
        else:
            if self.window > 0:
                time.sleep(self.window)
            with self.slots:
                with self.lock:  # everything that came while waiting for a slot joins
                    self._close(key, group)
                self._run(options, group.items)
        if item.error is not None:
            raise item.error
        return item.result

    def _close(self, key: str, group: _Group) -> None:
        if not group.closed:
            group.closed = True
            if self.open.get(key) is group:
                del self.open[key]

    def _run(self, options: Any, items: list[_Pending]) -> None:
        try:
            parts = None
            if len(items) > 1:
                try:
                    merged = self.predict(options, join_units(
                        [u for item in items for u in item.units], self.unit))
                    parts = split_output(merged, self.unit, [len(i.units) for i in items])
                except Exception:  # noqa: BLE001 - a bad text among them: each runs alone
                    parts = None
            if parts is not None:
                with self.lock:
                    self.batches += 1
                    self.batched += len(items)
                for item, part in zip(items, parts, strict=True):
                    item.result = part
            else:
                for item in items:
                    try:
                        item.result = self.predict(options, item.text)
                    except BaseException as err:  # noqa: BLE001 - handed to its request
                        item.error = err
        finally:
            for item in items:
                item.done.set()
