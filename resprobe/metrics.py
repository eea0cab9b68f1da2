"""The metric catalogue: every per-block number resprobe reports, defined once. The statistics,
the probes, the report's table and diagram, the console summary and docs/metrics.md all read
it; renaming a metric is one line here. Torch-free, so the command line can read it cheaply."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CATALOGUE", "Metric", "by_key", "colour_metrics", "of_probe", "table_columns"]


@dataclass(frozen=True)
class Metric:
    """One per-block number: where it lives in report.json (``probe``, ``key``), how it is
    shown (``label``, ``fmt``), what it is (``definition``, ``unit``, ``literature``), which way
    is better (``higher``: ``"better"``, ``"worse"``, or None: a description, neither), and whether the
    block table shows it (``table``) and the diagram can be coloured by it (``colour``: the
    name ``--color-by`` takes)."""

    key: str
    probe: str
    label: str
    fmt: str
    definition: str
    unit: str = "no unit"
    literature: str = ""
    higher: str | None = None
    table: bool = False
    colour: str = ""
    short: str = ""  # a compact format for the diagram (default: ``fmt``)

    @property
    def fmt_short(self) -> str:
        return self.short or self.fmt


CATALOGUE: tuple[Metric, ...] = (
    Metric("units", "refinement", "units", "{}",
           "how many units the block was measured on (real token positions under an attention mask)",
           "count"),
    Metric("update_ratio", "refinement", "update ratio", "{:.3f}",
           "`‖b‖ / ‖s‖` per unit, averaged (`update_ratio_std`: its spread)", "ratio of norms",
           "Jastrzębski et al. 2018", table=True, colour="update_ratio", short="{:.2f}"),
    Metric("update_ratio_std", "refinement", "update ratio spread", "{:.3f}",
           "the standard deviation of the update ratio over units", "ratio of norms"),
    Metric("variance_ratio", "refinement", "variance ratio", "{:.3f}",
           "`Var(b) / Var(s)` over every element of every batch", "ratio of variances", "De & Smith 2020"),
    Metric("cos_branch_skip", "refinement", "cos(b, s)", "{:.3f}", "`cos(b, s)` per unit, averaged", "cosine",
           table=True),
    Metric("block_influence", "refinement", "block influence", "{:.4f}",
           "`1 − cos(s, y)` per unit, averaged (the skip input `s` is the block input `x`, or its "
           "projection for a projection shortcut)", "1 − cosine, 0 to 2", "Men et al. 2024 (ShortGPT)",
           table=True, colour="block_influence", short="{:.3f}"),
    Metric("label", "refinement", "label", "{}",
           "`idle` when `update_ratio < 0.01`; `refine` when `update_ratio < 1.0` and `block_influence < "
           "0.134` (a turn of less than 30°), else `rebuild` (`--refine-ratio`, `--refine-influence`; "
           "calibration below)", "refine / rebuild / idle", table=True),
    Metric("grad_norm", "gradients", "‖∂L/∂y‖", "{:.3e}",
           "`‖δ‖` per sample: the gradient at the join, along the stream from output to input",
           "loss per unit of activation", table=True, colour="grad_norm", short="{:.2e}"),
    Metric("skip_gain", "gradients", "skip gain", "{:.3f}",
           "`‖Aᵀδ‖ / ‖δ‖`: the gradient reaching `x` through the skip, relative to `δ` (1 for an "
           "identity skip)", "ratio of norms", "Veit et al. 2016", table=True),
    Metric("branch_gain", "gradients", "branch gain", "{:.3f}",
           "`‖Jᵀδ‖ / ‖δ‖`: the gradient reaching `x` through the branch", "ratio of norms",
           "Veit et al. 2016", table=True, colour="branch_gain", short="{:.2f}"),
    Metric("iterative_cos", "gradients", "cos(b, ∂L/∂x)", "{:.3f}",
           "`cos(b, ∂L/∂x)` with `∂L/∂x = Aᵀδ + Jᵀδ`; negative when the block moves the representation "
           "downhill (identity-shaped blocks only)", "cosine", literature="Jastrzębski et al. 2018",
           table=True),
    Metric("lesion_first_order", "gradients", "first-order lesion", "{:+.4f}",
           "`−b · δ` per sample, averaged: the first-order change of the loss if the block were deleted "
           "(positive: deleting it would raise the loss)", "loss"),
    Metric("param_grad_norm", "gradients", "‖∂L̄/∂θ‖", "{:.3e}",
           "`‖∂L̄/∂θ‖` over the branch's parameters, `L̄` the mean loss per sample", "loss per unit of weight"),
    Metric("param_norm", "gradients", "‖θ‖", "{:.3e}", "`‖θ‖` over the branch's parameters", "weight"),
    Metric("grad_weight_ratio", "gradients", "grad / weight", "{:.3e}", "`param_grad_norm / param_norm`",
           "ratio of norms"),
    Metric("loss_change", "lesion", "lesion Δloss", "{:+.4f}",
           "the loss with the block deleted minus the loss of the whole model", "loss", table=True,
           colour="lesion", short="{:+.3f}"),
    Metric("agreement", "lesion", "lesion agreement", "{:.3f}",
           "the share of samples whose top-1 prediction survives deleting the block", "share of samples",
           table=True),
    Metric("kl_to_final", "lens", "lens KL", "{:.4f}",
           "`KL(p_final ‖ p_block)` per unit, averaged: how far the prediction read from the stream right "
           "after the block (the model's own final norm and head applied to it) is from the model's final "
           "prediction; 0 at the last block", "nats", "nostalgebraist 2020 (logit lens); Belrose et al. 2023",
           higher="worse", table=True, colour="lens", short="{:.3f}"),
    Metric("top1_agreement", "lens", "lens top-1", "{:.3f}",
           "the share of units whose top-1 read from the stream after the block is the final top-1",
           "share of units", "nostalgebraist 2020", higher="better", table=True),
    Metric("entropy", "lens", "lens entropy", "{:.3f}", "the entropy of the prediction read after the block",
           "nats"),
    Metric("loss", "lens", "lens loss", "{:.4f}",
           "the objective's loss on the prediction read after the block, when the objective reads targets "
           "(`task`, `next-token`); else null", "nats"),
    Metric("tuned_kl_to_final", "lens", "tuned lens KL", "{:.4f}",
           "`kl_to_final` with the state first mapped by the block's affine translator `h + Ah + b`, fitted "
           "to the final prediction on the data (`--lens tuned`, else absent; null for a state whose "
           "features are not its last dimension)", "nats", "Belrose et al. 2023 (tuned lens)",
           higher="worse"),
    Metric("tuned_top1_agreement", "lens", "tuned lens top-1", "{:.3f}",
           "the share of units whose top-1 read through the block's translator is the final top-1 "
           "(`--lens tuned`)", "share of units", "Belrose et al. 2023", higher="better"),
    Metric("attribution", "attribution", "attribution", "{:.4f}",
           "the block's share of `score(all on) − score(all off)`, averaged over samples (Integrated "
           "Gradients over branch gates)", "score", table=True),
)


def by_key(probe: str, key: str) -> Metric:
    """The metric ``key`` of ``probe``."""
    return next(m for m in CATALOGUE if m.probe == probe and m.key == key)


def of_probe(probe: str) -> tuple[str, ...]:
    """The keys a probe reports per block, in catalogue order."""
    return tuple(m.key for m in CATALOGUE if m.probe == probe)


def table_columns() -> list[Metric]:
    """The report's block table, left to right."""
    return [m for m in CATALOGUE if m.table]


def colour_metrics() -> dict[str, Metric]:
    """What the diagram can be coloured by (``--color-by``), by name."""
    return {m.colour: m for m in CATALOGUE if m.colour}
