"""Fused Triton kernels for the sequential part of each cell: the ``"triton"`` backend.

One persistent kernel runs a layer-direction's whole time loop (forward) or its whole BPTT loop
(backward); the input projection before it and the weight gradients after it stay single matrix
products in :mod:`rnnkit.functional`. Design and limits: ``docs/kernels.md``. Importing this
package registers the three cells with :mod:`rnnkit.functional.registry`; :mod:`rnnkit.nn._backends`
imports it when a call may run on ``triton``.

Under ``TRITON_INTERPRET=1`` the same kernels run on CPU tensors (one launch per step).
"""

from __future__ import annotations

import torch

from rnnkit.functional.cells import CELLS
from rnnkit.functional.registry import register
from rnnkit.kernels import elman, gru, lstm
from rnnkit.kernels._auto import auto_prefers, compute_dtype
from rnnkit.kernels._plan import MAX_HIDDEN, SHARED_LIMIT, overrides, shared_estimate

__all__ = ["supports", "auto_prefers", "overrides", "MAX_HIDDEN"]

DTYPES = (torch.float32, torch.bfloat16, torch.float16)

register("elman", "triton", elman.forward_recurrence, elman.backward_recurrence)
register("lstm", "triton", lstm.forward_recurrence, lstm.backward_recurrence)
register("gru", "triton", gru.forward_recurrence, gru.backward_recurrence)


def supports(module, seq: torch.Tensor) -> str | None:
    """None if the kernels can serve ``module`` on time-major ``seq`` ``(T, B, I)``, else why."""
    if module.mode not in CELLS:
        return f"no kernel for mode {module.mode!r}"
    if getattr(module, "proj_size", 0):
        return "proj_size > 0 (LSTM projection) is not supported; use backend='reference'"
    if module.hidden_size > MAX_HIDDEN:
        return f"hidden_size {module.hidden_size} is over the kernels' limit of {MAX_HIDDEN}"
    dtype = compute_dtype(module)
    if dtype not in DTYPES or seq.dtype not in DTYPES:
        return f"dtype {dtype} is not supported (float32, bfloat16 or float16)"
    if seq.device.type == "cuda" and torch.cuda.get_device_capability(seq.device) < (8, 0):
        return "it needs a GPU of compute capability 8.0 or newer"
    gates = CELLS[module.mode].blocks
    if shared_estimate(module.hidden_size, gates, dtype) > SHARED_LIMIT:
        # e.g. float32 LSTM/GRU at H = 1024; a K-chunked variant streaming W_hh would lift this
        return (
            f"hidden_size {module.hidden_size} in {dtype} needs more shared memory than one "
            "program has (W_hh would have to be streamed in K chunks, not written yet)"
        )
    steps, batch = seq.shape[0], seq.shape[1]
    if steps * batch * gates * module.hidden_size >= 2**31:
        return "T·B·gates·H must stay under 2**31 (32-bit offsets in the kernels)"
    return None
