"""Built-in exporters (registered as entry points like any plugin): ``json`` writes report.json."""

from __future__ import annotations

import json
from pathlib import Path

from .report import Report

__all__ = ["JsonExporter", "json_exporter"]


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
