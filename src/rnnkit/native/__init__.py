"""Compiled CPU time loops, built on first use with the machine's C++ compiler.

One file per cell holds its recurrence (forward and BPTT): ``lstm.cpp``, ``gru.cpp``,
``elman.cpp``; ``weight_grads.cpp`` the one-pass weight gradients; ``native.h`` what they share
(SIMD vectors, the register-tile product, the thread team, scratch blocks). Plain C++17 with
vector extensions and OpenMP, no PyTorch headers; ``library.cpp`` includes them all, so they
compile as one unit. The first call builds it with ``$CXX`` (or ``c++``) and
``-O3 -march=native -fopenmp`` into the user's cache (``$RNNKIT_CACHE_DIR``, else
``$XDG_CACHE_HOME/rnnkit``, else ``~/.cache/rnnkit``; a per-user folder under the temporary
directory where none of those can be written), in a folder named by a hash of the sources, the
compiler's version, the flags and the CPU (``-march=native`` code for one CPU can stop another
with "Illegal instruction": a home folder shared by machines of different kinds), and loads it
with ctypes (its functions are declared in :mod:`rnnkit.native._ffi`). Later processes load the
built library directly.

Where it cannot be built or loaded (no compiler, no writable folder, ``RNNKIT_NATIVE=0`` in the
environment), or where its answer on a small problem disagrees with the reference math, the
``native`` backend is unavailable and ``backend="auto"`` keeps the reference loop;
:func:`problem` says why. ``backend="native"`` then raises a ``ValueError`` with that reason.

OpenMP: torch's CPU wheels load a ``libgomp.so.1``; the library links the same soname, so its
threads are torch's own pool (``torch.get_num_threads()`` of them) instead of a second pool
spinning against it for the same cores.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from rnnkit._io import atomic_write_text
from rnnkit.native import _ffi

__all__ = ["library", "problem", "cache_dir", "elman", "gru", "lstm"]

FOLDER = Path(__file__).parent
SOURCE = FOLDER / "library.cpp"  # includes the others: one translation unit
# what the library is built from (the build's hash covers them all)
PARTS = tuple(FOLDER / name for name in ("lstm.cpp", "gru.cpp", "elman.cpp", "weight_grads.cpp"))
HEADERS = (FOLDER / "native.h",)

# Tried in turn; the first that compiles is used. Never without tuning for this CPU: a baseline
# x86-64 build (SSE2, no FMA) ran the forward loop many times slower than the -march=native one,
# and slower than the reference loop (docs/benchmarks.md).
_FLAG_SETS = (
    ["-O3", "-march=native", "-fopenmp"],
    ["-O3", "-mcpu=native", "-fopenmp"],  # compilers that spell it so (some Arm targets)
    ["-O3", "-march=native"],  # no OpenMP: one thread
)
_COMMON = ["-std=c++17", "-shared", "-fPIC"]
_ABI = 6  # rnnkit_native_version() of the source this module speaks to


def cache_dir() -> Path:
    """Where built libraries are kept."""
    explicit = os.environ.get("RNNKIT_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "rnnkit"


def _writable_cache() -> Path:
    """:func:`cache_dir`, or a private per-user folder in the temporary directory where that
    cannot be created (a read-only home). Either must be the user's own and writable by no one
    else: code is loaded from it."""
    folder = cache_dir()
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if os.access(folder, os.W_OK):
            check_private(folder)
            return folder
    except OSError:
        pass
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    fallback = Path(tempfile.gettempdir()) / f"rnnkit-cache-{user}"
    try:
        fallback.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise RuntimeError(f"cannot create the cache folder {fallback}: {error}") from None
    check_private(fallback)
    return fallback


def check_private(path: Path) -> None:
    """Refuse a cache folder or library another user could have planted or can change: a
    symbolic link, owned by someone else, or writable by group or others."""
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise RuntimeError(f"{path} is a symbolic link; refusing to load code through it")
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise RuntimeError(f"{path} belongs to another user (uid {info.st_uid}); refusing to "
                           "load code from it (set RNNKIT_CACHE_DIR to a folder of your own)")
    if info.st_mode & 0o022:
        raise RuntimeError(f"{path} is writable by other users (mode {info.st_mode & 0o777:o}); "
                           "refusing to load code from it")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _verified(target: Path) -> bool:
    """An existing library is used only if it is private and its hash is the one recorded when
    it was built here; anything else is rebuilt."""
    record = target.with_name(target.name + ".sha256")
    check_private(target.parent)
    check_private(target)
    return record.exists() and record.read_text().strip() == _digest(target)


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


def _compiler_version(cxx: str) -> str:
    try:
        done = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip()


def _cpu() -> str:
    """What ``-march=native`` compiles for: the CPU's model and instruction-set flags (Linux:
    ``/proc/cpuinfo``'s first processor, ``flags`` on x86, ``Features`` on Arm), else what
    :mod:`platform` knows."""
    import platform

    keep = ("model name", "flags", "features", "cpu part", "cpu implementer")
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            lines = []
            for line in info:
                if not line.strip():
                    break  # the first processor is enough
                if line.split(":", 1)[0].strip().lower() in keep:
                    lines.append(line.strip())
    except OSError:
        lines = []
    return "\n".join([platform.machine(), platform.processor(), *lines])


def _build() -> Path:
    """Compile :data:`SOURCE` (or find it compiled); raises RuntimeError with the reason."""
    cxx = _compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (set CXX, or install g++ or clang++)")
    source = b"\0".join(path.read_bytes() for path in (SOURCE, *PARTS, *HEADERS))
    version, cpu = _compiler_version(cxx), _cpu()
    errors = []
    for flags in _FLAG_SETS:
        key = hashlib.sha256(
            b"\0".join([source, version.encode(), " ".join(_COMMON + flags).encode(),
                        cpu.encode()])
        ).hexdigest()[:16]
        target = _writable_cache() / f"native-{key}" / "librnnkit_lstm.so"
        if target.exists() and _verified(target):
            return target
        try:
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as error:
            raise RuntimeError(f"cannot create the cache folder {target.parent}: {error}") from None
        check_private(target.parent)
        # compile next to the target, then rename: a concurrent or interrupted build never
        # leaves a half-written library where a loader looks
        fd, temp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        command = [cxx, *_COMMON, *flags, "-o", temp, str(SOURCE)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.SubprocessError) as error:
            os.unlink(temp)
            raise RuntimeError(f"{cxx} could not run: {error}") from None
        if done.returncode == 0:
            os.chmod(temp, 0o700)
            atomic_write_text(target.with_name(target.name + ".sha256"), _digest(Path(temp)))
            os.replace(temp, target)
            return target
        os.unlink(temp)
        lines = (done.stderr or done.stdout).strip().splitlines()
        first_error = next((line for line in lines if "error" in line), None)
        reason = first_error or (lines[-1] if lines else f"exit status {done.returncode}")
        errors.append(f"{' '.join(flags)}: {reason.strip()}")
    names = ", ".join(path.name for path in PARTS)
    raise RuntimeError(f"{cxx} failed to compile {names} ({'; '.join(errors)})")


_declare = _ffi.declare  # sets every function's argtypes and restype


@functools.lru_cache(maxsize=1)
def _load() -> tuple[ctypes.CDLL | None, str | None]:
    if os.environ.get("RNNKIT_NATIVE", "1") == "0":
        return None, "disabled by RNNKIT_NATIVE=0"
    try:
        path = _build()
        lib = ctypes.CDLL(str(path))
        _ffi.declare(lib)
    except (RuntimeError, OSError, AttributeError) as error:
        return None, str(error)
    if lib.rnnkit_native_version() != _ABI:
        return None, f"{path} speaks version {lib.rnnkit_native_version()}, expected {_ABI}"
    for name, module in (("LSTM", lstm), ("Elman RNN", elman), ("GRU", gru)):
        wrong = module.self_check(lib)
        if wrong is not None:
            return None, f"the compiled {name} disagrees with the reference math ({wrong})"
    return lib, None


def library() -> ctypes.CDLL | None:
    """The loaded library, building it on first use; None where it is unavailable."""
    return _load()[0]


def problem() -> str | None:
    """Why the compiled library is unavailable, or None when it is available."""
    return _load()[1]


# Importing the package registers its three cells with rnnkit.functional.registry (the modules
# build nothing until a call reaches them); rnnkit.nn._backends is what imports it.
from rnnkit.native import elman, gru, lstm  # noqa: E402
