"""Which implementation of the time loop serves a call, and where the backends come from.

This is the one place that knows the backend packages: :data:`PROVIDERS` maps a backend name to
the package whose import registers its cells with :mod:`rnnkit.functional.registry`. The
``reference`` loops live in :mod:`rnnkit.functional` itself and need no import.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from torch import Tensor

from rnnkit.functional.cells import spec

__all__ = ["PROVIDERS", "provider", "resolve", "choose_auto"]

PROVIDERS = {
    "native": "rnnkit.native",  # compiled CPU loops (C++ built on first use)
    "triton": "rnnkit.kernels",  # fused GPU kernels; imports triton
}


def provider(backend: str) -> ModuleType:
    """The package of ``backend``, imported (which registers its cells)."""
    return importlib.import_module(PROVIDERS[backend])


def _triton_problem(module, seq: Tensor) -> str | None:
    """Why the Triton backend cannot serve this call, or None if it can."""
    if seq.device.type != "cuda":
        return f"it runs on CUDA tensors only, got {seq.device.type}"
    try:
        import triton  # noqa: F401
    except ImportError:
        return "the triton package is not installed (pip install 'rnnkit[gpu]')"
    return provider("triton").supports(module, seq)


def check_triton_can_serve(module, seq: Tensor) -> None:
    problem = _triton_problem(module, seq)
    if problem is not None:
        raise ValueError(f"backend='triton' cannot serve this call: {problem}")


def _native_problem(module, seq: Tensor) -> str | None:
    """Why the compiled CPU loop cannot serve this call, or None if it can."""
    native = provider("native")
    if spec(module.mode).cell == "lstm":
        reason = native.lstm.serves(seq, module.proj_size)
    else:  # the Elman RNN and the GRU
        reason = native.elman.serves(seq)
    if reason is not None:
        return reason
    return native.problem()


def check_native_can_serve(module, seq: Tensor) -> None:
    problem = _native_problem(module, seq)
    if problem is not None:
        raise ValueError(f"backend='native' cannot serve this call: {problem}")


def choose_auto(module, seq: Tensor) -> str:
    """The fastest correct implementation for this device, shape and dtype.

    On the CPU: the compiled loop where it serves (see :mod:`rnnkit.native`), else
    the reference loops. On CUDA: the Triton kernels where they serve and are faster.
    """
    if seq.device.type != "cuda":
        return "reference" if _native_problem(module, seq) is not None else "native"
    if _triton_problem(module, seq) is not None:
        return "reference"
    return "triton" if provider("triton").auto_prefers(module, seq) else "reference"


def resolve(module, seq: Tensor) -> str:
    """The backend that serves ``module`` (its ``backend`` attribute) on time-major ``seq``;
    an explicit backend that cannot serve the call raises ``ValueError`` saying why."""
    if module.backend == "reference":
        return "reference"
    if module.backend == "native":
        check_native_can_serve(module, seq)
        return "native"
    if module.backend == "triton":
        check_triton_can_serve(module, seq)
        return "triton"
    return choose_auto(module, seq)
