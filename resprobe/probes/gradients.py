"""The ``gradients`` probe: gradient flow along each residual stream, from one forward and
one backward pass."""

from __future__ import annotations

from ..metrics import of_probe
from ..report import ProbeResult
from . import ProbeContext

__all__ = ["GradientsProbe", "probe"]

KEYS = of_probe("gradients")  # grad_norm, skip_gain, ...: resprobe/metrics.py


class GradientsProbe:
    """Per block: ``‖∂L/∂y‖`` at the join, skip and branch gains, the iterative-inference
    cosine ``cos(b, ∂L/∂x)``, the first-order lesion estimate ``−b·∂L/∂y``, and the branch's
    parameter-gradient norm and grad/weight ratio (see docs/metrics.md)."""

    name = "gradients"
    requires: tuple[str, ...] = ()
    install = ""

    def run(self, context: ProbeContext) -> ProbeResult:
        skipped = context.not_run(self.name)
        if skipped is not None:
            return skipped
        m = context.measurement()
        silent = context.no_gradient()
        if silent is not None:
            return ProbeResult(self.name, {"measured": 0, "objective": m.objective, "data": m.data}, {},
                               (f"not measured: {silent}", *m.notes))
        blocks = {name: {k: v[k] for k in ("samples", *KEYS)} for name, v in m.blocks.items()}
        summary = {
            "measured": sum(v["grad_norm"] is not None for v in blocks.values()),
            "objective": m.objective, "data": m.data,
            "streams": [{"id": st["id"], "grad_norm": [blocks[n]["grad_norm"] for n in st["blocks"]]}
                        for st in m.streams],
        }
        return ProbeResult(self.name, summary, blocks, m.notes)


probe = GradientsProbe()
