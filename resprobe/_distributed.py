"""torch.distributed, when a process group is running: this process's rank, the world size,
and one all-reduce of a flat tensor of sums."""

from __future__ import annotations

from torch import Tensor

__all__ = ["all_reduce_sum", "rank", "world_size"]


def _running() -> bool:
    import torch.distributed as dist

    return bool(dist.is_available() and dist.is_initialized())


def world_size() -> int:
    """How many processes take part (1 without a process group)."""
    if not _running():
        return 1
    import torch.distributed as dist

    return int(dist.get_world_size())


def rank() -> int:
    """This process's rank (0 without a process group)."""
    if not _running():
        return 0
    import torch.distributed as dist

    return int(dist.get_rank())


def all_reduce_sum(t: Tensor) -> None:
    """Sum ``t`` over every process, in place (nothing without a process group, or alone)."""
    if world_size() > 1:
        import torch.distributed as dist

        dist.all_reduce(t, op=dist.ReduceOp.SUM)
