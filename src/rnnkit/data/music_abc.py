"""ABC folk tunes as token sequences (folk-rnn style), and back to ABC text.

A file holds tunes, each starting at an ``X:`` line. A tune becomes tokens:

- each music header line (``M:``, ``L:``, ``K:``, ``P:``, ``Q:``, ``Y:``) is one token with its
  spaces removed (``M:6/8``, ``K:D``; ``K:Dmaj`` is written ``K:D``, ``K:Emin`` ``K:Em``);
  ``X:``, ``T:``, ``S:`` and other text headers and ``%`` comments are dropped;
- in the melody: a chord symbol (``"Am7"``), a note with its accidental, octave marks and length
  (``^c'2``, ``B,/2``), notes sounding together (``[Ac]``, ``[F2-c2-]``: one token), a rest,
  a bar line or repeat (``|``, ``:|``, ``|:``, ``||``, ``|]``), an ending (``[1``, ``|2``), a
  broken rhythm (``>``), a tie, a tuplet (``(3``), a space, and ``\\n`` for each line end.

:func:`tune_text` writes tokens back as one ABC tune, so a generated tune is ABC a parser reads.
Readers raise :class:`~rnnkit.errors.RnnkitError` naming ``file:line`` and the tune number.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rnnkit.errors import RnnkitError

__all__ = ["AbcTune", "read_abc", "read_split", "tokenize_body", "header_token", "tune_text",
           "prime_tokens", "NEWLINE", "is_header"]

NEWLINE = "\n"
MUSIC_HEADERS = ("M", "L", "K", "P", "Q", "Y")
_HEADER = re.compile(r"^([A-Za-z]):(.*)$")
_BODY = re.compile(r"""
    "[^"]*"                                   # chord symbol
  | \[[A-Za-z]:[^\]]*\]                       # inline field [K:G]
  | ![^!]*!                                   # decoration
  | \[[_^=]*[A-Ga-g][_^=A-Ga-g,'/\d\- ]*\]    # notes sounding together [Ac]
  | :*\[\d+                                   # ending [1
  | :*\|[\]|]?:*\d*                           # bar line, repeat, ending |1
  | ::                                        # double repeat
  | [_^=]*[A-Ga-gzZx][,']*\d*/*\d*            # note or rest with its length
  | \(\d                                      # tuplet
  | [<>]+ | [ \t]+ | .                        # broken rhythm, space, anything else
""", re.VERBOSE)
_KEY_MODES = (("major", ""), ("maj", ""), ("minor", "m"), ("min", "m"))


@dataclass
class AbcTune:
    """One tune: where it came from and its tokens."""

    file: str
    number: str
    line: int
    tokens: list[str]


def is_header(token: str) -> bool:
    return len(token) > 2 and token[1] == ":" and token[0] in MUSIC_HEADERS


def header_token(field: str, value: str) -> str:
    """``K:Dmaj`` → ``K:D``; spaces removed."""
    value = value.split("%")[0].replace(" ", "")
    if field == "K":
        for long, short in _KEY_MODES:
            if value.lower().endswith(long) and len(value) > len(long):
                value = value[: -len(long)] + short
                break
    return f"{field}:{value}"


def tokenize_body(line: str) -> list[str]:
    """Tokens of one melody line (no line end); runs of spaces become one space."""
    tokens = []
    for match in _BODY.finditer(line.split("%")[0].rstrip()):
        token = match.group(0)
        tokens.append(" " if token.isspace() else token)
    return tokens


def read_abc(path: str | Path) -> list[AbcTune]:
    """Every tune of an ABC file; a tune without ``K:`` or with no melody is an error."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise RnnkitError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise RnnkitError(f"{path}: cannot read as UTF-8 text: {err}") from None
    tunes: list[AbcTune] = []
    for number, line in enumerate(lines, 1):
        header = _HEADER.match(line.strip())
        if header and header.group(1) == "X":
            tunes.append(AbcTune(str(path), header.group(2).strip(), number, []))
        elif tunes:
            _add_line(tunes[-1], line.strip(), header)
        elif line.strip() and not line.lstrip().startswith("%"):
            raise RnnkitError(f"{path}:{number}: text before the first tune (a tune starts "
                              "with an X: line)")
    for tune in tunes:
        _check_tune(tune)
    if not tunes:
        raise RnnkitError(f"{path}: no tunes (an empty corpus; a tune starts with an X: line)")
    return tunes


def _add_line(tune: AbcTune, line: str, header: re.Match | None) -> None:
    if not line or line.startswith("%"):
        return
    if header and header.group(1) in MUSIC_HEADERS:
        tune.tokens.append(header_token(header.group(1), header.group(2)))
    elif not header:
        tune.tokens.extend([*tokenize_body(line), NEWLINE])


def _check_tune(tune: AbcTune) -> None:
    where = f"{tune.file}:{tune.line}: tune X:{tune.number}"
    if not any(token.startswith("K:") for token in tune.tokens):
        raise RnnkitError(f"{where} has no K: (key) header")
    if not any(not is_header(token) and token != NEWLINE for token in tune.tokens):
        raise RnnkitError(f"{where} has no melody")


def read_split(path: str | Path) -> dict[tuple[str, str], str]:
    """``split.txt`` lines ``FILE X SPLIT`` → ``{(file name, X): split}``."""
    path = Path(path)
    split = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if len(parts) != 3 or parts[2] not in ("train", "valid", "test"):
            raise RnnkitError(f"{path}:{number}: expected 'FILE X SPLIT' with SPLIT one of "
                              f"train, valid, test, got {line!r}")
        split[(parts[0], parts[1])] = parts[2]
    return split


def tune_text(tokens: Sequence[str], number: int = 1) -> str:
    """One ABC tune (``X:number``, a title, then the tokens) as text; a header token always
    starts its own line. A tune without ``K:`` before its melody gets ``K:C``."""
    lines, body = [f"X:{number}", f"T:Generated tune {number}"], ""
    seen_key = False
    for token in tokens:
        if is_header(token) or token == NEWLINE:
            if body.strip():
                if not seen_key:
                    lines.append("K:C")
                    seen_key = True
                lines.append(body.rstrip())
            body = ""
            if token != NEWLINE:
                lines.append(token)
                seen_key = seen_key or token.startswith("K:")
        else:
            body += token
    if body.strip():
        lines.extend(([] if seen_key else ["K:C"]) + [body.rstrip()])
    return "\n".join(lines) + "\n"


def prime_tokens(text: str) -> list[str]:
    """Tokens of a primer given as text: header fields separated by spaces or new lines
    (``M:6/8 K:Dmaj``), optionally followed by melody lines."""
    tokens = []
    spaced = re.sub(r"\s+(?=[A-Za-z]:)", "\n", text.strip())
    for line in spaced.splitlines():
        header = _HEADER.match(line.strip())
        if header and header.group(1) in MUSIC_HEADERS:
            tokens.append(header_token(header.group(1), header.group(2)))
        elif line.strip():
            tokens.extend([*tokenize_body(line.strip()), NEWLINE])
    return tokens
