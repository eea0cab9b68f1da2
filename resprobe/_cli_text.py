"""What the CLI prints: the summary of an analysis and the table of blocks (plain text)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .blocks import Block, streams
from .graph import Graph
from .metrics import by_key
from .report import Report
from .verify import BlockCheck

__all__ = ["block_json", "block_table", "summary"]


def summary(report: Report) -> str:
    blocks, residual = report.blocks, report.residual
    check = report.result("verify")
    verified = ""
    if check and check.summary.get("checked"):
        verified = f"; verified {check.summary['passed']}/{check.summary['checked']}"
    weights = f"{report.model.weights} weights"
    if report.model.weights == "none":
        weights = "no weights: structure only"
    line = (f"{report.model.class_name} ({weights}): {len(residual)} residual "
            f"block(s) on {len(report.streams)} stream(s), {len(blocks) - len(residual)} concat "
            f"skip(s){verified}")
    refinement = report.result("refinement")
    if refinement and refinement.summary.get("measured"):
        s = refinement.summary
        idle = f", {s['idle']} idle" if s.get("idle") else ""
        line += f"\nrefinement: {s['refine']} refine, {s['rebuild']} rebuild{idle}{_medians(refinement)}"
        if report.data:
            line += f" (on {report.data['measured_samples']} sample(s): {report.data['description']})"
        if report.model.weights == "random":
            line += "; random weights: this describes the initialisation, not learned refinement"
    gradients = report.result("gradients")
    if gradients and gradients.summary.get("measured") and report.objective:
        gains = [g for g in (b.metrics.gradients.branch_gain for b in residual if b.metrics.gradients)
                 if g is not None]
        line += (f"\ngradients of {report.objective['name']} ({report.objective['description']}): "
                 f"branch gain median {sorted(gains)[len(gains) // 2]:.3g}" if gains else "")
    line += _depth_summary(report)
    line += _lens_summary(report)
    line += "".join(_other_summary(r) for r in report.results if r.probe not in _BUILTIN)
    notes = dict.fromkeys(n for r in report.results for n in r.notes)
    line += "".join(f"\nnote: {n}" for n in notes)
    return line


def _medians(result: Any) -> str:
    """The numbers behind the labels: median update ratio and block influence."""
    parts = []
    for key in ("update_ratio", "block_influence"):
        label = by_key("refinement", key).label
        values = sorted(v[key] for v in result.blocks.values() if v.get(key) is not None)
        if values:
            parts.append(f"{label} median {values[len(values) // 2]:.3g}")
    return f" [{', '.join(parts)}]" if parts else ""


_BUILTIN = ("verify", "refinement", "gradients", "depth", "lesion", "lens")


def _lens_summary(report: Report) -> str:
    """Per decoded stream: how far the first block's prediction is from the final one, and
    where the top-1 agreement first reaches 90%."""
    lens = report.result("lens")
    if lens is None or not lens.summary.get("measured"):
        return ""
    out = ""
    for s in lens.summary.get("streams", ()):
        names = s.get("blocks") or ()
        if not names:
            continue
        first = lens.blocks[names[0]].get("kl_to_final")
        reach = s.get("agreement_90_step")
        where = f"at step {reach}" if reach is not None else "nowhere before the output"
        out += (f"\nlens, stream {s['id']}: KL to the final prediction {first:.3g} nats after the first "
                f"decoded block ({names[0]}), 0 after the last; top-1 agreement reaches 90% {where}"
                if first is not None else "")
    return out


def _other_summary(result: Any) -> str:
    """One line for a probe the summary has no words of its own for (plugins included)."""
    s = result.summary
    if result.probe == "attribution" and s.get("measured") and result.blocks:
        top = max(result.blocks.items(), key=lambda kv: abs(kv[1].get("share") or 0.0))
        return (f"\nattribution ({s['method']}, {s['samples']} sample(s)): largest share "
                f"{top[1]['share']:+.3g} ({top[0]}); convergence delta {s['convergence_delta']:.2g}")
    scalars = [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in s.items()
               if isinstance(v, (int, float, str)) and not isinstance(v, bool)]
    return f"\n{result.probe}: {', '.join(scalars[:6]) or 'no summary numbers'}"


def _depth_summary(report: Report) -> str:
    out = ""
    depth = report.result("depth")
    if depth and depth.summary.get("measured"):
        for s in depth.summary["streams"]:
            if s.get("effective_depth") is not None:
                window = s["estimate_magnitude"]["window"]
                out += (f"\neffective depth (stream {s['id']}): {s['effective_depth']:.1f} of "
                        f"{s['nominal']} blocks, paths {window[0]}-{window[1]} long carry 90% of the "
                        "gradient")
                out += _exact_text(s.get("exact"))
    lesions = report.result("lesion")
    if lesions and lesions.blocks:
        out += _lesion_line(lesions.summary, lesions.blocks)
    return out


def _exact_text(exact: Mapping[str, Any] | None) -> str:
    """``; exact profile: mean …, window […]``, saying when lengths above K were cut."""
    if not exact or exact.get("mean") is None:
        return ""
    cut = exact.get("truncated_at")
    kept = f" (lengths <= {cut} only)" if cut is not None else ""
    return f"; exact profile: mean {exact['mean']:.1f}, window {exact['window']}{kept}"


def _lesion_line(summary: Mapping[str, Any], blocks: Mapping[str, Mapping[str, Any]]) -> str:
    """How many single deletions are harmless, on how many samples, and the worst one."""
    # numbers a model with NaN or inf weights could not give are None (see analyze._finite)
    worst = max(blocks.items(),
                key=lambda kv: (kv[1].get("loss_change") is not None, kv[1].get("loss_change") or 0.0))
    values = list(blocks.values())
    if all("agreement" in v for v in values):
        calm = sum(1 for v in values if v["agreement"] is not None and v["agreement"] >= 0.95)
        what = "keep >= 95% of the top-1 predictions"
    else:
        calm = sum(1 for v in values if v.get("output_change") is not None and v["output_change"] < 0.1)
        what = "change the output by < 10%"
    samples = summary.get("samples")
    if samples is not None:  # reports written before the count was recorded have none
        what += f" on {samples} sample(s)"
    return (f"\nlesions: {calm} of {len(values)} block(s) can each be deleted and {what}; the largest "
            f"loss change is {_signed(worst[1].get('loss_change', 0.0))} ({worst[0]})")


def _signed(value: float | None) -> str:
    return "not finite" if value is None else f"{value:+.3g}"


def block_json(b: Block, checks: dict[str, BlockCheck]) -> dict[str, Any]:
    d = b.to_dict()
    d["verified"] = checks[b.name].ok if b.name in checks else None
    return d


def block_table(graph: Graph, found: list[Block], checks: dict[str, BlockCheck],
                notes: tuple[str, ...]) -> str:
    residual = [b for b in found if b.is_residual]
    lines = [f"{graph.model}: {graph.summary()}; {len(residual)} residual block(s) on "
             f"{len(streams(found))} stream(s), {len(found) - len(residual)} concat skip(s)"
             + (f"; verified {sum(c.ok for c in checks.values())}/{len(checks)}" if checks else "")]
    rows = [("stream", "step", "block", "skip", "join", "branch")] + [
        ("-" if b.stream is None else str(b.stream), "-" if b.step is None else str(b.step),
         b.name + (" FAILED" if b.name in checks and not checks[b.name].ok else ""),
         b.skip_kind, b.join_kind, _short_modules(b)) for b in found]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[5])
    lines += [f"note: {n}" for n in graph.notes + notes]
    return "\n".join(lines)


def _short_modules(b: Block, limit: int = 60) -> str:
    prefix = b.name.split("#")[0] + "."
    names = [m[len(prefix):] if m.startswith(prefix) else m for m in b.branch_modules]
    text = " ".join(names)
    return text if len(text) <= limit else text[: limit - 1] + "…"
