"""Report: the plain-data result of an analysis, with a versioned JSON form (``report.json``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._version import __version__
from .errors import UsageError

__all__ = ["SCHEMA", "ProbeResult", "Report"]

SCHEMA = 2


@dataclass(frozen=True)
class ProbeResult:
    """What one probe measured: summary numbers, numbers per block (by block name), notes on
    what it skipped or approximated."""

    probe: str
    summary: dict[str, Any] = field(default_factory=dict)
    blocks: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"probe": self.probe, "summary": dict(self.summary),
                "blocks": {k: dict(v) for k, v in self.blocks.items()}, "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProbeResult:
        blocks = {k: dict(v) for k, v in d.get("blocks", {}).items()}
        return cls(d["probe"], dict(d.get("summary", {})), blocks, tuple(d.get("notes", ())))


@dataclass(frozen=True)
class Report:
    """Everything an analysis found; see docs/json.md for the schema."""

    model: dict[str, Any]
    graph: dict[str, Any]
    streams: list[dict[str, Any]]
    blocks: list[dict[str, Any]]
    results: list[ProbeResult] = field(default_factory=list)
    notes: tuple[str, ...] = ()
    objective: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    resprobe_version: str = __version__
    schema: int = SCHEMA

    def _repr_html_(self) -> str:
        """The HTML report, for Jupyter."""
        from .render.html import report_html

        return report_html(self, full=False)

    def result(self, probe: str) -> ProbeResult | None:
        return next((r for r in self.results if r.probe == probe), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema, "resprobe_version": self.resprobe_version,
            "model": dict(self.model), "graph": dict(self.graph),
            "streams": [dict(s) for s in self.streams], "blocks": [dict(b) for b in self.blocks],
            "results": [r.to_dict() for r in self.results], "notes": list(self.notes),
            "objective": None if self.objective is None else dict(self.objective),
            "data": None if self.data is None else dict(self.data),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Report:
        if d.get("schema") != SCHEMA:
            raise UsageError(f"report schema {d.get('schema')!r} is not {SCHEMA}; "
                             f"it was written by resprobe {d.get('resprobe_version', '?')}")
        return cls(dict(d["model"]), dict(d["graph"]), [dict(s) for s in d["streams"]],
                   [dict(b) for b in d["blocks"]], [ProbeResult.from_dict(r) for r in d["results"]],
                   tuple(d.get("notes", ())), d.get("objective"), d.get("data"),
                   d["resprobe_version"], d["schema"])

    def save(self, directory: str | Path, formats: tuple[str, ...] = ("json",),
             plugins: Any = None) -> list[Path]:
        """Write the report with each exporter in ``formats``; returns the paths written."""
        from .plugins import registry

        reg = plugins if plugins is not None else registry()
        exporters = [reg.get("exporter", f) for f in formats]
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        return [Path(e.write(self, out)) for e in exporters]
