"""The ``lesion`` probe: delete blocks one at a time, and k at a time at random."""

from __future__ import annotations

from ..data import example_data
from ..lesion import lesion
from ..report import ProbeResult
from . import NO_BLOCKS, ProbeContext

__all__ = ["LesionProbe", "probe"]


class LesionProbe:
    """Per block: what deleting it (``y = s``, the branch switched off in the forward pass)
    changes: loss, output, and for classifiers KL, top-1 agreement and accuracy against
    targets, each with the number of samples it covers and a Wilson 95% interval for the
    proportions. Summary: the degradation curve when k random blocks are deleted, deletions of
    whole modules asked for in the settings (``lesion_modules``), and ``samples``."""

    name = "lesion"
    requires: tuple[str, ...] = ()
    install = ""

    def run(self, context: ProbeContext) -> ProbeResult:
        skipped = context.not_run(self.name)
        modules_only = bool(context.settings.lesion_modules) and context.measurable == NO_BLOCKS
        if skipped is not None and not modules_only:  # deleting whole modules needs no blocks
            return skipped
        s = context.settings
        data = context.data or example_data(context.inputs)
        got = lesion(context.model, context.graph, context.blocks, data, objective=context.objective,
                     draws=s.lesion_draws, modules=s.lesion_modules, train=s.train)
        summary = {"measured": len(got["blocks"]) + len(got["modules"]), "objective": got["objective"],
                   "loss": got["loss"], "curve": got["curve"], "modules": got["modules"],
                   "samples": got["samples"]}
        notes: tuple[str, ...] = ("deletions run as extra forward passes (several per pass, stacked along "
                                  "the batch); activations before the deleted block are not reused",)
        if got["rerouted"]:
            notes += (f"deleting {len(got['rerouted'])} block(s) sent the model down another path (control "
                      f"flow that depends on values), so they were not compared: "
                      f"{', '.join(got['rerouted'][:4])}{' …' if len(got['rerouted']) > 4 else ''}",)
        return ProbeResult(self.name, summary, got["blocks"], notes)


probe = LesionProbe()
