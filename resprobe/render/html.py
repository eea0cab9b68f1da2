"""report.html: one self-contained page (inline SVG, no network) with the diagram, a sortable
block table and charts; the same pieces serve report.md and Jupyter's ``_repr_html_``."""

from __future__ import annotations

import html
from typing import Any

from ..errors import UsageError
from ..metrics import by_key, table_columns
from ..report import Report
from .charts import bar_chart, line_chart
from .dot import render
from .refinement import refinement_dot

__all__ = ["COLUMNS", "charts", "diagram", "report_html"]

# (header, probe, key, format), from the metric catalogue (resprobe/metrics.py)
COLUMNS: list[tuple[str, str, str, str]] = [(m.label, m.probe, m.key, m.fmt) for m in table_columns()]


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
        if any(b.get("metrics", {}).get(c[1], {}).get(c[2]) is not None for b in report.blocks)
    ]
    headers = ["stream", "step", "block", "skip", "join"] + [c[0] for c in present]
    body = []
    for b in report.blocks:
        m = b.get("metrics", {})
        body.append(
            [
                "–" if b["stream"] is None else str(b["stream"]),
                "–" if b["step"] is None else str(b["step"]),
                b["name"],
                b["skip"],
                b["join"],
            ]
            + [_cell(m.get(p, {}).get(k), f) for _, p, k, f in present]
        )
    return headers, body


def diagram(report: Report, **options: Any) -> tuple[str | None, str, str]:
    """The refinement view: (inline SVG or None, DOT source, a note when it could not be laid out)."""
    dot = refinement_dot(report, **options)
    try:
        svg = render(dot, "svg", timeout=30).decode()
    except UsageError as err:
        if "fold" in options:  # the caller chose; do not second-guess
            return None, dot, str(err)
        try:  # fold harder before giving up
            svg = render(refinement_dot(report, fold=True, fold_min=2), "svg", timeout=30).decode()
        except UsageError as again:
            return None, dot, str(again)
    start = svg.find("<svg")
    return (svg[start:] if start >= 0 else svg), dot, ""


def charts(report: Report) -> list[tuple[str, str]]:
    """(file stem, SVG) for every chart the report has data for."""
    names = [b["name"] for b in report.blocks if b["skip"] != "concat"]
    return (
        _refinement_charts(report, names)
        + _gradient_charts(report)
        + _depth_charts(report)
        + _lesion_charts(report, names)
    )


def _refinement_charts(report: Report, names: list[str]) -> list[tuple[str, str]]:
    by = {b["name"]: b.get("metrics", {}) for b in report.blocks}
    out = []
    for key in ("update_ratio", "block_influence"):
        m = by_key("refinement", key)
        title = f"{m.label} {m.unit} per block"
        values = [by[n].get("refinement", {}).get(key) for n in names]
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


def _profiles(stream: dict[str, Any]) -> dict[str, list[float | None]]:
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


def _facts(report: Report) -> list[tuple[str, str]]:
    m = report.model
    facts = [
        ("model", f"{m.get('class')} from {m.get('source') or 'Python'}"),
        ("weights", str(m.get("weights"))),
        ("parameters", f"{m.get('parameters', 0):,}"),
        (
            "device",
            f"{m.get('device')} · {m.get('dtype')}"
            + (f" · autocast {m['autocast']}" if m.get("autocast") else ""),
        ),
        ("graph", f"{report.graph.get('nodes')} nodes, {report.graph.get('edges')} edges"),
        (
            "blocks",
            f"{sum(b['skip'] != 'concat' for b in report.blocks)} residual on {len(report.streams)} "
            f"stream(s), {sum(b['skip'] == 'concat' for b in report.blocks)} concat skip(s)",
        ),
    ]
    if report.objective:
        facts.append(("objective", f"{report.objective['name']}: {report.objective['description']}"))
    if report.data:
        facts.append(("data", f"{report.data['description']} ({report.data['measured_samples']} samples)"))
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


def _not_measured(report: Report) -> list[str]:
    ran = {r.probe for r in report.results}
    return [f"{p} (probe not run)" for p in ("refinement", "gradients", "depth", "lesion") if p not in ran]


_RULES = (  # every rule is scoped to the report's own element: nothing else on the page changes
    ("", "font-family:Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1200px"),
    ("table", "border-collapse:collapse;font-size:12px"),
    ("td", "border:1px solid #ddd;padding:3px 6px;text-align:right"),
    ("th", "border:1px solid #ddd;padding:3px 6px;background:#f3f3f3;cursor:pointer;user-select:none"),
    ("table.blocks td:nth-child(3)", "text-align:left"),
    ("table.blocks th:nth-child(3)", "text-align:left"),
    (".facts td", "text-align:left;border:none;padding:2px 10px 2px 0"),
    (".scroll", "overflow-x:auto;max-width:100%"),
    (".chart", "display:inline-block;margin:6px"),
    (".diagram", "overflow:hidden;border:1px solid #eee;padding:8px;height:70vh;max-height:900px;"
                 "cursor:grab;touch-action:none"),
    (".diagram svg", "width:100%;height:100%"),
    (".note", "color:#8a5a00"),
)
_STYLE = "".join(f".resprobe-report{' ' + sel if sel else ''}{{{rules}}}" for sel, rules in _RULES)

