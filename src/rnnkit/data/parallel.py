"""Parallel corpora for translation and dialogue: source/target sentence pairs.

Two layouts are read:

- two line-aligned files (plain UTF-8 or ``.gz``), line *i* of one translating line *i* of the
  other — ``train.de.gz`` + ``train.en.gz``;
- one tab-separated file, source in the first column, target in the second.

Text is cleaned once here (Unicode normalisation, optional lower-casing, surrounding blanks
stripped) so training, evaluation and ``run`` see the same strings. Every problem raises
``RnnkitError`` naming the file (and line, where one is to blame): line counts that differ (both
counts named), a side without any text, a TSV line without a tab.

:func:`filter_pairs` drops pairs longer than a token limit (or with an empty side) and says how
many it dropped.
"""

from __future__ import annotations

import gzip
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rnnkit._io import check_regular_file
from rnnkit.errors import RnnkitError

__all__ = ["ParallelCorpus", "read_parallel", "read_lines", "clean", "filter_pairs",
           "NORMALIZATIONS"]

NORMALIZATIONS = ("none", "NFC", "NFKC")


@dataclass
class ParallelCorpus:
    """Aligned ``sources[i]`` → ``targets[i]`` and where they came from (for messages)."""

    sources: list[str]
    targets: list[str]
    name: str

    def __len__(self) -> int:
        return len(self.sources)


def clean(text: str, *, lowercase: bool = False, normalize: str = "NFC") -> str:
    """``text`` stripped, Unicode-normalised (``NFC``, ``NFKC`` or ``none``), maybe lower-cased."""
    text = text.strip()
    if normalize != "none":
        text = unicodedata.normalize(normalize, text)
    return text.lower() if lowercase else text


def read_lines(path: str | Path) -> list[str]:
    """Lines of a UTF-8 text file, plain or ``.gz`` (line ends removed)."""
    path = Path(path)
    check_regular_file(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
                text = handle.read()
        else:
            text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RnnkitError(f"{path}: file not found") from None
    except UnicodeDecodeError as err:
        line = text_line_of(path, err.start)
        raise RnnkitError(f"{path}:{line}: not valid UTF-8") from None
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise RnnkitError(f"{path}: cannot read: {err}") from None
    return text.splitlines()


def text_line_of(path: Path, offset: int) -> int:
    """1-based line of byte ``offset`` in ``path`` (for encoding errors)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        return handle.read(offset).count(b"\n") + 1


def read_parallel(source: str, target: str | None = None, *, lowercase: bool = False,
                  normalize: str = "NFC") -> ParallelCorpus:
    """Pairs from two line-aligned files, or from one TSV file when ``target`` is None."""
    if normalize not in NORMALIZATIONS:
        raise RnnkitError(f"--normalize: expected one of {', '.join(NORMALIZATIONS)}, "
                          f"got {normalize!r}")
    if target is None:
        sources, targets = _read_tsv(source)
        name = source
    else:
        sources, targets = read_lines(source), read_lines(target)
        for path, lines in ((source, sources), (target, targets)):
            if not any(line.strip() for line in lines):
                raise RnnkitError(f"{path}: empty side: no text in the file")
        if len(sources) != len(targets):
            raise RnnkitError(f"{source} has {len(sources)} lines but {target} has "
                              f"{len(targets)}: the two sides must be line-aligned")
        name = f"{source} + {target}"
    sources = [clean(s, lowercase=lowercase, normalize=normalize) for s in sources]
    targets = [clean(t, lowercase=lowercase, normalize=normalize) for t in targets]
    return ParallelCorpus(sources, targets, name)


def _read_tsv(path: str) -> tuple[list[str], list[str]]:
    sources, targets = [], []
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        columns = line.split("\t")
        if len(columns) < 2:
            raise RnnkitError(f"{path}:{number}: expected source<TAB>target, found no tab")
        sources.append(columns[0])
        targets.append(columns[1])
    if not sources:
        raise RnnkitError(f"{path}: empty: no source<TAB>target lines")
    for side, lines in (("source", sources), ("target", targets)):
        if not any(line.strip() for line in lines):
            raise RnnkitError(f"{path}: empty side: the {side} column holds no text")
    return sources, targets


def filter_pairs(src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]],
                 max_len: int | None,
                 report: Callable[[str], None] | None = None) -> tuple[list[int], int]:
    """Indices of the pairs whose sides are both non-empty and at most ``max_len`` tokens, and
    how many were dropped (said through ``report`` when any were)."""
    kept = [i for i, (s, t) in enumerate(zip(src_ids, tgt_ids, strict=True))
            if len(s) > 0 and len(t) > 0
            and (max_len is None or (len(s) <= max_len and len(t) <= max_len))]
    dropped = len(src_ids) - len(kept)
    if dropped and report is not None:
        limit = f"longer than {max_len} tokens or " if max_len is not None else ""
        report(f"dropped {dropped} of {len(src_ids)} pairs ({limit}with an empty side)")
    return kept, dropped
