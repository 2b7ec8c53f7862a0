"""A run directory is never silently lost: one training at a time, no training into another run
without ``--resume`` or ``--overwrite``, and the litter of a killed checkpoint write cleaned up.

The lock is a file ``.lock`` holding ``host pid``, created exclusively; a lock whose process is
gone (same host) is stale and taken over. Under torchrun only the first process takes it.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

from rnnkit.errors import RnnkitError
from rnnkit.train import checkpoint as ckpt

__all__ = ["RunLock", "check_new_run", "clean_litter", "RUN_FILES"]

LOCK = ".lock"
RUN_FILES = ("best", "last", "metrics.jsonl")  # what makes a directory a run


def check_new_run(out_dir: Path, overwrite: bool) -> None:
    """Refuse to start a new run where one already is (unless ``overwrite``: then the old
    run's files are removed first, nothing else in the directory)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise RnnkitError(f"--out {out_dir}: exists and is not a directory")
    found = [name for name in RUN_FILES if (out_dir / name).exists()]
    if not found:
        return
    if not overwrite:
        raise RnnkitError(f"--out {out_dir}: already holds a run ({', '.join(found)}); continue "
                          f"it with --resume {out_dir}, choose another --out, or replace it with "
                          "--overwrite")
    for name in found:
        path = out_dir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    for name in ("loss.png", "tensorboard", "cache"):
        path = out_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def clean_litter(out_dir: Path) -> None:
    """Remove what a killed checkpoint write left (``.best.tmp-*``, ``.last.old-*``), after
    recovering a checkpoint that only survives as such a copy."""
    for name in ("best", "last"):
        if not (out_dir / name / ckpt.CONFIG).exists():
            olds = sorted(p for p in out_dir.glob(f".{name}.old-*") if (p / ckpt.CONFIG).exists())
            if olds:
                os.replace(olds[-1], out_dir / name)
    for pattern in (".best.tmp-*", ".last.tmp-*", ".best.old-*", ".last.old-*"):
        for path in out_dir.glob(pattern):
            shutil.rmtree(path, ignore_errors=True)


class RunLock:
    """``with RunLock(out_dir):`` one training at a time in ``out_dir``."""

    def __init__(self, out_dir: Path, enabled: bool = True) -> None:
        self.path, self.enabled, self.held = out_dir / LOCK, enabled, False
        self.created = False  # the directory did not exist: remove it again if left empty

    def __enter__(self) -> RunLock:
        if not self.enabled:
            return self
        self.created = not self.path.parent.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = f"{socket.gethostname()} {os.getpid()}"
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._stale():
                    raise RnnkitError(f"--out {self.path.parent}: another training is running "
                                      f"there ({self._owner()}); wait for it, or remove "
                                      f"{self.path} if it is not") from None
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(me + "\n")
            self.held = True
            return self
        raise RnnkitError(f"--out {self.path.parent}: cannot take the lock {self.path}")

    def __exit__(self, *exc) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False
            if self.created and not any(self.path.parent.iterdir()):
                self.path.parent.rmdir()  # a run that failed before writing anything

    def _owner(self) -> str:
        try:
            return self.path.read_text().strip() or "unknown process"
        except OSError:
            return "unknown process"

    def _stale(self) -> bool:
        """The lock's process is gone (same host), or the lock is unreadable or empty."""
        parts = self._owner().split()
        if len(parts) != 2 or not parts[1].isdigit():
            return True
        host, pid = parts[0], int(parts[1])
        if host != socket.gethostname():
            return False  # another machine's: cannot tell, keep it
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
