"""The FFI table (``rnnkit/native/_ffi.py``) names every C entry point's parameters as the C++
source does, so that calls by name put each argument where the C++ side reads it."""

from __future__ import annotations

import re

import pytest
import torch

from rnnkit import native
from rnnkit.native import _ffi

_DEFINITION = re.compile(r"^int (rnnkit_\w+)_f32\(([^)]*)\)", re.MULTILINE)
_KINDS = {"int64_t": "i64", "int": "int"}


def _c_signatures() -> dict[str, tuple[tuple[str, str], ...]]:
    found = {}
    for path in native.PARTS:
        for name, params in _DEFINITION.findall(path.read_text()):
            parsed = []
            for param in params.split(","):
                words = param.replace("*", " * ").split()
                kind = "ptr" if "*" in words else _KINDS[words[-2]]
                parsed.append((words[-1], kind))
            found[name] = tuple(parsed)
    return found


def test_table_matches_the_cpp_signatures():
    assert _c_signatures() == _ffi.PARAMETERS


def test_call_refuses_wrong_argument_names():
    with pytest.raises(TypeError, match="missing \\['xp'\\], unexpected \\['x'\\]"):
        _ffi.call(None, "rnnkit_lstm_forward", torch.float32, x=None, h0=None, c0=None,
                  w_hh=None, batch_sizes=None, hidden=None, cells=None, steps=0, batch=0,
                  hidden_size=0, threads=1)
