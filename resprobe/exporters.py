"""Built-in exporters (registered as entry points like any plugin): ``json`` (report.json),
``html`` (report.html, self-contained), ``md`` (report.md with SVG images) and ``svg`` (the
refinement diagram: report.svg and report.dot)."""

from __future__ import annotations

import json
from pathlib import Path

from .report import Report

__all__ = [
    "HtmlExporter",
    "JsonExporter",
    "MarkdownExporter",
    "SvgExporter",
    "html_exporter",
    "json_exporter",
    "markdown_exporter",
    "svg_exporter",
]


class JsonExporter:
    """Writes ``report.json``: the whole report, schema in docs/json.md."""

    name = "json"
    requires: tuple[str, ...] = ()
    install = ""

    def write(self, report: Report, directory: Path) -> Path:
        path = Path(directory) / "report.json"
        path.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path


json_exporter = JsonExporter()


class HtmlExporter:
    """Writes ``report.html``: one self-contained page (inline SVG, no network)."""

    name = "html"
    requires: tuple[str, ...] = ()
    install = ""

    def write(self, report: Report, directory: Path) -> Path:
        from .render.html import report_html

        path = Path(directory) / "report.html"
        path.write_text(report_html(report), encoding="utf-8")
        return path


class MarkdownExporter:
    """Writes ``report.md`` with ``report.svg`` and ``report-charts/*.svg`` beside it."""

    name = "md"
    requires: tuple[str, ...] = ()
    install = ""

    def write(self, report: Report, directory: Path) -> Path:
        from .render.markdown import write_markdown

        return write_markdown(report, Path(directory))


class SvgExporter:
    """Writes the refinement diagram: ``report.dot`` always, ``report.svg`` when it can be laid out."""

    name = "svg"
    requires: tuple[str, ...] = ()
    install = ""

    def write(self, report: Report, directory: Path) -> Path:
        from .render.html import diagram

        svg, dot, _ = diagram(report)
        (Path(directory) / "report.dot").write_text(dot, encoding="utf-8")
        if svg is None:
            return Path(directory) / "report.dot"
        path = Path(directory) / "report.svg"
        path.write_text(svg, encoding="utf-8")
        return path


html_exporter = HtmlExporter()
markdown_exporter = MarkdownExporter()
svg_exporter = SvgExporter()
