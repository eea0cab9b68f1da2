"""The ``lesion`` probe: delete blocks one at a time, and k at a time at random."""

from __future__ import annotations

from click import IntRange

from ..plugins import Option
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
    options = (
        Option("--lesion-draws", IntRange(min=1), 3, "lesion: random sets of k deleted blocks per k on "
               "the degradation curve.", show_default=True),
        Option("--lesion-module", str, (), "lesion: also delete this module (its output replaced by its "
               "input); repeatable. Works on networks without skips too.", metavar="NAME", multiple=True,
               dest="lesion_modules"),
    )

    def run(self, context: ProbeContext) -> ProbeResult:
        from ..data import example_data
        from ..lesion import lesion

        skipped = context.not_run(self.name)
        modules_only = bool(context.settings.lesion_modules) and context.measurable == NO_BLOCKS
        if skipped is not None and not modules_only:  # deleting whole modules needs no blocks
            return skipped
        context = context.resolved()  # the objective chosen once for every probe
        s = context.settings
        data = context.data or example_data(context.inputs)
        got = lesion(context.model, context.graph, context.blocks, data, objective=context.objective,
                     draws=s.lesion_draws, modules=s.lesion_modules, train=s.train, progress=context.progress)
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
