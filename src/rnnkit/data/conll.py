"""Readers and writers for tagging data: CoNLL-U and CoNLL-2003-style column files.

**CoNLL-U** (``format="conllu"``): ten tab-separated columns
``ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS MISC``, ``#`` comment lines, a blank line after
each sentence. Multiword-token lines (ID ``1-2``) and empty nodes (ID ``1.1``) are kept for
writing but are not tagged: the tagged words are the syntactic words (integer IDs). The tag column
is chosen by name (``upos``, ``xpos``, ``lemma``, ``feats``, ``deprel``, ``misc``, …) or by its
1-based number.

**Column files** (``format="conll"``, CoNLL-2003 style): one token a line, columns separated by
whitespace, the word first and the tag in a chosen column (default: the last), a blank line
between sentences; ``-DOCSTART-`` lines are document separators. Every token line of a file has
the same number of columns.

Both readers accept CRLF line ends, a missing final newline and any number of blank lines
between or after sentences. Problems raise :class:`~rnnkit.errors.RnnkitError` naming the file
and line. :func:`write_tagged` puts predicted tags into the chosen column and writes every other
byte of each line back unchanged (line ends become ``\\n``), atomically.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from rnnkit._io import atomic_write_text, check_regular_file
from rnnkit.errors import RnnkitError

__all__ = [
    "CONLLU_COLUMNS",
    "TaggedSentence",
    "TaggedDocument",
    "read_tagged",
    "write_tagged",
    "guess_format",
    "resolve_tag_column",
    "read_text",
]

CONLLU_COLUMNS = ("id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc")
FORMATS = ("conllu", "conll")
_WORD_ID = re.compile(r"[1-9][0-9]*")
_RANGE_ID = re.compile(r"[1-9][0-9]*-[1-9][0-9]*")
_EMPTY_ID = re.compile(r"[0-9]+\.[1-9][0-9]*")


@dataclass
class TaggedSentence:
    """One sentence: its words, their tags (None where unknown), and where they came from.

    ``lines`` holds every raw line of the sentence (comments, multiword and empty-node lines
    included, no line end); ``word_rows[i]`` is the index in ``lines`` of word ``i``, and
    ``line_numbers[i]`` its 1-based line number in the file.
    """

    words: list[str]
    tags: list[str | None]
    lines: list[str] = field(default_factory=list)
    word_rows: list[int] = field(default_factory=list)
    line_numbers: list[int] = field(default_factory=list)


@dataclass
class TaggedDocument:
    """A whole tagging file: its sentences plus what is needed to write it back."""

    path: str
    format: str
    tag_column: int  # 0-based; for a word-only column file, 1 (the column predict appends)
    blocks: list[TaggedSentence]  # every blank-line-separated block, in file order

    @property
    def sentences(self) -> list[TaggedSentence]:
        """The blocks that hold words (a ``-DOCSTART-`` or comment-only block holds none)."""
        return [block for block in self.blocks if block.words]

    def where(self, sentence: int, word: int) -> str:
        """``file:line`` of a word, for messages."""
        return f"{self.path}:{self.sentences[sentence].line_numbers[word]}"


def guess_format(path: str | os.PathLike, fmt: str | None = None) -> str:
    """``fmt`` if given, else ``conllu`` for ``*.conllu`` files and ``conll`` otherwise."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise RnnkitError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
        return fmt
    return "conllu" if str(path).lower().endswith(".conllu") else "conll"


def resolve_tag_column(fmt: str, column: str | int | None) -> int | None:
    """0-based tag column. CoNLL-U: a name or 1-based number (default ``upos``). Column files: a
    1-based number, or None for the last column."""
    if column is None or column == "":
        return CONLLU_COLUMNS.index("upos") if fmt == "conllu" else None
    text = str(column).strip().lower()
    if text.isdigit():
        number = int(text)
        if number < 1 or (fmt == "conllu" and number > len(CONLLU_COLUMNS)):
            limit = f" (CoNLL-U has {len(CONLLU_COLUMNS)})" if fmt == "conllu" else ""
            raise RnnkitError(f"--tag-column: column {number} does not exist{limit}")
        index = number - 1
    elif fmt == "conllu" and text in CONLLU_COLUMNS:
        index = CONLLU_COLUMNS.index(text)
    else:
        names = ", ".join(CONLLU_COLUMNS) if fmt == "conllu" else "a 1-based column number"
        raise RnnkitError(f"--tag-column: no column {column!r} in {fmt} files (expected {names})")
    if index in (0, 1) and fmt == "conllu":
        raise RnnkitError(f"--tag-column: {CONLLU_COLUMNS[index]} is not a tag column")
    return index


def read_tagged(
    path: str | os.PathLike,
    *,
    fmt: str | None = None,
    tag_column: str | int | None = None,
    require_tags: bool = True,
    text: str | None = None,
) -> TaggedDocument:
    """Read a tagging file. With ``require_tags`` every word must have a tag (``_`` or a missing
    column is an error); without it a missing tag is None. ``text`` replaces reading ``path``
    (e.g. stdin), which is then only used in messages."""
    fmt = guess_format(path, fmt)
    column = resolve_tag_column(fmt, tag_column)
    if text is None:
        text = read_text(path)
    lines = text.splitlines()  # handles \n, \r\n and a missing final newline
    reader = _ConlluReader if fmt == "conllu" else _ColumnReader
    doc = reader(str(path), column, require_tags).read(lines)
    if not doc.sentences:
        raise RnnkitError(f"{path}: no sentences found (empty file?)")
    return doc


