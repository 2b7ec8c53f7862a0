"""``Vocabulary``: a two-way map between tokens (strings) and integer ids.

Special tokens come first, in the order given, so their ids are stable (with the defaults:
``<pad>`` = 0, ``<unk>`` = 1, ``<bos>`` = 2, ``<eos>`` = 3). The remaining tokens follow by
descending frequency, ties broken by the token itself, so building twice from the same data gives
the same ids. A token not in the vocabulary encodes to ``<unk>``; without an ``<unk>`` special it
is an error naming the token.

Saved as JSON (``to_json`` / ``from_json``, ``save`` / ``load``)::

    {"format": "rnnkit.vocabulary", "version": 1, "specials": [...], "tokens": [...]}

where ``tokens`` lists every token in id order, specials included.

Example::

    vocab = Vocabulary.build([["the", "cat"], ["the", "dog"]], min_freq=1)
    ids = vocab.encode(["the", "bird"])        # [4, 1]: "bird" is <unk>
    vocab.decode(ids)                          # ["the", "<unk>"]
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rnnkit._io import atomic_write_json
from rnnkit.errors import RnnkitError

__all__ = ["Vocabulary", "PAD", "UNK", "BOS", "EOS", "DEFAULT_SPECIALS"]

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
DEFAULT_SPECIALS: tuple[str, ...] = (PAD, UNK, BOS, EOS)
_FORMAT = "rnnkit.vocabulary"


class Vocabulary:
    """Tokens ↔ ids. ``specials`` take the first ids; ``tokens`` may repeat them (ignored)."""

    def __init__(
        self, tokens: Iterable[str] = (), specials: Sequence[str] = DEFAULT_SPECIALS
    ) -> None:
        self.specials: tuple[str, ...] = tuple(specials)
        if len(set(self.specials)) != len(self.specials):
            raise ValueError(f"specials: expected distinct tokens, got {list(self.specials)}")
        self._tokens: list[str] = []
        self._ids: dict[str, int] = {}
        for token in (*self.specials, *tokens):
            self.add(token)

    # ------------------------------------------------------------------ building

    @classmethod
    def build(
        cls,
        sequences: Iterable[Iterable[str]] | Counter,
        *,
        min_freq: int = 1,
        max_size: int | None = None,
        specials: Sequence[str] = DEFAULT_SPECIALS,
    ) -> Vocabulary:
        """Vocabulary of the tokens seen ``min_freq`` times or more, most frequent first.

        ``sequences`` is an iterable of token sequences, or a ready ``Counter``. ``max_size``
        caps the number of non-special tokens.
        """
        if min_freq < 1:
            raise ValueError(f"min_freq: expected an integer >= 1, got {min_freq}")
        if max_size is not None and max_size < 0:
            raise ValueError(f"max_size: expected None or an integer >= 0, got {max_size}")
        counts = sequences if isinstance(sequences, Counter) else _count(sequences)
        kept = [(token, n) for token, n in counts.items() if n >= min_freq]
        kept.sort(key=lambda item: (-item[1], item[0]))
        tokens = [token for token, _ in kept if token not in specials]
        if max_size is not None:
            tokens = tokens[:max_size]
        return cls(tokens, specials)

    def add(self, token: str) -> int:
        """Add ``token`` if new; return its id."""
        if not isinstance(token, str):
            raise TypeError(f"token: expected str, got {type(token).__name__}")
        index = self._ids.get(token)
        if index is None:
            index = len(self._tokens)
            self._tokens.append(token)
            self._ids[token] = index
        return index

    # ------------------------------------------------------------------ lookup

    def __len__(self) -> int:
        return len(self._tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._ids

    def __iter__(self):
        return iter(self._tokens)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocabulary):
            return NotImplemented
        return self.specials == other.specials and self._tokens == other._tokens

    def __repr__(self) -> str:
        return f"Vocabulary(size={len(self)}, specials={list(self.specials)})"

    @property
    def tokens(self) -> list[str]:
        """All tokens in id order (a copy)."""
        return list(self._tokens)

    def id_of(self, token: str) -> int:
        """Id of ``token``; ``<unk>``'s id if unknown; ``KeyError`` if there is no ``<unk>``."""
        index = self._ids.get(token)
        if index is not None:
            return index
        if UNK in self._ids:
            return self._ids[UNK]
        raise KeyError(f"token {token!r} is not in the vocabulary, which has no {UNK}")

    def token_of(self, index: int) -> str:
        """Token with id ``index``."""
        if not 0 <= index < len(self._tokens):
            raise IndexError(f"id {index} is out of range for a vocabulary of {len(self)}")
        return self._tokens[index]

    def _special_id(self, token: str) -> int | None:
        return self._ids.get(token) if token in self.specials else None

    @property
    def pad_id(self) -> int | None:
        """Id of ``<pad>``, or None if it is not a special."""
        return self._special_id(PAD)

    @property
    def unk_id(self) -> int | None:
        """Id of ``<unk>``, or None if it is not a special."""
        return self._special_id(UNK)

    @property
    def bos_id(self) -> int | None:
        """Id of ``<bos>``, or None if it is not a special."""
        return self._special_id(BOS)

    @property
    def eos_id(self) -> int | None:
        """Id of ``<eos>``, or None if it is not a special."""
        return self._special_id(EOS)

    # ------------------------------------------------------------------ coding

    def encode(self, tokens: Iterable[str], *, bos: bool = False, eos: bool = False) -> list[int]:
        """Ids of ``tokens`` (unknown → ``<unk>``), optionally framed by ``<bos>`` / ``<eos>``."""
        ids = [self.id_of(token) for token in tokens]
        if bos:
            ids.insert(0, self._required(BOS))
        if eos:
            ids.append(self._required(EOS))
        return ids

    def decode(self, ids: Iterable[int], *, skip_specials: bool = False) -> list[str]:
        """Tokens of ``ids``; with ``skip_specials`` the special tokens are left out."""
        tokens = [self.token_of(int(index)) for index in ids]
        if skip_specials:
            specials = set(self.specials)
            tokens = [token for token in tokens if token not in specials]
        return tokens

    def _required(self, token: str) -> int:
        index = self._special_id(token)
        if index is None:
            raise KeyError(f"the vocabulary has no {token} special token")
        return index

    # ------------------------------------------------------------------ files

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (see the module docstring)."""
        return {
            "format": _FORMAT,
            "version": 1,
            "specials": list(self.specials),
            "tokens": list(self._tokens),
        }

    @classmethod
    def from_json(cls, data: Any, *, source: str = "vocabulary") -> Vocabulary:
        """Inverse of :meth:`to_json`; malformed data raises ``RnnkitError`` naming ``source``."""
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise RnnkitError(f"{source}: not an rnnkit vocabulary (missing format {_FORMAT!r})")
        tokens, specials = data.get("tokens"), data.get("specials")
        if not _is_str_list(tokens) or not _is_str_list(specials):
            raise RnnkitError(f"{source}: 'tokens' and 'specials' must be lists of strings")
        if tokens[: len(specials)] != specials or len(set(tokens)) != len(tokens):
            raise RnnkitError(f"{source}: tokens must be distinct and start with the specials")
        return cls(tokens, specials)

    def save(self, path: str | os.PathLike) -> None:
        """Write as JSON, atomically."""
        atomic_write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocabulary:
        """Read a file written by :meth:`save`; problems raise ``RnnkitError`` naming the file."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RnnkitError(f"{path}: vocabulary file not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise RnnkitError(f"{path}: cannot read vocabulary: {err}") from None
        return cls.from_json(data, source=str(path))


def _count(sequences: Iterable[Iterable[str]]) -> Counter:
    counts: Counter = Counter()
    for sequence in sequences:
        counts.update(sequence)
    return counts


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)
