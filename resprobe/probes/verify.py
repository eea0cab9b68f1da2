"""The ``verify`` probe: replay the forward pass and check every block on real values."""

from __future__ import annotations

from ..report import ProbeResult
from . import ProbeContext

__all__ = ["VerifyProbe", "probe"]


class VerifyProbe:
    """Per block: ``ok`` (the join read exactly the graph's skip and branch tensors, and its
    output is their sum) and ``error`` (the largest absolute difference)."""

    name = "verify"
    requires: tuple[str, ...] = ()
    install = ""

    def run(self, context: ProbeContext) -> ProbeResult:
        from ..verify import verify_blocks

        if not context.replayable or context.graph.device == "meta" or not context.blocks:
            why = ("the graph was read from a file, not recorded" if not context.replayable
                   else "the model has no values (meta device)" if context.graph.device == "meta"
                   else "there are no blocks")
            return ProbeResult(self.name, {"checked": 0, "passed": 0}, {}, (f"not run: {why}",))
        checks = verify_blocks(context.model, context.inputs, context.graph, context.blocks, strict=False,
                               train=context.settings.train)
        return ProbeResult(
            self.name, {"checked": len(checks), "passed": sum(c.ok for c in checks)},
            {c.name: {"ok": c.ok, "error": c.error, **({"detail": c.detail} if c.detail else {})}
             for c in checks},
        )


probe = VerifyProbe()