def write_tagged(
    doc: TaggedDocument, predictions: list[list[str]], path: str | os.PathLike | None
) -> str:
    """Text of ``doc`` with ``predictions`` in its tag column; written atomically to ``path``
    unless it is None. Column files without the tag column get one appended."""
    if len(predictions) != len(doc.sentences):
        raise ValueError(f"predictions: expected {len(doc.sentences)} sentences, "
                         f"got {len(predictions)}")
    pending = iter(predictions)
    blocks = []
    for block in doc.blocks:
        lines = list(block.lines)
        if block.words:
            tags = next(pending)
            if len(tags) != len(block.words):
                raise ValueError(f"predictions: expected {len(block.words)} tags for the "
                                 f"sentence at line {block.line_numbers[0]}, got {len(tags)}")
            for row, tag in zip(block.word_rows, tags, strict=True):
                lines[row] = _set_column(lines[row], doc.format, doc.tag_column, tag)
        blocks.append("".join(line + "\n" for line in lines) + "\n")  # blank line after each
    text = "".join(blocks)
    if path is not None:
        atomic_write_text(path, text)
    return text


def read_text(path: str | os.PathLike) -> str:
    """A UTF-8 file's text; a missing or unreadable file raises ``RnnkitError`` naming it."""
    check_regular_file(path)
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RnnkitError(f"{path}: file not found") from None
    except UnicodeDecodeError as err:
        raise RnnkitError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise RnnkitError(f"{path}: cannot read: {err.strerror}") from None


def _set_column(line: str, fmt: str, column: int, tag: str) -> str:
    if fmt == "conllu":
        cells = line.split("\t")
        cells[column] = tag
        return "\t".join(cells)
    # Column files: replace the column's text in place, so the separators stay as they were.
    spans = [match.span() for match in re.finditer(r"\S+", line)]
    if column >= len(spans):
        separator = "\t" if "\t" in line else " "
        return line + separator + tag
    start, end = spans[column]
    return line[:start] + tag + line[end:]


class _Reader:
    """Shared block splitting; subclasses parse one token line."""

    def __init__(self, path: str, column: int | None, require_tags: bool) -> None:
        self.path, self.column, self.require_tags = path, column, require_tags

    def read(self, lines: list[str]) -> TaggedDocument:
        blocks, block, first = [], [], 0
        for number, line in enumerate(lines, start=1):
            if line.strip():
                if not block:
                    first = number
                block.append(line)
            elif block:
                blocks.append(self._sentence(block, first))
                block = []
        if block:
            blocks.append(self._sentence(block, first))
        return TaggedDocument(self.path, self.fmt, self._output_column(), blocks)

    def _output_column(self) -> int:
        return self.column

    def _sentence(self, block: list[str], first: int) -> TaggedSentence:
        sentence = TaggedSentence([], [], list(block))
        for row, line in enumerate(block):
            parsed = self._token(line, first + row)
            if parsed is not None:
                word, tag = parsed
                sentence.words.append(word)
                sentence.tags.append(tag)
                sentence.word_rows.append(row)
                sentence.line_numbers.append(first + row)
        return sentence

    def _fail(self, number: int, message: str) -> RnnkitError:
        return RnnkitError(f"{self.path}:{number}: {message}")

    def _tag(self, value: str | None, number: int, what: str) -> str | None:
        if value is None or (value == "_" and self.fmt == "conllu"):
            if self.require_tags:
                raise self._fail(number, f"missing tag ({what})")
            return None
        return value


class _ConlluReader(_Reader):
    fmt = "conllu"

    def _token(self, line: str, number: int) -> tuple[str, str | None] | None:
        if line.startswith("#"):
            return None
        cells = line.split("\t")
        if len(cells) != len(CONLLU_COLUMNS):
            raise self._fail(number, f"expected {len(CONLLU_COLUMNS)} tab-separated columns, "
                                     f"got {len(cells)}")
        token_id = cells[0]
        if _RANGE_ID.fullmatch(token_id) or _EMPTY_ID.fullmatch(token_id):
            return None
        if not _WORD_ID.fullmatch(token_id):
            raise self._fail(number, f"bad token ID {token_id!r} (expected 1, 2, …, a range "
                                     "like 1-2 or an empty node like 1.1)")
        name = CONLLU_COLUMNS[self.column].upper()
        return cells[1], self._tag(cells[self.column], number, f"{name} column is '_'")


class _ColumnReader(_Reader):
    fmt = "conll"

    def __init__(self, path: str, column: int | None, require_tags: bool) -> None:
        super().__init__(path, column, require_tags)
        self.width: int | None = None
        self.width_line = 0

    def _output_column(self) -> int:
        if self.column is not None:
            return self.column
        return max((self.width or 1) - 1, 1)  # the last column; appended after a lone word

    def _token(self, line: str, number: int) -> tuple[str, str | None] | None:
        cells = line.split()
        if cells[0] == "-DOCSTART-":
            return None  # a document separator: written back, not tagged
        if self.width is None:
            self.width, self.width_line = len(cells), number
            if self.column is not None and self.column >= len(cells) and self.require_tags:
                raise self._fail(number, f"tag column {self.column + 1} does not exist "
                                         f"(the line has {len(cells)} columns)")
        if len(cells) != self.width:
            raise self._fail(number, f"expected {self.width} columns as on line "
                                     f"{self.width_line}, got {len(cells)} (missing tag?)")
        index = self._output_column()
        tag = cells[index] if index < len(cells) else None
        return cells[0], self._tag(tag, number, f"the line has no column {index + 1}")
