"""resprobe probe plugin ``attribution``: how much of the model's output each residual block's
branch accounts for, by captum's Integrated Gradients over the branch gates."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from click import IntRange

import resprobe

if TYPE_CHECKING:
    import torch

__all__ = ["AttributionProbe", "probe"]


class AttributionProbe:
    """Each block's branch output is multiplied by a gate ``α_i`` (1 = the model as it is,
    0 = the block deleted). ``captum.attr.IntegratedGradients`` integrates the gradient of a
    per-sample score along the straight path from every gate at 0 to every gate at 1, giving
    one attribution per block and sample; they sum to ``score(all on) − score(all off)``
    (completeness; captum's convergence delta is reported). The score is the logit of the
    predicted class for a classifier, otherwise the per-sample objective (see docs)."""

    name = "attribution"
    requires = ("captum",)
    install = "pip install captum"
    steps = 32
    max_samples = 16
    options = (
        resprobe.Option("--attribution-steps", IntRange(min=1), steps, "attribution: Gauss-Legendre steps "
                        "along the path from every gate at 0 to every gate at 1.", metavar="N",
                        show_default=True),
        resprobe.Option("--attribution-samples", IntRange(min=1), max_samples, "attribution: attribute on "
                        "up to N samples of the first batch.", metavar="N", show_default=True),
    )

    def run(self, context: resprobe.ProbeContext) -> resprobe.ProbeResult:
        import torch

        skipped = context.not_run(self.name)
        if skipped is not None:
            return skipped
        limit = context.settings.options.get("attribution_samples", self.max_samples)
        inputs, targets = _first_batch(context, limit)
        device = next((p.device for p in context.model.parameters()), torch.device("cpu"))
        inputs = inputs.to(device)
        targets = targets.to(device) if isinstance(targets, torch.Tensor) else targets
        try:
            return self._attribute(context, inputs, targets)
        except (RuntimeError, resprobe.ResprobeError) as err:  # e.g. a model autograd cannot differentiate
            skipped = context.not_run(self.name, str(err).strip().splitlines()[0][:200])
            assert skipped is not None
            return skipped

    def _attribute(self, context: resprobe.ProbeContext, inputs: resprobe.Inputs,
                   targets: Any) -> resprobe.ProbeResult:
        import torch
        from captum.attr import IntegratedGradients

        steps = context.settings.options.get("attribution_steps", self.steps)
        with resprobe.gated(context.model, context.graph, context.blocks,
                            train=context.settings.train) as gates:
            with torch.no_grad():
                plain = gates.run(inputs)
            score, what = _score(plain, inputs, targets, context)
            n = int(resprobe.main_output(plain).shape[0])

            def forward(alpha: torch.Tensor) -> torch.Tensor:
                times = alpha.shape[0] // n
                scored: torch.Tensor = score(gates.run(inputs.repeat(times), alpha), times)
                return scored

            device = resprobe.main_output(plain).device
            ones = torch.ones(n, len(gates.names), device=device)
            ig = IntegratedGradients(forward)
            attr, delta = ig.attribute(ones, baselines=torch.zeros_like(ones), n_steps=steps,
                                       method="gausslegendre", return_convergence_delta=True)
            with torch.no_grad():
                on = score(gates.run(inputs, ones), 1)
                off = score(gates.run(inputs, torch.zeros_like(ones)), 1)
        mean = attr.detach().double().mean(0).cpu()
        scale = float(mean.abs().sum()) or 1.0
        blocks = {name: {"attribution": round(float(a), 8), "share": round(float(a) / scale, 6)}
                  for name, a in zip(gates.names, mean)}
        summary = {
            "measured": len(blocks), "score": what, "samples": n, "steps": steps,
            "method": "IntegratedGradients over branch gates",
            "score_all_on": round(float(on.double().mean()), 8),
            "score_all_off": round(float(off.double().mean()), 8),
            "convergence_delta": round(float(delta.detach().abs().double().mean()), 8),
        }
        return resprobe.ProbeResult(self.name, summary, blocks)


def _first_batch(context: resprobe.ProbeContext, limit: int) -> tuple[resprobe.Inputs, Any]:
    for inputs, targets in context.data or [(context.inputs, None)]:
        return _head(inputs, limit), None if targets is None else targets[:limit]
    return context.inputs, None


def _head(inputs: resprobe.Inputs, limit: int) -> resprobe.Inputs:
    import torch

    def cut(v: Any) -> Any:
        return v[:limit] if isinstance(v, torch.Tensor) and v.dim() else v
    return resprobe.Inputs(tuple(cut(a) for a in inputs.args), {k: cut(v) for k, v in inputs.kwargs.items()})


def _score(plain: Any, inputs: resprobe.Inputs, targets: Any,
           context: resprobe.ProbeContext) -> tuple[Any, str]:
    """The per-sample score to attribute, and what it is."""
    import torch

    out = resprobe.main_output(plain)
    if out.dim() == 2 and out.shape[1] > 1 and targets is None and context.objective in (None, "auto"):
        predicted = out.argmax(1)

        def logit(output: Any, times: int) -> torch.Tensor:
            return resprobe.main_output(output).float().gather(1, predicted.repeat(times)[:, None])[:, 0]

        return logit, "logit of the predicted class"
    chosen = context.resolved_objective(plain, inputs, targets)  # chosen once per analysis

    def loss(output: Any, times: int) -> torch.Tensor:
        t = targets if targets is None or times == 1 else torch.cat([targets] * times)
        return chosen.losses(output, inputs.repeat(times), t)

    return loss, f"objective: {chosen.description}"


probe = AttributionProbe()
