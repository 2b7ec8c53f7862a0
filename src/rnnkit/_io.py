"""Atomic file writes: a crash never leaves a half-written file in place of a good one."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_json", "default_mode",
           "read_input", "write_output", "check_regular_file"]


def default_mode(directory: bool = False) -> int:
    """Permissions a plain ``open``/``mkdir`` would give (mkstemp/mkdtemp give 0600/0700)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path``, fsync it, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """:func:`atomic_write_text` of ``obj`` as indented JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def read_input(path: str) -> tuple[str, str | None]:
    """(name for messages, text or None to read the file): ``-`` is standard input."""
    if path == "-":
        import sys

        return "<stdin>", sys.stdin.read()
    return path, None


def write_output(flag: str, path: str, text: str) -> None:
    """``-``: standard output; else the file, atomically (never a partial file); an error names
    the option ``flag``."""
    import sys

    from rnnkit.errors import RnnkitError

    if path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        atomic_write_text(path, text)
    except OSError as err:
        raise RnnkitError(f"{flag} {path}: cannot write: {err.strerror}") from None


def check_regular_file(path: str | os.PathLike) -> None:
    """``RnnkitError`` naming ``path`` unless it is a regular file: missing, a directory, or a
    device or FIFO (``/dev/zero`` would never end) each get their own message."""
    import stat

    from rnnkit.errors import RnnkitError

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise RnnkitError(f"{path}: file not found") from None
    except OSError as err:
        raise RnnkitError(f"{path}: cannot read: {err.strerror}") from None
    if stat.S_ISDIR(mode):
        raise RnnkitError(f"{path}: is a directory, expected a file")
    if not stat.S_ISREG(mode):
        raise RnnkitError(f"{path}: not a regular file (a device, FIFO or socket)")
