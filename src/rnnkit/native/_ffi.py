"""The C interface of the compiled library, named in one place.

Each entry is one exported function, which exists as ``NAME_f32`` and ``NAME_f64`` and returns
an ``int`` status (0, or 1 when the C++ side could not allocate its buffers); its parameters are
listed with the names and in the order of the C++ signature (``lstm.cpp``, ``gru.cpp``,
``elman.cpp``, ``weight_grads.cpp``), as ``name`` (a pointer: a tensor, or None for a null
pointer), ``name:i64`` or ``name:int``. :func:`call` takes the arguments by name and puts them
in that order, so a caller never depends on positions.
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor

__all__ = ["SIGNATURES", "SUFFIX", "declare", "call"]

SUFFIX = {torch.float32: "f32", torch.float64: "f64"}

SIGNATURES = {
    "rnnkit_lstm_forward": "xp h0 c0 w_hh batch_sizes hidden cells "
    "steps:i64 batch:i64 hidden_size:i64 threads:int",
    "rnnkit_lstm_backward": "gates cells c0 w_hh dout dh_n dc_n batch_sizes dpre dh0 dc0 "
    "steps:i64 batch:i64 hidden_size:i64 threads:int",
    "rnnkit_elman_forward": "xp h0 w_hh batch_sizes hidden "
    "steps:i64 batch:i64 hidden_size:i64 relu:int threads:int",
    "rnnkit_elman_backward": "hidden w_hh dout dh_n batch_sizes dpre dh0 "
    "steps:i64 batch:i64 hidden_size:i64 relu:int threads:int",
    "rnnkit_gru_forward": "xp h0 w_hh b_hn batch_sizes hn_lin hidden "
    "steps:i64 batch:i64 hidden_size:i64 threads:int",
    "rnnkit_gru_backward": "gates hn_lin hidden h0 w_hh dout dh_n batch_sizes dn_pre dhh dh0 "
    "steps:i64 batch:i64 hidden_size:i64 threads:int",
    "rnnkit_weight_grads": "dpre k:i64 g:i64 x i:i64 h0 hidden b:i64 p:i64 dw_ih dw_hh db "
    "threads:int",
}
_TYPES = {"ptr": ctypes.c_void_p, "i64": ctypes.c_int64, "int": ctypes.c_int}


def _parameters(spec: str) -> tuple[tuple[str, str], ...]:
    """``"xp steps:i64"`` → ``(("xp", "ptr"), ("steps", "i64"))``."""
    return tuple(tuple((word + ":ptr").split(":")[:2]) for word in spec.split())


PARAMETERS = {name: _parameters(spec) for name, spec in SIGNATURES.items()}


def declare(lib: ctypes.CDLL) -> None:
    """Set argtypes and restype of every function in :data:`SIGNATURES` (AttributeError if the
    library lacks one)."""
    for name, parameters in PARAMETERS.items():
        for suffix in SUFFIX.values():
            function = getattr(lib, f"{name}_{suffix}")
            function.argtypes = [_TYPES[kind] for _, kind in parameters]
            function.restype = ctypes.c_int
    lib.rnnkit_native_version.argtypes = []
    lib.rnnkit_native_version.restype = ctypes.c_int


def call(lib: ctypes.CDLL, name: str, dtype: torch.dtype, **arguments) -> int:
    """Call ``name`` in ``dtype``'s variant with ``arguments`` by parameter name; tensors go as
    their data pointers. Returns the status."""
    parameters = PARAMETERS[name]
    names = {parameter for parameter, _ in parameters}
    if set(arguments) != names:
        missing, extra = sorted(names - set(arguments)), sorted(set(arguments) - names)
        raise TypeError(f"{name}: missing {missing}, unexpected {extra} (internal error)")
    values = [arguments[parameter] for parameter, _ in parameters]
    values = [v.data_ptr() if isinstance(v, Tensor) else v for v in values]
    return getattr(lib, f"{name}_{SUFFIX[dtype]}")(*values)
