"""torch.distributed, when a process group is running: this process's rank, the world size,
and one all-reduce of a flat tensor of sums."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from torch import Tensor

__all__ = ["add_up", "add_up_named", "agree", "all_reduce_sum", "launched", "largest", "parts", "rank",
           "same_everywhere", "share", "share_size", "spread", "union", "world_size"]

# Whether an analysis spreads its data over the processes (the command line under torchrun turns
# it on); a watch always adds up its ranks' numbers, as DDP averages their gradients.
_SPREAD: ContextVar[bool] = ContextVar("resprobe_spread", default=False)


@contextmanager
def spread(on: bool = True) -> Iterator[None]:
    """Analyses inside the ``with`` spread their batches over the processes of the running
    process group (each process its share; the sums added up)."""
    token = _SPREAD.set(on)
    try:
        yield
    finally:
        _SPREAD.reset(token)


def parts() -> int:
    """How many processes an analysis spreads its data over (1 unless ``spread`` is on)."""
    return world_size() if _SPREAD.get() else 1


def _part() -> int:
    return rank() if _SPREAD.get() else 0


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


def same_everywhere(value: Any, problem: str) -> None:
    """Raise ``AnalysisError(problem)`` on every process unless ``value`` (picklable) is the
    same on all of them: sums are added up only when they line up."""
    if parts() == 1:
        return
    import torch.distributed as dist

    from .errors import AnalysisError

    values: list[Any] = [None] * world_size()
    dist.all_gather_object(values, value)
    if any(v != values[0] for v in values):
        raise AnalysisError(problem)


@contextmanager
def launched(device: str = "auto") -> Iterator[None]:
    """A process group for this command when a launcher (torchrun) started several processes
    (``WORLD_SIZE`` > 1) and none is running yet: gloo on the CPU, nccl on CUDA; ended after."""
    if _running() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        yield
        return
    import torch
    import torch.distributed as dist

    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def share(batches: Iterable[Any], count: int) -> Iterator[Any]:
    """This process's batches of ``count``: every world-th, from its rank on (all of them
    without a process group). Refused in one line when there are fewer batches than processes."""
    world, me = parts(), _part()
    if world > 1 and count < world:
        from .errors import UsageError

        raise UsageError(f"{count} batch(es) for {world} processes: each process measures its share of the "
                         "batches; pass a smaller --batch-size or run fewer processes")
    for k, batch in enumerate(batches):
        if k % world == me:
            yield batch


def share_size(count: int) -> int:
    """How many of ``count`` batches are this process's."""
    return len(range(_part(), count, parts()))


def _home() -> Any:
    """Where a collective's tensor must be: the current GPU under nccl, else the CPU."""
    import torch
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def add_up(values: list[float]) -> list[float]:
    """Each value summed over the processes an analysis spreads over (the values themselves
    when it does not)."""
    if parts() == 1 or not values:
        return list(values)
    import torch

    t = torch.tensor(values, dtype=torch.float64, device=_home())
    all_reduce_sum(t)
    return [float(v) for v in t.cpu()]


def add_up_named(values: dict[Any, float], problem: str) -> dict[Any, float]:
    """Each named value summed over the processes an analysis spreads over (one all-reduce, in
    the order of the names), after checking that every process has the same names:
    ``AnalysisError(problem)`` otherwise. The values themselves when the analysis is not spread."""
    if parts() == 1:
        return dict(values)
    names = sorted(values, key=repr)
    same_everywhere([repr(n) for n in names], problem)
    return dict(zip(names, add_up([float(values[n]) for n in names])))


def agree(ready: bool, layout: str) -> bool:
    """Whether every process is ``ready`` with the same ``layout`` (one small all-reduce; every
    process must call it)."""
    if world_size() == 1:
        return ready
    import zlib

    import torch
    import torch.distributed as dist

    h = float(zlib.crc32(layout.encode()))
    t = torch.tensor([0.0 if ready else 1.0, h, -h], dtype=torch.float64, device=_home())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t[0].item() == 0 and t[1].item() == -t[2].item())


def largest(values: list[float]) -> list[float]:
    """Each value's maximum over the processes an analysis spreads over."""
    if parts() == 1 or not values:
        return list(values)
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=_home())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [float(v) for v in t.cpu()]


def union(items: set[Any]) -> set[Any]:
    """The union of a set over the processes an analysis spreads over."""
    if parts() == 1:
        return set(items)
    import torch.distributed as dist

    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, sorted(items))
    return {x for part in gathered for x in part}
