"""Large scratch buffers kept from one call to the next on the CPU.

A layer's backward fills a ``(T, B, G)`` buffer with ∂L/∂(gate pre-activations): tens of
megabytes at language-model sizes, alive only inside that call. glibc serves blocks that large
with fresh ``mmap`` pages, so every call would pay a page fault and the kernel's zeroing for each
4 KB of it (docs/benchmarks.md). A buffer handed back with :func:`give` serves the next
:func:`take` that fits in it instead.

The same holds for what a layer's forward saves for its backward (the LSTM's gates and cells):
those are given back once the backward has used them, unless autograd keeps the graph for
another backward (:func:`graph_kept`), or right after the forward when no graph is recorded.

At most :data:`MAX_KEPT` buffers are kept (the smallest is dropped first): enough for the saved
buffers of a deep bidirectional stack, and bucketed batches of different sizes share them. Only
buffers that nothing outside rnnkit can still read may be given back. CUDA tensors are never
kept: PyTorch's caching allocator already reuses their memory.
"""

from __future__ import annotations

import threading

import torch
from torch import Tensor

__all__ = ["take", "give", "give_all", "records_graph", "graph_kept", "clear", "MAX_KEPT",
           "MIN_BYTES"]

MAX_KEPT = 16
MIN_BYTES = 1 << 20  # smaller blocks come from malloc's free lists without page faults anyway

_lock = threading.Lock()
_kept: list[Tensor] = []  # flat, contiguous, CPU


def take(shape: tuple[int, ...], like: Tensor, zero: bool = False) -> Tensor:
    """A contiguous tensor of ``shape`` with ``like``'s dtype and device (zero-filled if asked)."""
    numel = 1
    for size in shape:
        numel *= size
    found = None
    if like.device.type == "cpu" and numel * like.element_size() >= MIN_BYTES:
        with _lock:
            fits = [k for k, buf in enumerate(_kept)
                    if buf.dtype == like.dtype and numel <= buf.numel() <= 2 * numel]
            if fits:
                found = _kept.pop(min(fits, key=lambda k: _kept[k].numel()))
    if found is None:
        return (torch.zeros if zero else torch.empty)(shape, dtype=like.dtype, device=like.device)
    view = found[:numel].view(shape)
    return view.zero_() if zero else view


def give(t: Tensor) -> None:
    """Hand back a tensor from :func:`take` that nothing else refers to any more. One made
    under ``torch.inference_mode`` is not kept: a later call outside that mode could neither
    write into it nor save it for the backward."""
    flat = t if t._base is None else t._base
    if flat.device.type != "cpu" or not flat.is_contiguous() or flat.is_inference():
        return
    if flat.numel() * flat.element_size() < MIN_BYTES:
        return
    flat = flat.detach().view(-1)
    with _lock:
        if any(buf.data_ptr() == flat.data_ptr() for buf in _kept):
            return  # given twice: keep one entry, never hand it out to two callers
        _kept.append(flat)
        if len(_kept) > MAX_KEPT:  # drop the smallest (by index: == on tensors compares values)
            del _kept[min(range(len(_kept)), key=lambda k: _kept[k].numel())]


def give_all(*tensors: Tensor | None) -> None:
    """:func:`give` each tensor that is not None."""
    for t in tensors:
        if t is not None:
            give(t)


def records_graph(*inputs: Tensor | None) -> bool:
    """Whether autograd records a call on ``inputs``: then the layer saves its buffers for the
    backward; otherwise it may give them back as soon as its forward is done."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs)


def graph_kept() -> bool:
    """Inside a backward: whether autograd keeps the graph (``retain_graph`` or
    ``create_graph``), so that saved tensors may be read again. True when torch cannot say."""
    getter = getattr(torch._C._autograd, "_get_current_graph_task_keep_graph", None)
    if getter is None:
        return True
    try:
        return bool(getter())
    except RuntimeError:  # not inside a backward
        return True


def clear() -> None:
    """Drop every kept buffer."""
    with _lock:
        _kept.clear()
