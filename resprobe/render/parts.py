"""What report.html, report.md and Jupyter's display share: the facts, the block table, the
diagram, the charts and the notes, each computed once from a Report."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import LayoutError, UsageError
from ..metrics import by_key, table_columns
from ..report import Report
from .charts import bar_chart, line_chart
from .dot import render
from .refinement import refinement_dot

__all__ = ["COLUMNS", "charts", "diagram", "facts", "not_measured", "notes", "readouts", "rows"]

# (header, probe, key, format), from the metric catalogue (resprobe/metrics.py)
COLUMNS: list[tuple[str, str, str, str]] = [(m.label, m.probe, m.key, m.fmt) for m in table_columns()]


def html_table(headers: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "blocks") -> str:
    """An HTML table (every cell escaped) in a box that scrolls sideways when it is wide."""
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return (f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "–"
    try:
        return fmt.format(value)
    except (TypeError, ValueError):
        return str(value)


def rows(report: Report) -> tuple[list[str], list[list[str]]]:
    """The block table: headers and one row per block (columns without any value left out)."""
    present = [
        c
        for c in COLUMNS
        if any(b.metrics.value(c[1], c[2]) is not None for b in report.blocks)
    ]
    headers = ["stream", "step", "block", "skip", "join"] + [c[0] for c in present]
    body = []
    for b in report.blocks:
        body.append(
            [
                "–" if b.stream is None else str(b.stream),
                "–" if b.step is None else str(b.step),
                b.name,
                b.skip,
                b.join,
            ]
            + [_cell(b.metrics.value(p, k), f) for _, p, k, f in present]
        )
    return headers, body


def diagram(report: Report, **options: Any) -> tuple[str | None, str, str]:
    """The refinement view: (inline SVG or None, DOT source, a note when it could not be laid out)."""
    dot = refinement_dot(report, **options)
    try:
        svg = render(dot, "svg", timeout=30).decode()
    except (UsageError, LayoutError) as err:
        if "fold" in options:  # the caller chose; do not second-guess
            return None, dot, str(err)
        try:  # fold harder before giving up
            svg = render(refinement_dot(report, fold=True, fold_min=2), "svg", timeout=30).decode()
        except (UsageError, LayoutError) as again:
            return None, dot, str(again)
    start = svg.find("<svg")
    return (svg[start:] if start >= 0 else svg), dot, ""


def charts(report: Report) -> list[tuple[str, str]]:
    """(file stem, SVG) for every chart the report has data for."""
    names = [b.name for b in report.residual]
    return (
        _refinement_charts(report, names)
        + _gradient_charts(report)
        + _depth_charts(report)
        + _lesion_charts(report, names)
        + _lens_charts(report)
    )


def _lens_streams(report: Report) -> list[Mapping[str, Any]]:
    lens = report.result("lens")
    return [s for s in (lens.summary.get("streams", ()) if lens else ()) if s.get("blocks")]


def _lens_charts(report: Report) -> list[tuple[str, str]]:
    """Per decoded stream: KL to the final prediction and top-1 agreement after each block."""
    lens = report.result("lens")
    if lens is None:
        return []
    out = []
    for s in _lens_streams(report):
        names = list(s["blocks"])
        kl = [lens.blocks[n].get("kl_to_final") for n in names]
        agree = [lens.blocks[n].get("top1_agreement") for n in names]
        ticks = [str(k) for k in range(1, len(names) + 1)]
        out.append((f"lens_kl_stream{s['id']}", line_chart(
            f"prediction along depth, stream {s['id']}: KL to the final prediction (nats)",
            {"KL(final ‖ read after the block)": kl}, x_label="block (step on the stream)", x_ticks=ticks)))
        out.append((f"lens_top1_stream{s['id']}", line_chart(
            f"prediction along depth, stream {s['id']}: top-1 agreement with the final prediction",
            {"share of units": agree}, x_label="block (step on the stream)", x_ticks=ticks)))
    return out


def readouts(report: Report) -> list[tuple[str, list[str], list[list[str]]]]:
    """The lens's readout tables (language models): per decoded stream, the top-1 token read
    after each block at a few positions of the first sample. (title, headers, rows)."""
    out = []
    for s in _lens_streams(report):
        r = s.get("readout")
        if not r:
            continue
        words = r.get("tokens") or {}
        given = words.get("input") or [str(t) for t in (r.get("input") or ())]
        headers = ["block"] + [f"{pos}: {_shown(given[k]) if k < len(given) else ''}".strip()
                               for k, pos in enumerate(r["positions"])]
        blocks = words.get("blocks") or [[str(t) for t in (b or ())] for b in r["blocks"]]
        rows = [[name, *(_shown(t) for t in top)] for name, top in zip(s["blocks"], blocks)]
        final = words.get("final") or [str(t) for t in r["final"]]
        rows.append(["output", *(_shown(t) for t in final)])
        out.append((f"stream {s['id']}: the next token predicted from the stream after each block (the "
                    "model's own final norm and head applied there), at a few positions of the first sample; "
                    "each column is headed by its position and the input token there", headers, rows))
    return out


def _shown(token: str) -> str:
    """A token as visible text: spaces, newlines and tabs drawn."""
    return token.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥") or "∅"


def _refinement_charts(report: Report, names: list[str]) -> list[tuple[str, str]]:
    by = {b.name: b.metrics for b in report.blocks}
    out = []
    for key in ("update_ratio", "block_influence"):
        m = by_key("refinement", key)
        title = f"{m.label} {m.unit} per block"
        values = [by[n].value("refinement", key) for n in names]
        if any(v is not None for v in values):
            out.append((key, bar_chart(title, names, values)))
    return out


def _gradient_charts(report: Report) -> list[tuple[str, str]]:
    grads = report.result("gradients")
    streams = grads.summary.get("streams", []) if grads else []
    return [
        (
            f"grad_norm_stream{s['id']}",
            line_chart(
                f"‖∂L/∂y‖ along stream {s['id']} (log scale)",
                {"gradient at the join": s["grad_norm"]},
                log=True,
                x_label="step − 1",
            ),
        )
        for s in streams
        if any(v is not None for v in s["grad_norm"])
    ]


def _profiles(stream: Mapping[str, Any]) -> dict[str, list[float | None]]:
    """Every path-length profile of a stream, each normalised to sum to one."""
    profiles: dict[str, list[float | None]] = {}
    for key, label in (("estimate_magnitude", "estimate (magnitude)"), ("estimate_net", "estimate (net)")):
        if key in stream:
            profiles[label] = list(stream[key]["profile"])
    raw = {}
    if "exact" in stream:
        raw["exact (net)"] = list(stream["exact"]["norms"])
    if "sampled" in stream:
        raw["sampled (magnitude)"] = [
            10**t if t is not None else 0.0 for t in stream["sampled"]["log10_total"]
        ]
    for label, values in raw.items():
        total = sum(values) or 1.0
        profiles[label] = [v / total for v in values]
    return profiles


def _depth_charts(report: Report) -> list[tuple[str, str]]:
    depth = report.result("depth")
    out = []
    for s in depth.summary.get("streams", []) if depth else []:
        profiles = _profiles(s)
        if profiles:
            out.append(
                (
                    f"path_lengths_stream{s['id']}",
                    line_chart(
                        f"share of the gradient by path length, stream {s['id']}",
                        profiles,
                        x_label="path length",
                    ),
                )
            )
    return out


def _lesion_charts(report: Report, names: list[str]) -> list[tuple[str, str]]:
    lesion = report.result("lesion")
    if not lesion or not lesion.blocks:
        return []
    out = [
        (
            "lesion",
            bar_chart(
                "loss change when each block is deleted",
                names,
                [lesion.blocks.get(n, {}).get("loss_change") for n in names],
            ),
        )
    ]
    curve = lesion.summary.get("curve", [])
    if curve:
        key = "accuracy" if "accuracy" in curve[0] else "loss_change"
        out.append(
            (
                "lesion_curve",
                line_chart(
                    f"{key.replace('_', ' ')} with k random blocks deleted "
                    f"(k = {curve[0]['deleted']}…{curve[-1]['deleted']})",
                    {key: [row[key] for row in curve]},
                    x_label="blocks deleted",
                    x_ticks=[str(row["deleted"]) for row in curve],
                ),
            )
        )
    return out


def facts(report: Report) -> list[tuple[str, str]]:
    m = report.model
    residual = len(report.residual)
    facts = [
        ("model", f"{m.class_name} from {m.source or 'Python'}"),
        ("weights", str(m.weights)),
        ("parameters", f"{m.parameters:,}"),
        ("device", f"{m.device} · {m.dtype}" + (f" · autocast {m.autocast}" if m.autocast else "")),
        ("graph", f"{report.graph.nodes} nodes, {report.graph.edges} edges"),
        (
            "blocks",
            f"{residual} residual on {len(report.streams)} "
            f"stream(s), {len(report.blocks) - residual} concat skip(s)",
        ),
    ]
    if report.objective:
        facts.append(("objective", f"{report.objective['name']}: {report.objective['description']}"))
    if report.data:
        n = report.data["measured_samples"]
        facts.append(("data", f"{report.data['description']} ({n} sample{'' if n == 1 else 's'})"))
    depth = report.result("depth")
    if depth:
        for s in depth.summary.get("streams", []):
            if s.get("effective_depth") is not None:
                facts.append(
                    (
                        f"effective depth, stream {s['id']}",
                        f"{s['effective_depth']:.2f} of {s['nominal']} blocks (window {{}}–{{}})".format(
                            *s["estimate_magnitude"]["window"]
                        ),
                    )
                )
    return facts


def not_measured(report: Report) -> list[str]:
    ran = {r.probe for r in report.results}
    return [f"{p} (probe not run)" for p in ("refinement", "gradients", "depth", "lesion", "lens")
            if p not in ran]


def notes(report: Report) -> list[str]:
    """Every note (capture, source, probes), each once, in order."""
    probes = (n for r in report.results for n in r.notes)
    return list(dict.fromkeys([*report.graph.notes, *report.notes, *probes]))
