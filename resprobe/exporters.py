"""Built-in exporters (registered as entry points like any plugin): ``json`` (report.json),
``html`` (report.html, self-contained), ``md`` (report.md with SVG images) and ``svg`` (the
refinement diagram: report.svg and report.dot).

An exporter may list in ``writes`` the paths it writes inside the report folder (``*``
patterns allowed): ``Report.save`` replaces a folder that holds only such files, and refuses
one that holds anything else."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import UsageError
from .render.html import report_html
from .render.markdown import write_markdown
from .render.parts import diagram
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
    writes: tuple[str, ...] = ("report.json",)

    def write(self, report: Report, directory: Path) -> Path:
        try:  # strict JSON: NaN and inf are not JSON (resprobe.analyze writes them as null)
            text = json.dumps(report.to_dict(), indent=2, allow_nan=False)
        except ValueError:
            raise UsageError("cannot write report.json: the report holds NaN or inf, which JSON "
                                "cannot represent; replace them with None (resprobe.analyze does)") from None
        path = Path(directory) / "report.json"
        path.write_text(text + "\n", encoding="utf-8")
        return path


json_exporter = JsonExporter()


class HtmlExporter:
    """Writes ``report.html``: one self-contained page (inline SVG, no network)."""

    name = "html"
    requires: tuple[str, ...] = ()
    install = ""
    writes: tuple[str, ...] = ("report.html",)

    def write(self, report: Report, directory: Path) -> Path:
        path = Path(directory) / "report.html"
        path.write_text(report_html(report), encoding="utf-8")
        return path

    def fragment(self, report: Report) -> str:
        """The report as an HTML fragment (styles scoped to it) for a notebook: ``Report._repr_html_``."""
        return report_html(report, full=False)


class MarkdownExporter:
    """Writes ``report.md`` with ``report.svg`` and ``report-charts/*.svg`` beside it."""

    name = "md"
    requires: tuple[str, ...] = ()
    install = ""
    writes: tuple[str, ...] = ("report.md", "report.svg", "report.dot", "report-charts/*.svg")

    def write(self, report: Report, directory: Path) -> Path:
        return write_markdown(report, Path(directory))


class SvgExporter:
    """Writes the refinement diagram: ``report.dot`` always, ``report.svg`` when it can be laid out."""

    name = "svg"
    requires: tuple[str, ...] = ()
    install = ""
    writes: tuple[str, ...] = ("report.svg", "report.dot")

    def write(self, report: Report, directory: Path) -> Path:
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
