"""compare.md, compare.html and the console summary of a ``Comparison`` of two reports."""

from __future__ import annotations

import html

from ..compare import BlockComparison, Comparison, DepthChange, MetricChange, change_text
from ..metrics import by_key
from .charts import bar_chart
from .html import _STYLE
from .markdown import _escape
from .parts import html_table

__all__ = ["comparison_html", "comparison_markdown", "comparison_text"]

_NOTHING = "Nothing changed: the same blocks, roles and numbers in A and B."
_EXTRA = (  # rules for the comparison's own tables, scoped like the report's
    ("table.compare th", "cursor:default"),
    ("table.compare td:first-child", "text-align:left"),
    ("table.facts-ab td", "text-align:left;white-space:normal"),
    ("table.compare tr.changed td", "background:#fff4d6"),
    ("td.up", "color:#1a6e2e"),
    ("td.down", "color:#a8201a"),
    (".only", "font-size:13px"),
)
_STYLE_COMPARE = _STYLE + "".join(f".resprobe-report {sel}{{{rules}}}" for sel, rules in _EXTRA)


def _fmt(m: MetricChange) -> str:
    return by_key(m.probe, m.key).fmt


def _number(value: float | None, fmt: str) -> str:
    return "–" if value is None else fmt.format(value)


def _signed(value: float | None, fmt: str) -> str:
    """``value`` in the metric's format with its sign: ``{:.3f}`` becomes ``{:+.3f}``."""
    if value is None:
        return "–"
    return (fmt if "+" in fmt else fmt.replace("{:", "{:+", 1)).format(value)


def _cells(m: MetricChange) -> list[str]:
    fmt = _fmt(m)
    return [_number(m.a, fmt), _number(m.b, fmt), _signed(m.delta, fmt)]


def _role(b: BlockComparison) -> list[str]:
    return [b.label_a or "–", b.label_b or "–"]


def _labels(c: Comparison) -> list[str]:
    """The compared metrics' names, in table order."""
    first = c.blocks[0].metrics if c.blocks else ()
    return [m.label for m in first]


def _title(c: Comparison) -> str:
    return f"resprobe comparison: {c.model_a} (A) and {c.model_b} (B)"


def _facts(c: Comparison) -> list[tuple[str, str, str]]:
    where = [("report", c.source_a or "(in memory)", c.source_b or "(in memory)")]
    return where + list(c.context)


# Markdown


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(_escape(x) for x in cells) + " |"


def _md_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    return [_md_row(headers), "|" + " --- |" * len(headers), *(_md_row(r) for r in rows)]


def comparison_markdown(c: Comparison) -> str:
    """The comparison as one Markdown page (tables only, no pictures)."""
    lines = [f"# {_escape(_title(c))}", ""]
    lines += _md_table(["", "A", "B"], [list(f) for f in _facts(c)])
    lines += ["", "## What changed", ""]
    lines += [f"- {_escape(s)}" for s in c.changes] or [_escape(_NOTHING)]
    lines += ["", "## Role changes", ""]
    lines += (_md_table(["block", "A", "B"], [[r.block, r.a, r.b] for r in c.role_changes])
              if c.role_changes else ["No block changed role."])
    if c.depth:
        lines += ["", "## Effective depth", ""]
        lines += _md_table(["stream", "A", "B", "Δ"], [_depth_row(d) for d in c.depth])
    lines += ["", "## Blocks", ""] + _md_blocks(c)
    lines += [""] + [_escape(line) for line in _only(c)]
    return "\n".join(lines).rstrip("\n") + "\n"


def _md_blocks(c: Comparison) -> list[str]:
    if not c.blocks:
        return ["No block is in both reports."]
    headers = ["block", "role A", "role B"]
    headers += [f"{label} {x}" for label in _labels(c) for x in ("A", "B", "Δ")]
    rows = [[b.name, *_role(b), *(x for m in b.metrics for x in _cells(m))] for b in c.blocks]
    return ["A and B are the values in each report; Δ is B − A.", "", *_md_table(headers, rows)]


def _only(c: Comparison) -> list[str]:
    """The blocks in one report only, a line for each side."""
    out = [f"Only in {side} ({len(names)}): {', '.join(names)}."
           for side, names in (("A", c.only_a), ("B", c.only_b)) if names]
    return out or ["Every block is in both reports."]


def _depth_row(d: DepthChange) -> list[str]:
    a = "–" if d.a is None else f"{d.a:.2f} of {d.nominal_a if d.nominal_a is not None else '–'}"
    b = "–" if d.b is None else f"{d.b:.2f} of {d.nominal_b if d.nominal_b is not None else '–'}"
    return [str(d.stream), a, b, _signed(d.delta, "{:.2f}")]


# HTML


def _h_table(headers: list[str], rows: list[list[str]], cls: str = "compare") -> str:
    return html_table(headers, rows, cls)


