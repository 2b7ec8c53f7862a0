"""Word-vector files: read and write the word2vec text, GloVe text and word2vec binary formats.

The three formats gensim's ``KeyedVectors.load_word2vec_format`` and the original tools use:

- ``word2vec`` text: a header line ``COUNT DIM``, then one vector a line, ``WORD V1 ... VDIM``;
- ``glove`` text: the same lines without the header;
- ``binary`` (word2vec ``-binary 1``): the header line ``COUNT DIM\\n``, then per vector the word
  in UTF-8, one space, ``DIM`` little-endian float32 values and a newline (a reader also accepts
  records without the newline, as gensim 4 writes them).

``read_vectors`` detects the format (``format=`` forces one); every problem with the file is an
``RnnkitError`` naming ``FILE:LINE`` (for binary files ``FILE:record N``): an empty file, a line
whose number of values differs from the others (or from the header), a header whose count does
not match the vectors that follow, a word that is not UTF-8, a value that is not a number. A word
that occurs twice keeps its first vector (gensim does the same).

Example::

    vectors = read_vectors("vec.txt")
    vectors.matrix[vectors.index["king"]]          # float32 vector of "king"
    write_vectors("vec.bin", vectors, format="binary")
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rnnkit._io import atomic_write_bytes, check_regular_file
from rnnkit.errors import RnnkitError

__all__ = ["WordVectors", "read_vectors", "write_vectors", "FORMATS", "detect_format",
           "SimilarityPair", "read_pairs", "find_benchmarks"]

FORMATS = ("word2vec", "glove", "binary")
_TEXTY = frozenset(b"0123456789.-+eEinfaINFA \t\r\n")


@dataclass
class WordVectors:
    """``words[i]`` has the vector ``matrix[i]``; ``index`` maps a word to its row (built from
    ``words`` when not given)."""

    words: list[str]
    matrix: np.ndarray
    index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.matrix = np.asarray(self.matrix, dtype=np.float32)
        if self.matrix.ndim != 2 or self.matrix.shape[0] != len(self.words):
            raise ValueError(f"matrix of shape {self.matrix.shape} for {len(self.words)} words")
        if not self.index:
            for i, word in enumerate(self.words):
                self.index.setdefault(word, i)

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self.index

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def vector(self, word: str) -> np.ndarray:
        return self.matrix[self.index[word]]


def detect_format(path: str | os.PathLike) -> str:
    """``"word2vec"``, ``"glove"`` or ``"binary"`` from the first bytes of the file."""
    with open(path, "rb") as handle:
        head = handle.read(1 << 16)
    if not head.strip():
        raise RnnkitError(f"{path}: empty file, expected word vectors")
    first, _, rest = head.partition(b"\n")
    if _header(first) is None:
        return "glove"
    dim = _header(first)[1]
    # text: the rest of the first vector line is numbers; binary: 4*dim bytes of float32 after
    # the first word, which (almost) never read as numbers or consist of digits and signs only
    tokens = rest.split(b"\n", 1)[0].split()[1:]
    if tokens and all(_is_float(t) for t in tokens):
        return "word2vec"
    word_end = rest.find(b" ")
    if word_end < 0:
        return "word2vec"
    sample = rest[word_end + 1:word_end + 1 + 4 * dim]
    return "word2vec" if all(b in _TEXTY for b in sample) else "binary"


def _header(line: bytes) -> tuple[int, int] | None:
    parts = line.split()
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    return int(parts[0]), int(parts[1])


def read_vectors(path: str | os.PathLike, *, limit: int | None = None,
                 format: str | None = None) -> WordVectors:
    """Read a vectors file (format detected unless ``format`` is given); ``limit``: only the
    first ``limit`` vectors."""
    check_regular_file(path)
    if format is not None and format not in FORMATS:
        raise RnnkitError(f"format {format!r}: expected one of {', '.join(FORMATS)}")
    if limit is not None and limit < 1:
        raise RnnkitError(f"limit {limit}: expected at least 1")
    if os.path.getsize(path) == 0:
        raise RnnkitError(f"{path}: empty file, expected word vectors")
    format = format or detect_format(path)
    if format == "binary":
        return _read_binary(path, limit)
    return _read_text(path, limit, header=format == "word2vec")


def _decode_word(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RnnkitError(f"{where}: word {raw[:40]!r} is not valid UTF-8 ({err.reason} at "
                          f"byte {err.start})") from None


def _read_text(path, limit: int | None, *, header: bool) -> WordVectors:
    words: list[str] = []
    rows: list[np.ndarray] = []
    seen: set[str] = set()
    count = dim = None
    dim_line = 0
    with open(path, "rb") as handle:
        lineno = 0
        if header:
            lineno = 1
            first = handle.readline()
            parsed = _header(first)
            if parsed is None:
                raise RnnkitError(f"{path}:1: expected a header 'COUNT DIM' (word2vec text "
                                  f"format), got {first[:60].decode('utf-8', 'replace')!r}")
            count, dim = parsed
            dim_line = 1
            if dim < 1:
                raise RnnkitError(f"{path}:1: header gives dimension {dim}, expected >= 1")
        records = 0
        stopped = False
        for raw in handle:
            lineno += 1
            parts = raw.split()
            if not parts:
                continue  # a blank line (e.g. at the end)
            if limit is not None and records >= limit:
                stopped = True
                break
            records += 1
            where = f"{path}:{lineno}"
            word = _decode_word(parts[0], where)
            values = parts[1:]
            if dim is None:
                if not values:
                    raise RnnkitError(f"{where}: word {word!r} has no values")
                dim, dim_line = len(values), lineno
            elif len(values) != dim:
                origin = "the header" if dim_line == 1 and header else f"line {dim_line}"
                raise RnnkitError(f"{where}: {len(values)} values for {word!r}, expected {dim} "
                                  f"(as {origin})")
            try:
                row = np.array([float(v) for v in values], dtype=np.float32)
            except ValueError:
                bad = next(v for v in values if not _is_float(v))
                raise RnnkitError(f"{where}: value {bad[:30].decode('utf-8', 'replace')!r} "
                                  f"is not a number") from None
            if word in seen:
                continue
            seen.add(word)
            words.append(word)
            rows.append(row)
    if not rows:
        raise RnnkitError(f"{path}: no vectors in the file" + (" (only a header)" if header
                                                              else ""))
    if count is not None and not stopped and records != count:
        raise RnnkitError(f"{path}:1: header says {count} vectors, the file has {records}")
    return WordVectors(words, np.stack(rows))


def _is_float(token: bytes) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _read_binary(path, limit: int | None) -> WordVectors:
    data = Path(path).read_bytes()
    first, newline, _ = data.partition(b"\n")
    parsed = _header(first) if newline else None
    if parsed is None:
        raise RnnkitError(f"{path}:1: expected a header 'COUNT DIM' (word2vec binary format)")
    count, dim = parsed
    if dim < 1:
        raise RnnkitError(f"{path}:1: header gives dimension {dim}, expected >= 1")
    pos = len(first) + 1
    width = 4 * dim
    words: list[str] = []
    rows: list[np.ndarray] = []
    seen: set[str] = set()
    record = 0
    want = count if limit is None else min(count, limit)
    while record < want:
        while pos < len(data) and data[pos] in (0x0A, 0x0D):  # newline after the last record
            pos += 1
        if pos >= len(data):
            break
        record += 1
        where = f"{path}:record {record}"
        end = data.find(b" ", pos)
        if end < 0 or end - pos > 10_000:
            raise RnnkitError(f"{where}: no word followed by a space at byte {pos} (not the "
                              f"word2vec binary format, or the header dimension {dim} is wrong)")
        word = _decode_word(data[pos:end], where)
        if end + 1 + width > len(data):
            raise RnnkitError(f"{where}: file ends inside the vector of {word!r} ({dim} float32 "
                              f"values expected, as the header)")
        row = np.frombuffer(data, dtype="<f4", count=dim, offset=end + 1).astype(np.float32)
        pos = end + 1 + width
        if word not in seen:
            seen.add(word)
            words.append(word)
            rows.append(row)
    if limit is None or limit > count:
        while pos < len(data) and data[pos] in (0x0A, 0x0D):
            pos += 1
        if record != count or pos != len(data):
            more = "" if pos == len(data) else f" and {len(data) - pos} more bytes"
            raise RnnkitError(f"{path}:1: header says {count} vectors of dimension {dim}, the "
                              f"file has {record}{more}")
    if not rows:
        raise RnnkitError(f"{path}: no vectors in the file (only a header)")
    return WordVectors(words, np.stack(rows))


def write_vectors(path: str | os.PathLike, vectors: WordVectors, format: str = "word2vec",
                  *, precision: int = 6) -> None:
    """Write ``vectors`` atomically (never a half-written file) in ``format``."""
    if format not in FORMATS:
        raise RnnkitError(f"format {format!r}: expected one of {', '.join(FORMATS)}")
    for word in vectors.words:
        if not word or any(ch.isspace() for ch in word):
            raise RnnkitError(f"word {word!r}: empty or containing white space cannot be "
                              f"written in the {format} format")
    matrix = np.asarray(vectors.matrix, dtype=np.float32)
    n, dim = matrix.shape
    if format == "binary":
        chunks = [f"{n} {dim}\n".encode()]
        for word, row in zip(vectors.words, matrix):
            chunks.append(word.encode("utf-8") + b" " + row.astype("<f4").tobytes() + b"\n")
        atomic_write_bytes(path, b"".join(chunks))
        return
    lines = [f"{n} {dim}"] if format == "word2vec" else []
    row_format = " ".join([f"%.{precision}g"] * dim)  # one % per row: 3x faster than per value
    for word, row in zip(vectors.words, matrix):
        lines.append(word + " " + row_format % tuple(row.tolist()))
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))


# ---------------------------------------------------------------------- similarity sets


@dataclass
class SimilarityPair:
    """One line of a word-similarity set: two words and the human score."""

    a: str
    b: str
    score: float


def read_pairs(path: str | os.PathLike) -> list[SimilarityPair]:
    """A similarity set: one ``WORD1 WORD2 SCORE`` a line (tab- or space-separated, as the
    ``word-sim`` sets of wordvectors.org); blank lines and ``#`` comments skipped; anything
    else is an ``RnnkitError`` naming ``FILE:LINE``."""
    check_regular_file(path)
    pairs = []
    with open(path, "rb") as handle:
        for lineno, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise RnnkitError(f"{path}:{lineno}: not valid UTF-8") from None
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) != 3:
                raise RnnkitError(f"{path}:{lineno}: expected 'WORD1 WORD2 SCORE', got "
                                  f"{line[:60]!r}")
            try:
                score = float(parts[2])
            except ValueError:
                raise RnnkitError(f"{path}:{lineno}: score {parts[2][:30]!r} is not a "
                                  "number") from None
            pairs.append(SimilarityPair(parts[0], parts[1], score))
    if not pairs:
        raise RnnkitError(f"{path}: no word pairs in the file")
    return pairs


def find_benchmarks(path: str | os.PathLike) -> list[Path]:
    """The similarity sets of ``path``: a file, or every ``*.txt`` of a directory (sorted)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.glob("*.txt") if p.is_file())
        if not files:
            raise RnnkitError(f"--benchmarks {path}: no *.txt similarity sets in the directory")
        return files
    check_regular_file(path)
    return [path]
