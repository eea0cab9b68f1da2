"""report.html: one self-contained page (inline SVG, no network) with the diagram, a sortable
block table and charts; the same pieces serve report.md and Jupyter's ``_repr_html_``."""

from __future__ import annotations

import html

from ..report import Report
from .parts import COLUMNS, charts, diagram, facts, not_measured, notes, readouts, rows

__all__ = ["COLUMNS", "charts", "diagram", "report_html"]

_RULES = (  # every rule is scoped to the report's own element: nothing else on the page changes
    ("", "font-family:Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1200px"),
    ("table", "border-collapse:collapse;font-size:12px"),
    ("td", "border:1px solid #ddd;padding:3px 6px;text-align:right;white-space:nowrap"),
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
        f"<h1>resprobe report: {e(report.model.class_name)}</h1>",
        '<table class="facts">'
        + "".join(f"<tr><td><b>{e(k)}</b></td><td>{e(v)}</td></tr>" for k, v in facts(report))
        + "</table>",
    ]
    missing = not_measured(report)
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
    for title, heads, table in readouts(report):
        parts.append("<h2>Prediction along depth</h2>"
                     f"<p>{e(title)}</p>" + '<div class="scroll"><table class="readout"><thead><tr>'
                     + "".join(f"<th>{e(h)}</th>" for h in heads) + "</tr></thead><tbody>"
                     + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in table)
                     + "</tbody></table></div>")
    made = charts(report)
    if made:
        parts.append("<h2>Charts</h2>" + "".join(f'<div class="chart">{svg_}</div>' for _, svg_ in made))
    said = notes(report)
    if said:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in said) + "</ul>")
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
        f"{e(report.model.class_name)}</title></head><body>\n{fragment}\n</body></html>\n"
    )
