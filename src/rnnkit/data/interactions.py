"""User–item interaction logs for next-item recommendation: reading, id mapping and splits.

Two file formats (``format=``):

- ``interactions``: one action a line, ``user item`` or ``user item timestamp`` (fields
  separated by tabs, commas or spaces, decided by the first line; an optional header line whose
  first two names are a user/session and an item column). Without timestamps the file order is
  each user's time order; with them, each user's actions are sorted by timestamp (stable).
- ``sequences``: one user (session) a line, its items in time order separated by spaces.

Item ids are strings in the file and integers ``1..N`` inside (``0`` pads), in order of first
appearance (:class:`ItemIndex`, saved with a checkpoint as JSON).

Splits (:func:`split`) turn a log into training sequences and evaluation :class:`Case` s
(a history and the held-out item after it):

- ``leave-one-out`` (SASRec): a user with at least 3 actions gives its last item to test and the
  second-last to validation; shorter users are all training and skipped in evaluation.
- ``time``: global cut-offs at the quantiles of all timestamps; training is every action before
  the validation cut-off; a user's validation target is its first action between the cut-offs
  (history: its training actions), its test target the first action after the test cut-off
  (history: every action before it).
- ``last``: the last item of every sequence is the (test and validation) target; for a separate
  held-out file.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

from rnnkit.errors import RnnkitError

__all__ = ["Log", "ItemIndex", "Case", "Split", "FORMATS", "SPLITS", "read_log", "split",
           "parse_history"]

FORMATS = ("interactions", "sequences")
SPLITS = ("leave-one-out", "time", "last")
_USER_NAMES = {"user", "user_id", "userid", "uid", "session", "session_id", "sessionid",
               "visitor", "visitorid", "visitor_id", "customer", "customer_id"}
_ITEM_NAMES = {"item", "item_id", "itemid", "iid", "product", "product_id", "productid",
               "movie", "movie_id", "movieid"}


@dataclass
class Log:
    """Every user's actions in time order.

    Attributes:
        path: the file read (for messages).
        users: user ids in order of first appearance.
        items: per user, its item ids (strings) in time order.
        times: per user, the timestamps of ``items``; None when the file has none.
    """

    path: str
    users: list[str]
    items: list[list[str]]
    times: list[list[int]] | None = None

    @property
    def actions(self) -> int:
        return sum(len(items) for items in self.items)


def read_log(path: str | os.PathLike, format: str = "interactions") -> Log:  # noqa: A002
    """Read an interaction or sequence file; ``RnnkitError`` naming ``file:line`` on bad input."""
    path = str(path)
    if format not in FORMATS:
        raise ValueError(f"format: expected one of {', '.join(FORMATS)}, got {format!r}")
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        raise RnnkitError(f"{path}: file not found") from None
    except UnicodeDecodeError as err:
        raise RnnkitError(f"{path}: not UTF-8 text ({err.reason})") from None
    except OSError as err:
        raise RnnkitError(f"{path}: cannot read: {err.strerror}") from None
    log = _read_sequences(path, lines) if format == "sequences" else _read_actions(path, lines)
    if not log.users:
        raise RnnkitError(f"{path}:{max(len(lines), 1)}: no interactions in the file (empty)")
    return log


def _read_sequences(path: str, lines: list[str]) -> Log:
    users, items = [], []
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if fields:
            users.append(str(number))
            items.append(fields)
    return Log(path, users, items)


def _splitter(line: str):
    if "\t" in line:
        return lambda text: [f.strip() for f in text.split("\t")]
    if "," in line:
        return lambda text: [f.strip() for f in text.split(",")]
    return str.split


def _is_header(fields: list[str]) -> bool:
    return (len(fields) >= 2 and fields[0].lower() in _USER_NAMES
            and fields[1].lower() in _ITEM_NAMES)


def _read_actions(path: str, lines: list[str]) -> Log:
    numbered = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
    if not numbered:
        return Log(path, [], [])
    split_fields = _splitter(numbered[0][1])
    if _is_header(split_fields(numbered[0][1])):
        numbered = numbered[1:]
        if not numbered:
            raise RnnkitError(f"{path}:{len(lines) + 1}: no interactions after the header line")
    width = len(split_fields(numbered[0][1]))
    by_user: dict[str, int] = {}
    items: list[list[str]] = []
    times: list[list[int]] = []
    for number, line in numbered:
        fields = split_fields(line)
        if len(fields) != width or width not in (2, 3):
            raise RnnkitError(
                f"{path}:{number}: expected {_expected(width)}, got {len(fields)} field(s): "
                f"{line.strip()[:60]!r}")
        if not fields[0] or not fields[1]:
            raise RnnkitError(f"{path}:{number}: empty user or item field")
        row = by_user.setdefault(fields[0], len(by_user))
        if row == len(items):
            items.append([])
            times.append([])
        items[row].append(fields[1])
        if width == 3:
            times[row].append(_timestamp(fields[2], path, number))
    if width == 2:
        return Log(path, list(by_user), items)
    return _sorted_by_time(Log(path, list(by_user), items, times))


def _expected(width: int) -> str:
    first = "2 fields (user item) or 3 (user item timestamp)"
    return first if width not in (2, 3) else f"{width} fields like the first line"


def _timestamp(text: str, path: str, number: int) -> int:
    try:
        return int(text)
    except ValueError:
        raise RnnkitError(f"{path}:{number}: timestamp {text!r} is not an integer") from None


def _sorted_by_time(log: Log) -> Log:
    assert log.times is not None
    for row, (items, times) in enumerate(zip(log.items, log.times, strict=True)):
        order = sorted(range(len(items)), key=times.__getitem__)  # stable for equal times
        log.items[row] = [items[i] for i in order]
        log.times[row] = [times[i] for i in order]
    return log


# ----------------------------------------------------------------------------- ids


@dataclass
class ItemIndex:
    """Item id (string) ↔ index ``1..N`` (0 pads), with training counts for popularity.

    Attributes:
        items: the item ids; ``items[i - 1]`` has index ``i``.
        counts: how often each item occurs in the training sequences (same order).
    """

    items: list[str]
    counts: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._index = {item: i + 1 for i, item in enumerate(self.items)}
        if not self.counts:
            self.counts = [0] * len(self.items)

    def __len__(self) -> int:
        """Rows of the embedding table: the items plus the padding row 0."""
        return len(self.items) + 1

    def __contains__(self, item: str) -> bool:
        return item in self._index

    @classmethod
    def build(cls, log: Log) -> ItemIndex:
        """Items of ``log`` in order of first appearance (counts filled by :meth:`count`)."""
        seen: dict[str, None] = {}
        for items in log.items:
            seen.update(dict.fromkeys(items))
        return cls(list(seen))

    def count(self, training: list[list[int]]) -> None:
        """Set :attr:`counts` from the training sequences (indices)."""
        counter = Counter(i for sequence in training for i in sequence)
        self.counts = [counter.get(i, 0) for i in range(1, len(self.items) + 1)]

    def encode(self, items: list[str]) -> tuple[list[int], list[str]]:
        """(indices of the known items, the unknown ones) — unknown items are not an error."""
        known, unknown = [], []
        for item in items:
            index = self._index.get(item)
            if index is None:
                unknown.append(item)
            else:
                known.append(index)
        return known, unknown

    def lookup(self, item: str) -> int:
        """The index of ``item``, 0 when unknown."""
        return self._index.get(item, 0)

    def decode(self, indices: list[int]) -> list[str]:
        return [self.items[i - 1] for i in indices]

    def to_json(self) -> dict:
        return {"items": self.items, "counts": self.counts}

    @classmethod
    def from_json(cls, data: dict) -> ItemIndex:
        return cls(list(data["items"]), list(data["counts"]))


def parse_history(text: str) -> list[str]:
    """Item ids of one history line (spaces or commas between them)."""
    return text.replace(",", " ").split()


# ----------------------------------------------------------------------------- splits


@dataclass
class Case:
    """One evaluation: score the items after ``history`` (indices), ``target`` being right."""

    history: list[int]
    target: int


@dataclass
class Split:
    """Training sequences and evaluation cases of a log.

    Attributes:
        train: per user, the training items (indices).
        valid / test: the evaluation cases.
        skipped: users without a test case (too few actions, or none after a cut-off).
        unknown_items: actions whose item is not in the index (dropped from histories).
        unknown_cases: test cases dropped for an unknown target (or a history left empty).
    """

    train: list[list[int]]
    valid: list[Case]
    test: list[Case]
    skipped: int = 0
    unknown_items: int = 0
    unknown_cases: int = 0


def split(log: Log, index: ItemIndex, how: str = "leave-one-out", *,
          valid_fraction: float = 0.1, test_fraction: float = 0.1) -> Split:
    """Split ``log`` (``how`` in :data:`SPLITS`) with items mapped by ``index``."""
    if how not in SPLITS:
        raise ValueError(f"split: expected one of {', '.join(SPLITS)}, got {how!r}")
    encoded, unknown = [], 0
    for items in log.items:
        known = [index.lookup(item) for item in items]
        unknown += known.count(0)
        encoded.append(known)
    if how == "time":
        result = _time_split(log, encoded, valid_fraction, test_fraction)
    else:
        result = _last_split(encoded, leave_two=how == "leave-one-out")
    result.unknown_items = unknown
    before = len(result.test)
    result = _drop_unknown(result)
    result.unknown_cases = before - len(result.test)
    return result


def _last_split(encoded: list[list[int]], leave_two: bool) -> Split:
    result = Split([], [], [])
    for sequence in encoded:
        if len(sequence) < (3 if leave_two else 2):
            result.train.append(sequence)
            result.skipped += 1
        elif leave_two:
            result.train.append(sequence[:-2])
            result.valid.append(Case(sequence[:-2], sequence[-2]))
            result.test.append(Case(sequence[:-1], sequence[-1]))
        else:
            result.train.append(sequence[:-1])
            result.valid.append(Case(sequence[:-1], sequence[-1]))
            result.test.append(Case(sequence[:-1], sequence[-1]))
    return result


def _time_split(log: Log, encoded: list[list[int]], valid_fraction: float,
                test_fraction: float) -> Split:
    if log.times is None:
        raise RnnkitError(f"--split time: {log.path} has no timestamp column "
                          "(user item timestamp)")
    stamps = sorted(t for times in log.times for t in times)
    valid_cut = stamps[min(int(len(stamps) * (1 - valid_fraction - test_fraction)),
                           len(stamps) - 1)]
    test_cut = stamps[min(int(len(stamps) * (1 - test_fraction)), len(stamps) - 1)]
    result = Split([], [], [])
    for sequence, times in zip(encoded, log.times, strict=True):
        before = sum(t < valid_cut for t in times)
        before_test = sum(t < test_cut for t in times)
        result.train.append(sequence[:before])
        if 0 < before < len(times) and times[before] < test_cut:
            result.valid.append(Case(sequence[:before], sequence[before]))
        if 0 < before_test < len(times):
            result.test.append(Case(sequence[:before_test], sequence[before_test]))
        else:
            result.skipped += 1
    return result


def _drop_unknown(result: Split) -> Split:
    """Unknown items (index 0) leave histories and training; cases with one as target go."""
    result.train = [[i for i in s if i] for s in result.train]
    for name in ("valid", "test"):
        cases = [Case([i for i in c.history if i], c.target) for c in getattr(result, name)]
        setattr(result, name, [c for c in cases if c.target and c.history])
    return result
