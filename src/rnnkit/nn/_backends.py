"""Which implementation of the time loop serves a call."""

from __future__ import annotations

from torch import Tensor


def _triton_problem(module, seq: Tensor) -> str | None:
    """Why the Triton backend cannot serve this call, or None if it can."""
    if seq.device.type != "cuda":
        return f"it runs on CUDA tensors only, got {seq.device.type}"
    try:
        import triton  # noqa: F401
    except ImportError:
        return "the triton package is not installed (pip install 'rnnkit[gpu]')"
    from rnnkit.kernels import supports

    return supports(module, seq)


def check_triton_can_serve(module, seq: Tensor) -> None:
    problem = _triton_problem(module, seq)
    if problem is not None:
        raise ValueError(f"backend='triton' cannot serve this call: {problem}")


def _native_problem(module, seq: Tensor) -> str | None:
    """Why the compiled CPU loop cannot serve this call, or None if it can."""
    if module.mode == "LSTM":
        from rnnkit.native.lstm import serves

        reason = serves(seq, module.proj_size)
    else:  # the Elman RNN and the GRU
        from rnnkit.native.elman import serves

        reason = serves(seq)
    if reason is not None:
        return reason
    from rnnkit.native import problem

    return problem()


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
    from rnnkit.kernels import auto_prefers

    return "triton" if auto_prefers(module, seq) else "reference"
