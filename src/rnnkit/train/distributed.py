"""Multi-process training under ``torchrun``: DistributedDataParallel, gloo on CPU, NCCL on CUDA.

The same command runs in one process (no ``WORLD_SIZE`` in the environment) or under
``torchrun --nproc-per-node N``; nothing is distributed by hand.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["Shard", "init_distributed", "finish_distributed", "all_agree", "all_mean"]


@dataclass(frozen=True)
class Shard:
    """This process's place: ``rank`` of ``world_size`` processes (0 of 1 when alone)."""

    rank: int = 0
    world_size: int = 1
    device: str = "cpu"  # where collective tensors live (CUDA for NCCL)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> Shard:
    """Join the process group torchrun set up (if any) and return this process's shard."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Shard()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return Shard(dist.get_rank(), dist.get_world_size(), str(device))


def finish_distributed(wait: bool = True) -> None:
    """Leave the process group cleanly before the process exits; ``wait`` for the other ranks
    first (not after an error, when they may never arrive).

    Without it, gloo's background threads can still be running when the interpreter shuts down,
    and a rank then dies with SIGABRT ("terminate called without an active exception") after
    training has finished (seen once in a full CI run of the 2-process test).
    """
    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def all_agree(flag: bool, shard: Shard) -> bool:
    """True on every rank if ``flag`` is true on any rank (so all ranks stop together)."""
    if shard.world_size == 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=shard.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def all_mean(values: list[float], shard: Shard) -> list[float]:
    """Element-wise mean of ``values`` over ranks."""
    if shard.world_size == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=shard.device)
    dist.all_reduce(tensor)
    return (tensor / shard.world_size).cpu().tolist()
