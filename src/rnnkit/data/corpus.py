"""Text corpora: finding the files, reading them as UTF-8 in chunks, caching their token ids.

A corpus is given as one file, several (comma-separated), a directory (its files matching a glob,
recursively), or a glob pattern. Files are read in chunks of about 1 MiB cut at line ends, so a
corpus larger than memory streams. Invalid UTF-8 is an error naming the file, byte offset and line
(``errors="strict"``), or is replaced by U+FFFD (``errors="replace"``).

Token ids are cached as a flat binary file (read back as a ``numpy.memmap``) in a cache directory
next to the checkpoint. The cache's name carries a fingerprint of the files (path, size,
modification time), the tokenizer and the error mode, so a changed corpus or tokenizer rebuilds
it; a stale cache is deleted.
"""

from __future__ import annotations

import glob as globlib
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnkit._io import atomic_write_json, check_regular_file
from rnnkit.errors import RnnkitError

__all__ = ["find_files", "read_chunks", "TokenCache", "encode_corpus", "ERRORS"]

ERRORS = ("strict", "replace")
CHUNK_BYTES = 1 << 20


def find_files(spec: str | Sequence[str | os.PathLike], pattern: str = "*.txt") -> list[Path]:
    """Files of a corpus spec: a file, a directory (recursive ``pattern``), a glob, or several
    of these (a list, or comma-separated). Sorted within each part; at least one file."""
    parts = spec.split(",") if isinstance(spec, str) else [str(p) for p in spec]
    files: list[Path] = []
    for part in (p.strip() for p in parts if str(p).strip()):
        path = Path(part)
        if path.is_dir():
            found = sorted(p for p in path.rglob(pattern) if p.is_file())
            if not found:
                raise RnnkitError(f"{path}: directory has no files matching {pattern!r}")
        elif path.is_file():
            found = [path]
        elif path.exists():
            check_regular_file(path)  # a device or FIFO: says so
            found = []
        elif globlib.has_magic(part):
            found = sorted(Path(p) for p in globlib.glob(part, recursive=True)
                           if Path(p).is_file())
            if not found:
                raise RnnkitError(f"{part}: no files match this pattern")
        else:
            raise RnnkitError(f"{path}: no such file or directory")
        files.extend(found)
    if not files:
        raise RnnkitError(f"corpus {spec!r}: no files given")
    return files


def _utf8_boundary(data: bytes) -> int:
    """Largest cut ≤ len(data) that does not split a UTF-8 sequence (prefers a line end)."""
    newline = data.rfind(b"\n")
    if newline >= 0:
        return newline + 1
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:  # continuation byte: keep looking for the lead byte
            continue
        if byte < 0x80:
            return len(data)
        need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
        return len(data) if back >= need else len(data) - back
    return len(data)


def _decode(path: Path, data: bytes, offset: int, errors: str) -> str:
    try:
        return data.decode("utf-8", errors=errors)
    except UnicodeDecodeError as err:
        position = offset + err.start
        with path.open("rb") as handle:
            line = handle.read(position).count(b"\n") + 1
        raise RnnkitError(
            f"{path}: invalid UTF-8 at byte {position} (line {line}); fix the file or pass "
            f"--errors replace"
        ) from None


def read_chunks(files: Sequence[Path], errors: str = "strict") -> Iterator[str]:
    """Text of ``files`` in order, in chunks of about 1 MiB cut at line ends."""
    if errors not in ERRORS:
        raise ValueError(f"--errors: expected one of {', '.join(ERRORS)}, got {errors!r}")
    for path in files:
        try:
            handle = path.open("rb")
        except OSError as err:
            raise RnnkitError(f"{path}: cannot read: {err.strerror}") from None
        with handle:
            offset, pending = 0, b""
            while True:
                block = handle.read(CHUNK_BYTES)
                data = pending + block
                if not data:
                    break
                cut = _utf8_boundary(data) if block else len(data)
                if cut == 0:  # a single over-long sequence: let the decoder report it
                    cut = len(data)
                yield _decode(path, data[:cut], offset, errors)
                offset += cut
                pending = data[cut:]


def fingerprint(files: Sequence[Path], tokenizer_json: dict, errors: str) -> str:
    """Hash of what the token ids depend on."""
    digest = hashlib.sha256()
    digest.update(json.dumps(tokenizer_json, sort_keys=True).encode())
    digest.update(errors.encode())
    for path in files:
        stat = path.stat()
        digest.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()[:20]


@dataclass
class TokenCache:
    """Token ids of a corpus on disk. ``tokens`` is a read-only 1-D memmap."""

    tokens: np.ndarray
    chars: int  # characters of the decoded text, for bits per character
    path: Path


def encode_corpus(files: Sequence[Path], tokenizer, cache_dir: Path, name: str,
                  errors: str = "strict") -> TokenCache:
    """Token ids of ``files`` (cached in ``cache_dir`` as ``<name>-<fingerprint>.bin``)."""
    key = fingerprint(files, tokenizer.to_json(), errors)
    data_path = cache_dir / f"{name}-{key}.bin"
    meta_path = cache_dir / f"{name}-{key}.json"
    if not (data_path.exists() and meta_path.exists()):
        _remove_stale(cache_dir, name)
        _build_cache(files, tokenizer, errors, data_path, meta_path)
    meta = json.loads(meta_path.read_text())
    tokens = np.memmap(data_path, dtype=meta["dtype"], mode="r", shape=(meta["tokens"],))
    return TokenCache(tokens, meta["chars"], data_path)


def _remove_stale(cache_dir: Path, name: str) -> None:
    for old in cache_dir.glob(f"{name}-*"):
        old.unlink(missing_ok=True)


def _build_cache(files, tokenizer, errors, data_path: Path, meta_path: Path) -> None:
    dtype = np.uint16 if tokenizer.vocab_size <= 1 << 16 else np.uint32
    created = _missing_dirs(data_path.parent)
    data_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = data_path.with_name(f".{data_path.name}.{os.getpid()}.tmp")
    count = chars = 0
    try:
        with tmp.open("wb") as handle:
            for text in read_chunks(files, errors):
                ids = np.asarray(tokenizer.encode(text), dtype=dtype)
                ids.tofile(handle)
                count += len(ids)
                chars += len(text)
        if count == 0:
            raise RnnkitError(f"corpus {', '.join(map(str, files[:3]))}: empty (no tokens)")
        os.replace(tmp, data_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        _remove_empty(created)  # leave nothing behind for a corpus that failed
        raise
    atomic_write_json(meta_path, {"tokens": count, "chars": chars,
                                  "dtype": np.dtype(dtype).name,
                                  "files": [str(f) for f in files]})


def _missing_dirs(directory: Path) -> list[Path]:
    """``directory`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not directory.exists() and directory != directory.parent:
        missing.append(directory)
        directory = directory.parent
    return missing


def _remove_empty(directories: list[Path]) -> None:
    for directory in directories:
        try:
            directory.rmdir()
        except OSError:
            return
