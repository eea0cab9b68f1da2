"""The ``depth`` probe: effective depth per residual stream (Veit et al. 2016)."""

from __future__ import annotations

from typing import Any

from click import IntRange

from ..plugins import Option
from ..report import ProbeResult
from . import ProbeContext

__all__ = ["TRUSTED_TV", "DepthProbe", "probe"]

TRUSTED_TV = 0.05  # --validate: the estimate is trusted when within this distance of the exact profile


class DepthProbe:
    """Per stream: nominal depth, the path counts, the path-length profile estimated from the
    measured gains (free), and with settings, the exact profile (``exact``), Veit's sampler
    (``sample``) and their distance to the estimate (``validate``)."""

    name = "depth"
    requires: tuple[str, ...] = ()
    install = ""
    options = (
        Option("--exact", bool, False, "depth: also compute the exact path-length profile (about n/2 "
               "backward passes per batch)."),
        Option("--max-length", IntRange(min=1), None, "depth: keep only path lengths <= K in the exact "
               "profile (exact for those kept).", metavar="K"),
        Option("--sample", IntRange(min=0), 0, "depth: Veit's sampler, N path patterns per length over "
               "all the data (one backward pass per pattern and batch).", metavar="N"),
        Option("--validate", bool, False, "depth: compute the exact profile and report its distance to "
               "the estimate."),
    )

    def run(self, context: ProbeContext) -> ProbeResult:
        from ..depth import (
            estimate,
            exact_profile,
            parametric_depth,
            path_counts,
            sample_profile,
            stream_blocks,
            summary,
            total_variation,
        )

        skipped = context.not_run(self.name)
        if skipped is not None:
            return skipped
        m = context.measurement()
        silent = context.no_gradient()
        if silent is not None:
            return context.not_run(self.name, silent) or ProbeResult(self.name, {"measured": 0})
        s = context.settings
        context = context.resolved()  # the objective the measurement chose, for the passes below
        chains = stream_blocks(context.blocks)
        notes: list[str] = []
        exact = sampled = None
        data = context.data or _data(context)
        if s.exact or s.validate:
            exact = exact_profile(context.model, context.graph, context.blocks, data,
                                  objective=context.objective, max_length=s.max_length, train=s.train,
                                  progress=context.progress)
        if s.sample:  # every batch, as the estimate and the exact profile
            sampled = sample_profile(context.model, context.graph, context.blocks, data,
                                     objective=context.objective, samples=s.sample, train=s.train,
                                     progress=context.progress)
        streams = []
        for sid, chain in chains.items():
            gains = [(m.blocks[b.name]["skip_gain"], m.blocks[b.name]["branch_gain"]) for b in chain]
            entry: dict[str, Any] = {"id": sid, "blocks": [b.name for b in chain], "nominal": len(chain),
                                     "log10_paths": [round(v, 6) for v in path_counts(len(chain))]}
            if all(a is not None and g is not None for a, g in gains):
                a, g = [x for x, _ in gains], [y for _, y in gains]
                for kind in ("magnitude", "net"):
                    profile = estimate(a, g, kind)
                    rounded = [round(v, 8) for v in profile]
                    entry[f"estimate_{kind}"] = {"profile": rounded, **summary(profile)}
                entry["effective_depth"] = entry["estimate_magnitude"]["mean"]
                entry["effective_ratio"] = round(entry["effective_depth"] / len(chain), 6)
            else:
                notes.append(f"stream {sid}: some gains were not measured, so there is no estimate")
            if exact is not None:
                entry["exact"] = exact[sid]
                if exact[sid].get("truncated_at") is not None:
                    notes.append(f"stream {sid}: exact profile cut at length {exact[sid]['lengths']}; its "
                                 "mean and window are over the lengths kept only")
            if sampled is not None:
                entry["sampled"] = sampled[sid]
            if s.validate and "estimate_net" in entry and exact is not None:
                kept = exact[sid]["lengths"] + 1  # a cut profile is compared on the lengths it kept
                tv = total_variation(entry["estimate_net"]["profile"][:kept], exact[sid]["norms"])
                entry["validation"] = {"tv_estimate_vs_exact": round(tv, 6), "trusted": tv <= TRUSTED_TV}
                if sampled is not None:
                    magnitudes = [10 ** t if t is not None else 0.0 for t in sampled[sid]["log10_total"]]
                    entry["validation"]["tv_magnitude_vs_sampled"] = round(
                        total_variation(entry["estimate_magnitude"]["profile"], magnitudes), 6)
                if tv > TRUSTED_TV:
                    notes.append(f"stream {sid}: the estimate is {tv:.3f} (total variation) from the exact "
                                 f"profile, more than {TRUSTED_TV}: do not trust it here (the gradients of "
                                 "paths of one length are not independent, e.g. low-rank branches)")
            streams.append(entry)
        summary_ = {"measured": len(streams), "parametric_depth": parametric_depth(context.graph),
                    "streams": streams}
        return ProbeResult(self.name, summary_, {}, tuple(notes))


def _data(context: ProbeContext) -> Any:
    from ..data import example_data

    return example_data(context.inputs)


probe = DepthProbe()
