"""report.md: the report as Markdown for docs sites, with the diagram and charts as SVG files."""

from __future__ import annotations

import html
import re
from pathlib import Path

from ..report import Report
from .parts import charts, diagram, facts, not_measured, notes, readouts, rows

__all__ = ["write_markdown"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
# What Markdown (and Python-Markdown's tables, attr_list) acts on inside a line: code, emphasis,
# links and images, attribute lists, closing # of a heading, table cells. ``<`` and ``&`` become
# entities (no raw HTML, no autolinks).
_ACTIVE = re.compile(r"([\\`*_{}\[\]()#!|])")


def _escape(text: object) -> str:
    """``text`` (from the model: names, notes, paths) as literal Markdown on one line."""
    plain = html.escape(_CONTROL.sub(" ", str(text)), quote=False)
    return _ACTIVE.sub(r"\\\1", plain)


def write_markdown(report: Report, directory: Path, stem: str = "report") -> Path:
    """Write ``<stem>.md``, ``<stem>.svg`` (or ``<stem>.dot`` when it cannot be laid out) and
    ``<stem>-charts/*.svg`` into ``directory``; returns the Markdown file."""
    directory = Path(directory)
    lines = [f"# resprobe report: {_escape(report.model.class_name)}", ""]
    lines += [f"- **{_escape(k)}**: {_escape(v)}" for k, v in facts(report)]
    missing = not_measured(report)
    if missing:
        lines += ["", f"Not measured: {_escape(', '.join(missing))}."]
    svg, dot, note = diagram(report)
    lines += ["", "## Residual streams", ""]
    if svg is not None:
        (directory / f"{stem}.svg").write_text(svg, encoding="utf-8")
        lines.append(f"![refinement view]({stem}.svg)")
    else:
        (directory / f"{stem}.dot").write_text(dot, encoding="utf-8")
        lines.append(f"The diagram could not be laid out ({_escape(note)}); its source is "
                     f"[{stem}.dot]({stem}.dot).")
    headers, body = rows(report)
    lines += ["", "## Blocks", "", "| " + " | ".join(_escape(h) for h in headers) + " |",
              "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(_escape(c) for c in row) + " |" for row in body]
    for title, heads, table in readouts(report):
        lines += ["", "## Prediction along depth", "", _escape(title), "",
                  "| " + " | ".join(_escape(h) for h in heads) + " |", "|" + " --- |" * len(heads)]
        lines += ["| " + " | ".join(_escape(c) for c in row) + " |" for row in table]
    made = charts(report)
    if made:
        folder = directory / f"{stem}-charts"
        folder.mkdir(exist_ok=True)
        lines += ["", "## Charts", ""]
        for name, chart in made:
            (folder / f"{name}.svg").write_text(chart, encoding="utf-8")
            lines.append(f"![{name}]({stem}-charts/{name}.svg)")
    said = notes(report)
    if said:
        lines += ["", "## Notes", ""] + [f"- {_escape(n)}" for n in said]
    lines += ["", f"resprobe {report.resprobe_version} · report schema {report.schema}", ""]
    path = directory / f"{stem}.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
