"""One watched step's numbers: the passes' sums merged (and added up over processes), per block
as in a measurement, the parameter gradients as the optimizer sees them, and per stream the
effective-depth estimate."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any, Protocol

import torch
from torch import Tensor

from . import _distributed
from ._held import ModuleTree
from ._plan import Plan
from ._stats import BACKWARD, Sums, block_numbers
from .depth import estimate, summary
from .measure import Settings
from .runlog import RunStep, RunStream

__all__ = ["StepNumbers"]
_SAMPLES = ("watch", "samples")


class _Summed(Protocol):
    sums: Sums
    samples: int


class StepNumbers:
    """Turns the passes of one measured step into a ``RunStep``."""

    def __init__(self, plan: Plan, tree: ModuleTree, settings: Settings, world: int):
        self.plan, self.tree, self.settings, self.world = plan, tree, settings, world

    def record(self, passes: Sequence[_Summed], step: int, started: float, scale: float,
               notes: tuple[str, ...], weights: dict[str, Tensor] | None = None) -> RunStep:
        """``scale`` multiplies the gradient magnitudes (1/processes under DDP, 1/loss scale);
        ``weights``: per block the norm of its parameters when the step's forward ran (from
        ``weight_norms``; read now otherwise)."""
        sums = Sums()
        for p in passes:
            sums.merge(p.sums)
        zero = torch.zeros(1, dtype=torch.float64, device=self._device())
        sums.add_sums(_SAMPLES, zero, zero, zero + sum(p.samples for p in passes))
        reduce = _distributed.all_reduce_sum if self.world > 1 else None
        host = sums.host(reduce=reduce)
        samples = round(float(host[_SAMPLES][2].reshape(-1)[0]))
        norms = self._param_norms(weights if weights is not None else self.weight_norms())
        for key in [k for k in host if k[1] == BACKWARD]:  # grad_norm and lesion_first_order
            sums_, squares, counts = host[key]
            host[key] = (sums_ * scale, squares * scale**2, counts)
        blocks = {name: block_numbers(name, host, norms.get(name), self.settings, samples)
                  for name in self.plan.names}
        now = time.time()
        return RunStep(step=step, time=round(now, 3), elapsed=round(now - started, 3), samples=samples,
                       micro_batches=len(passes) * self.world, blocks=blocks, streams=self._streams(blocks),
                       notes=notes)

    def _device(self) -> torch.device:
        return next((p.device for p in self.tree.params.values()), torch.device("cpu"))

    def weight_norms(self) -> dict[str, Tensor]:
        """Per block, the norm of its parameters that take gradients (on the device: nothing is
        read back)."""
        out = {}
        for block, params in self.plan.params.items():
            got = [p for p in (self.tree.params.get(n) for n in params) if p is not None and p.requires_grad]
            if got:
                out[block] = _norms(got)
        return out

    def _param_norms(self, weights: dict[str, Tensor]) -> dict[str, tuple[float, float]]:
        """Per block, the norm of its parameters' ``.grad`` (as they stand: what the optimizer
        uses) and ``weights``' norm."""
        names, values = [], []
        for block, params in self.plan.params.items():
            grads = [p.grad for p in (self.tree.params.get(n) for n in params)
                     if p is not None and p.grad is not None]
            if grads and block in weights:
                names.append(block)
                values.append(torch.stack([_norms(grads), weights[block].to(grads[0].device)]))
        if not values:
            return {}
        device = values[0].device
        flat = torch.stack([v.to(device) for v in values]).double().cpu().tolist()
        return {n: (g, w) for n, (g, w) in zip(names, flat)}

    def _streams(self, blocks: dict[str, dict[str, Any]]) -> tuple[RunStream, ...]:
        out = []
        for sid, idx in zip(self.plan.stream_ids, self.plan.streams):
            chain = [blocks[self.plan.names[k]] for k in idx]
            a, g = [b["skip_gain"] for b in chain], [b["branch_gain"] for b in chain]
            depth, window = None, None
            if all(isinstance(v, float) and math.isfinite(v) for v in a + g):
                s = summary(estimate(a, g, "magnitude"))
                depth, window = s["mean"], None if s["window"] is None else tuple(s["window"])
            out.append(RunStream(sid, len(idx), depth, window))
        return tuple(out)


def _norms(tensors: Sequence[Tensor]) -> Tensor:
    """The norm of several tensors taken together, in fp32."""
    norm = torch.linalg.vector_norm
    out: Tensor = norm(torch.stack([norm(t.detach().float()) for t in tensors]))
    return out
