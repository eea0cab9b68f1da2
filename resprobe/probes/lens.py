"""The ``lens`` probe: decode the residual stream after each block with the model's own tail
(the logit lens), and with ``--lens tuned`` through one fitted affine translator per block too
(the tuned lens)."""

from __future__ import annotations

from typing import Any

from click import Choice, IntRange

from ..plugins import Option
from ..report import ProbeResult
from . import ProbeContext

__all__ = ["DEFAULT_STEPS", "LensProbe", "probe"]

DEFAULT_STEPS = 200  # resprobe.tuned_lens.DEFAULT_STEPS (not imported: declaring options imports no torch)


class LensProbe:
    """Per block: how far the prediction read from the stream right after the block (the model's
    own final norm and head applied to it) is from the final prediction: KL, top-1 agreement,
    entropy and loss; with ``--lens tuned``, also the KL and top-1 agreement read through the
    block's fitted translator (the tuned lens). Per stream: the first step that agrees with the
    final top-1 on 90% of units, and each block's share of the final top-1's log-probability
    (docs/lens.md)."""

    name = "lens"
    requires: tuple[str, ...] = ()
    install = ""
    options = (
        Option("--lens", Choice(["logit", "tuned"]), "logit", "lens: logit reads each block's state with the "
               "model's own tail; tuned also fits one affine translator per block (identity at first) to "
               "the final prediction on the data and reports tuned_kl_to_final (Belrose et al. 2023).",
               show_default=True),
        Option("--lens-steps", IntRange(min=1), DEFAULT_STEPS, "lens: optimiser steps fitting the tuned "
               "lens's translators (one batch each).", metavar="N", show_default=True),
        Option("--lens-translators", str, None, "lens: the tuned lens's translators file: read instead of "
               "fitting when it holds translators for this model and its blocks, else written after "
               "fitting.", metavar="PATH"),
    )

    def run(self, context: ProbeContext) -> ProbeResult:
        from ..data import example_data
        from ..lens import lens
        from ..tuned_lens import tuned_lens

        skipped = context.not_run(self.name)
        if skipped is not None:
            return skipped
        context = context.resolved()  # the objective chosen once for every probe
        data = context.data or example_data(context.inputs)
        options = context.settings.options
        kind = options.get("lens") or "logit"
        path = options.get("lens_translators") or None
        notes: tuple[str, ...] = ()
        if kind == "tuned":
            steps = int(options.get("lens_steps") or DEFAULT_STEPS)
            got = tuned_lens(context.model, context.graph, context.blocks, data, objective=context.objective,
                             train=context.settings.train, steps=steps, translators=path,
                             progress=context.progress)
            notes = tuple(got["notes"])
        else:
            got = lens(context.model, context.graph, context.blocks, data, objective=context.objective,
                       train=context.settings.train, progress=context.progress)
            if path:
                notes = (f"lens: --lens-translators {path} is read and written by the tuned lens only "
                         "(--lens tuned); ignored",)
        measured = {k: v for k, v in got["blocks"].items() if "not_measured" not in v}
        summary: dict[str, Any] = {"measured": len(measured), "objective": got["objective"],
                                   "samples": got["samples"], "streams": got["streams"]}
        if "tuned" in got:
            summary["tuned"] = got["tuned"]
        return ProbeResult(self.name, summary, got["blocks"], _notes(got) + notes)


def _notes(got: dict[str, object]) -> tuple[str, ...]:
    """Why streams or blocks have no lens, once per reason."""
    blocks = got["blocks"]
    assert isinstance(blocks, dict)
    reasons: dict[str, list[str]] = {}
    for name, v in blocks.items():
        if "not_measured" in v:
            reasons.setdefault(str(v["not_measured"]), []).append(name)
    return tuple(f"lens: {len(names)} block(s) not decoded ({', '.join(names[:3])}"
                 f"{' …' if len(names) > 3 else ''}): {why}" for why, names in reasons.items())


probe = LensProbe()
