"""How a recurrence is laid out over programs, and the host side of a launch.

The block sizes below are first guesses sized from the on-chip budgets of an H100/H200; no GPU
has measured them yet (docs/kernels.md lists what a GPU session should sweep).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator

import torch
import triton

MAX_HIDDEN = 1024  # the full state (BB, H) of a batch tile is one dot operand
WEIGHT_BUDGET = 64 * 1024  # bytes of W_hh one program keeps on chip for the whole run
STATE_BUDGET = 32 * 1024  # bytes of the float32 (BB, H) state block read every step
MIN_DOT = 16  # smallest tl.dot dimension on the GPU
SHARED_LIMIT = 200 * 1024  # of the 227 KB a Hopper program may use, with room for scratch

_OVERRIDES: dict[str, object] = {}


@dataclasses.dataclass(frozen=True)
class Plan:
    """One launch layout. Axes: B batch, H hidden units, K = H (the recurrent input)."""

    block_b: int  # BB: batch rows per tile
    block_h: int  # BH: hidden units per program (of every gate)
    block_k: int  # BK: power of two ≥ K
    programs_h: int  # P: programs sharing one batch tile (grid barrier when > 1)
    programs_b: int  # PB: programs along the batch; each walks tiles q, q+PB, …
    resident: bool  # W_hh slice loaded once and kept on chip, else re-read from L2 each step
    per_step: bool  # one launch per step (no grid barrier); always so under the interpreter
    num_warps: int
    precision: str  # tl.dot input_precision for float32 weights: "tf32x3", "tf32" or "ieee"

    @property
    def grid(self) -> tuple[int, int]:
        return (self.programs_h, self.programs_b)

    @property
    def sync(self) -> bool:
        return self.programs_h > 1 and not self.per_step


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


@contextlib.contextmanager
def overrides(**fields) -> Iterator[None]:
    """Force Plan fields (tests and benchmark sweeps), e.g. ``overrides(block_h=8)``."""
    unknown = set(fields) - {f.name for f in dataclasses.fields(Plan)}
    if unknown:
        raise TypeError(f"overrides: unknown Plan fields {sorted(unknown)}")
    saved = dict(_OVERRIDES)
    _OVERRIDES.update(fields)
    try:
        yield
    finally:
        _OVERRIDES.clear()
        _OVERRIDES.update(saved)


def shared_estimate(units: int, gates: int, dtype: torch.dtype) -> int:
    """Bytes of shared memory the smallest split needs: Triton stages the (BK, 16) W_hh slice
    of every gate and the (16, BK) state block there (seen in the sm_90 compile reports)."""
    block_k = max(MIN_DOT, triton.next_power_of_2(units))
    elt = torch.empty((), dtype=dtype).element_size()
    return gates * block_k * MIN_DOT * elt + MIN_DOT * block_k * 4


def _processors(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 4  # the interpreter runs programs one after another; any count works


def _precision(dtype: torch.dtype) -> str:
    """tl.dot ``input_precision``: TF32 only where torch allows it for float32 products.

    Float32 without TF32 uses three TF32 products (tensor cores, ~float32 accuracy); plain
    "ieee" (FMA) crashed Triton 3.9's LLVM on the four-gate LSTM kernel for sm_90.
    """
    if dtype != torch.float32:
        return "emulate" if interpreting() else "ieee"
    return "tf32" if torch.backends.cuda.matmul.allow_tf32 else "tf32x3"


def make_plan(batch: int, units: int, gates: int, weight: torch.Tensor) -> Plan:
    """Layout for ``batch`` rows, ``units`` hidden units, ``gates`` gates, recurrent weight
    ``weight`` ``(gates·H, H)``: one program per batch tile when its whole W_hh fits the
    budget, else the units split over ``P`` programs with a grid barrier per step."""
    elt = weight.element_size()
    block_k = max(MIN_DOT, triton.next_power_of_2(weight.shape[1]))
    whole = max(MIN_DOT, triton.next_power_of_2(units))
    block_h = whole
    while block_h > MIN_DOT and gates * block_k * block_h * elt > WEIGHT_BUDGET:
        block_h //= 2
    block_h = int(_OVERRIDES.get("block_h", block_h))
    resident = gates * block_k * block_h * elt <= WEIGHT_BUDGET
    rows_fit = max(MIN_DOT, STATE_BUDGET // (4 * block_k))
    block_b = min(max(MIN_DOT, triton.next_power_of_2(batch)), triton.next_power_of_2(rows_fit))
    block_b = int(_OVERRIDES.get("block_b", block_b))
    programs_h = triton.cdiv(units, block_h)
    tiles = triton.cdiv(batch, block_b)
    programs_b = max(1, min(tiles, _processors(weight.device) // programs_h))
    plan = Plan(
        block_b=block_b,
        block_h=block_h,
        block_k=block_k,
        programs_h=programs_h,
        programs_b=programs_b,
        resident=resident,
        per_step=interpreting() or programs_h > _processors(weight.device),
        num_warps=4 if block_b * block_k <= 16 * 256 else 8,
        precision=_precision(weight.dtype),
    )
    rest = {k: v for k, v in _OVERRIDES.items() if k not in ("block_h", "block_b")}
    return dataclasses.replace(plan, **rest)


def _meta(plan: Plan) -> dict:
    return dict(
        BB=plan.block_b,
        BH=plan.block_h,
        BK=plan.block_k,
        RESIDENT=plan.resident,
        SYNC=plan.sync,
        PREC=plan.precision,
        num_warps=plan.num_warps,
    )


def _counter(plan: Plan, batch: int, device: torch.device) -> torch.Tensor:
    return torch.zeros(triton.cdiv(batch, plan.block_b), dtype=torch.int32, device=device)


def launch_forward(kernel, plan: Plan, args: tuple, steps: int, batch: int, **consts) -> None:
    """Run steps 0 … T−1: one persistent launch, or one launch per step."""
    device = args[0].device
    counter = _counter(plan, batch, device)
    meta = _meta(plan)
    if not plan.per_step:
        kernel[plan.grid](*args, counter=counter, t_start=0, t_stop=steps, **consts, **meta)
        return
    for t in range(steps):
        kernel[plan.grid](*args, counter=counter, t_start=t, t_stop=t + 1, **consts, **meta)


def launch_backward(kernel, plan: Plan, args: tuple, steps: int, batch: int, **consts) -> None:
    """Run steps T−1 … 0 and then the gradient of the initial state (``finalize``)."""
    device = args[0].device
    counter = _counter(plan, batch, device)
    meta = _meta(plan)
    if not plan.per_step:
        kernel[plan.grid](
            *args, counter=counter, t_hi=steps - 1, t_lo=0, finalize=1, **consts, **meta
        )
        return
    for t in reversed(range(steps)):
        kernel[plan.grid](*args, counter=counter, t_hi=t, t_lo=t, finalize=0, **consts, **meta)
    kernel[plan.grid](*args, counter=counter, t_hi=-1, t_lo=0, finalize=1, **consts, **meta)


def exchange(rows: int, width: int, like: torch.Tensor, init: torch.Tensor | None = None):
    """Float32 ping-pong buffer ``(2, rows, width)``; both slots start as ``init`` (or zero)."""
    buf = torch.zeros((2, rows, width), dtype=torch.float32, device=like.device)
    if init is not None:
        buf[:] = init.to(torch.float32)
    return buf


def output(like: torch.Tensor, shape: tuple[int, ...], ragged: bool) -> torch.Tensor:
    """Per-step result in the inputs' dtype; zero-filled when rows stop early (never written)."""
    make = torch.zeros if ragged else torch.empty
    return make(shape, dtype=like.dtype, device=like.device)
