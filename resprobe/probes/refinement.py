"""The ``refinement`` probe: each block as a refinement step, from one forward pass."""

from __future__ import annotations

from ..metrics import of_probe
from ..plugins import Option
from ..report import ProbeResult
from . import ProbeContext

__all__ = ["RefinementProbe", "probe"]

KEYS = of_probe("refinement")  # units, update_ratio, ... label: resprobe/metrics.py


class RefinementProbe:
    """Per block: update ratio ``‖b‖/‖s‖``, variance ratio, ``cos(b, s)``, block influence
    ``1 − cos(s, y)`` and a refine/rebuild label; per stream: angular distances between the
    states along it and block influence per layer (see docs/metrics.md)."""

    name = "refinement"
    requires: tuple[str, ...] = ()
    install = ""
    options = (  # defaults: resprobe.Settings (REFINE_INFLUENCE = 1 - cos 30 degrees)
        Option("--refine-ratio", float, 1.0, "A block refines when its update ratio is below this ...",
               show_default=True),
        Option("--refine-influence", float, 0.134,
               "... and its block influence 1 - cos(skip, output) is below this (default: a turn of "
               "30 degrees); else it rebuilds. Under 1% update ratio a block is idle.", show_default=True),
    )

    def run(self, context: ProbeContext) -> ProbeResult:
        skipped = context.not_run(self.name)
        if skipped is not None:
            return skipped
        m = context.measurement()
        blocks = {name: {k: v[k] for k in ("samples", *KEYS)} for name, v in m.blocks.items()}
        labels = [v["label"] for v in blocks.values()]
        s = context.settings
        summary = {
            "measured": sum(v["update_ratio"] is not None for v in blocks.values()),
            "refine": labels.count("refine"), "rebuild": labels.count("rebuild"),
            "idle": labels.count("idle"),
            "thresholds": {"update_ratio_below": s.refine_ratio, "block_influence_below": s.refine_influence,
                           "idle_below": s.idle_ratio},
            "objective": m.objective, "data": m.data, "dtype": s.dtype, "train": s.train,
            "streams": [{k: st[k] for k in ("id", "blocks", "states", "angular_distance", "layers")}
                        for st in m.streams],
        }
        return ProbeResult(self.name, summary, blocks, m.notes)


probe = RefinementProbe()