# Pan (drag) and zoom (wheel, or the + and - keys) for the diagram; double-click resets.
_PANZOOM = """(document.currentScript&&document.currentScript.parentNode||document).querySelectorAll(
'.diagram svg').forEach(function(s){var v0=s.viewBox&&s.viewBox.baseVal;if(!v0||!v0.width){return;}
var o=[v0.x,v0.y,v0.width,v0.height],
v=o.slice(),drag=null;function set(){s.setAttribute('viewBox',v.join(' '));}
function zoom(f,cx,cy){var w=v[2]*f,h=v[3]*f;v=[cx-(cx-v[0])*f,cy-(cy-v[1])*f,w,h];set();}
function at(e){var r=s.getBoundingClientRect();return [v[0]+(e.clientX-r.left)/r.width*v[2],
v[1]+(e.clientY-r.top)/r.height*v[3]];}
s.addEventListener('wheel',function(e){e.preventDefault();var p=at(e);zoom(e.deltaY<0?0.8:1.25,p[0],p[1]);},
{passive:false});s.addEventListener('pointerdown',function(e){drag=[e.clientX,e.clientY];});
window.addEventListener('pointerup',function(){drag=null;});
s.addEventListener('pointermove',function(e){if(!drag){return;}var r=s.getBoundingClientRect();
v[0]-=(e.clientX-drag[0])/r.width*v[2];v[1]-=(e.clientY-drag[1])/r.height*v[3];drag=[e.clientX,e.clientY];set();});
s.addEventListener('dblclick',function(){v=o.slice();set();});
s.setAttribute('tabindex','0');s.addEventListener('keydown',function(e){
if(e.key==='+'){zoom(0.8,v[0]+v[2]/2,v[1]+v[3]/2);}if(e.key==='-'){zoom(1.25,v[0]+v[2]/2,v[1]+v[3]/2);}});});"""

_SORT = """(document.currentScript&&document.currentScript.parentNode||document).querySelectorAll(
'table.blocks th').forEach(function(th,i){th.addEventListener('click',
function(){var t=th.closest('table'),b=t.tBodies[0],r=Array.prototype.slice.call(b.rows),
d=th.getAttribute('data-dir')==='asc'?-1:1;th.setAttribute('data-dir',d===1?'asc':'desc');
r.sort(function(x,y){var a=x.cells[i].textContent,c=y.cells[i].textContent,p=parseFloat(a),q=parseFloat(c);
if(!isNaN(p)&&!isNaN(q)){return d*(p-q);}return d*a.localeCompare(c);});
r.forEach(function(e){b.appendChild(e);});});});"""


def report_html(report: Report, *, full: bool = True) -> str:
    """The report as HTML: a whole page (``full``) or a fragment for Jupyter."""
    e = html.escape
    svg, dot, note = diagram(report)
    parts = [
        f"<h1>resprobe report: {e(str(report.model.get('class')))}</h1>",
        '<table class="facts">'
        + "".join(f"<tr><td><b>{e(k)}</b></td><td>{e(v)}</td></tr>" for k, v in _facts(report))
        + "</table>",
    ]
    missing = _not_measured(report)
    if missing:
        parts.append(f'<p class="note">Not measured: {e(", ".join(missing))}.</p>')
    parts.append("<h2>Residual streams</h2>")
    if svg is not None:
        parts.append('<p>Drag to pan, scroll (or + and -) to zoom, double-click to reset.</p>'
                     f'<div class="diagram">{svg}</div>')
    else:
        parts.append(f'<p class="note">{e(note)}</p><pre>{e(dot)}</pre>')
    headers, body = rows(report)
    parts.append("<h2>Blocks</h2><p>Click a column to sort.</p>")
    parts.append(
        '<div class="scroll"><table class="blocks"><thead><tr>'
        + "".join(f"<th>{e(h)}</th>" for h in headers)
        + "</tr></thead><tbody>"
        + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in body)
        + "</tbody></table></div>"
    )
    made = charts(report)
    if made:
        parts.append("<h2>Charts</h2>" + "".join(f'<div class="chart">{svg_}</div>' for _, svg_ in made))
    notes = list(
        dict.fromkeys(
            [*report.graph.get("notes", []), *report.notes, *(n for r in report.results for n in r.notes)]
        )
    )
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>")
    parts.append(
        f"<p><small>resprobe {e(report.resprobe_version)} · report schema {report.schema}</small></p>"
    )
    body_html = "\n".join(parts)
    scripts = f"<script>{_SORT}</script><script>{_PANZOOM}</script>"
    fragment = f'<div class="resprobe-report"><style>{_STYLE}</style>{body_html}{scripts}</div>'
    if not full:
        return fragment
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>resprobe: '
        f"{e(str(report.model.get('class')))}</title></head><body>\n{fragment}\n</body></html>\n"
    )