def _h_blocks(c: Comparison) -> str:
    if not c.blocks:
        return "<p>No block is in both reports.</p>"
    e = html.escape
    top = ('<tr><th rowspan="2">block</th><th colspan="2">role</th>'
           + "".join(f'<th colspan="3">{e(label)}</th>' for label in _labels(c)) + "</tr>")
    sub = "<tr>" + "<th>A</th><th>B</th>" + "<th>A</th><th>B</th><th>Δ</th>" * len(_labels(c)) + "</tr>"
    rows = "".join(_h_block_row(b) for b in c.blocks)
    return ("<p>A and B are the values in each report; Δ is B − A.</p>"
            f'<div class="scroll"><table class="compare"><thead>{top}{sub}</thead><tbody>{rows}</tbody>'
            "</table></div>")


def _h_block_row(b: BlockComparison) -> str:
    e = html.escape
    cells = [f"<td>{e(b.name)}</td>"] + [f"<td>{e(x)}</td>" for x in _role(b)]
    for m in b.metrics:
        a, bv, d = _cells(m)
        way = "" if not m.delta else (' class="up"' if m.delta > 0 else ' class="down"')
        cells += [f"<td>{e(a)}</td>", f"<td>{e(bv)}</td>", f"<td{way}>{e(d)}</td>"]
    changed = ' class="changed"' if b.role_changed else ""
    return f"<tr{changed}>{''.join(cells)}</tr>"


def _h_chart(c: Comparison) -> str:
    """Δ update ratio per block, as a bar chart (nothing when no block has it in both reports)."""
    deltas = [m.delta if (m := b.metric("update_ratio")) is not None else None for b in c.blocks]
    if not any(d is not None for d in deltas):
        return ""
    svg = bar_chart("Δ update ratio per block (B − A)", [b.name for b in c.blocks], deltas)
    return f'<h2>Δ update ratio</h2><div class="chart">{svg}</div>'


def comparison_html(c: Comparison) -> str:
    """The comparison as one self-contained HTML page: no scripts, no requests."""
    e = html.escape
    parts = [f"<h1>{e(_title(c))}</h1>",
             _h_table(["", "A", "B"], [list(f) for f in _facts(c)], cls="compare facts-ab"),
             "<h2>What changed</h2>"]
    parts.append("<ul>" + "".join(f"<li>{e(s)}</li>" for s in c.changes) + "</ul>" if c.changes
                 else f"<p>{e(_NOTHING)}</p>")
    parts.append("<h2>Role changes</h2>")
    parts.append(_h_table(["block", "A", "B"], [[r.block, r.a, r.b] for r in c.role_changes])
                 if c.role_changes else "<p>No block changed role.</p>")
    if c.depth:
        parts += ["<h2>Effective depth</h2>",
                  _h_table(["stream", "A", "B", "Δ"], [_depth_row(d) for d in c.depth])]
    parts += [_h_chart(c), "<h2>Blocks</h2>", _h_blocks(c)]
    parts += [f'<p class="only">{e(line)}</p>' for line in _only(c)]
    body = "\n".join(p for p in parts if p)
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{e(_title(c))}</title></head><body>\n"
            f'<div class="resprobe-report"><style>{_STYLE_COMPARE}</style>{body}</div>\n</body></html>\n')


# Text


def _shown(text: str) -> str:
    """``text`` safe on a terminal: control characters written as escapes."""
    return "".join(x if x.isprintable() else ascii(x)[1:-1] for x in text)


def comparison_text(c: Comparison, rows: int = 8) -> str:
    """The console summary: A and B, what changed, and the blocks that changed most."""
    lines = [f"{side}: {_shown(source)} ({_shown(model)})" if source else f"{side}: {_shown(model)}"
             for side, source, model in (("A", c.source_a, c.model_a), ("B", c.source_b, c.model_b))]
    lines.append(f"{len(c.blocks)} block(s) in both, {len(c.only_a)} only in A, {len(c.only_b)} only in B")
    lines += (["what changed:", *(f"  - {_shown(s)}" for s in c.changes)] if c.changes else [_NOTHING])
    table = _text_table(c, rows)
    if table:
        lines += ["blocks that changed most:", *table]
    return "\n".join(lines)


def _moved(b: BlockComparison) -> float:
    return max((m.size for m in b.metrics if m.key in ("update_ratio", "branch_gain")), default=0.0)


def _text_table(c: Comparison, rows: int) -> list[str]:
    """The blocks whose update ratio or branch gain changed most (or whose role changed), aligned."""
    keys = [k for k in ("update_ratio", "branch_gain") if k in c.metrics]
    ranked = sorted((b for b in c.blocks if _moved(b) > 0 or b.role_changed), key=lambda b: -_moved(b))
    if not keys or not ranked:
        return []
    labels = [m.label for m in ranked[0].metrics if m.key in keys]
    table = [["block", "role", *labels]]
    for b in ranked[:rows]:
        role = f"{b.label_a} → {b.label_b}" if b.role_changed else (b.label_a or "–")
        found = [b.metric(k) for k in keys]
        table.append([_shown(b.name), _shown(role), *(change_text(m) if m else "–" for m in found)])
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    return ["  " + "  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip() for r in table]
