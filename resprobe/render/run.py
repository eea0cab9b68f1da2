"""run-report.html and run-report.md: a watched training run (resprobe-run.jsonl) as one page."""

from __future__ import annotations

import html
from collections.abc import Sequence

from .._version import __version__
from ..runlog import FORMAT, Run, RunStep
from . import runparts as rp
from .heatmap import heatmap
from .html import _STYLE
from .markdown import _escape as md
from .parts import html_table
from .runcharts import depth_chart, gradient_chart

__all__ = ["run_html", "run_markdown"]

_NO_STEPS = "No step was measured: the run record holds its header only (the run may have stopped first)."
_HEATMAP_TEXT = ("Rows are the blocks in stream order (a dark line between streams), columns the measured "
                 "steps; hover a cell for its value. Hatched grey cells were not measured.")
_DEPTH_TEXT = ("The mean path length of the gradient per stream (effective depth), its central 90% window "
               "as a band, and the stream's nominal depth (its number of blocks) dashed.")
_EXTRA_STYLE = ".resprobe-report th{cursor:auto}.resprobe-report .heatmap{margin:10px 0}"
_CHANGE_ROWS = 200  # role-change rows shown at most


def _legend(key: str) -> str:
    m = rp.metric(key)
    return f"{m.label} ({m.unit})"


def _heatmaps(run: Run) -> tuple[list[str], str]:
    """Per main metric an SVG heatmap, and the sentence saying the columns are a subsample."""
    cols, note = rp.columns(run)
    rows = [(b.name, b.stream) for b in rp.blocks(run)]
    steps = [s.step for s in cols]
    return [heatmap(f"{rp.metric(k).label} per block and step", rows, steps, rp.grid(run, k, cols),
                    legend=_legend(k), log=True if k == "grad_norm" else None, uid=f"resprobe-run-{k}")
            for k in rp.HEATMAPS], note


def _depth_charts(run: Run) -> list[tuple[int, str | None]]:
    return [(sid, depth_chart(sid, points)) for sid, points in rp.depth_series(run).items()]


def _gradient_charts(run: Run, chosen: Sequence[RunStep]) -> list[tuple[int, str | None]]:
    return [(sid, gradient_chart(sid, names, chosen)) for sid, names in sorted(run.header.streams().items())]


def _changes(run: Run) -> tuple[str, list[list[str]]]:
    """The sentence over the role-change table and its rows (at most ``_CHANGE_ROWS``)."""
    changes = rp.role_changes(run)
    if not changes:
        return "No block changed its label (refine, rebuild, idle) during the run.", []
    blocks = len({c.block for c in changes})
    said = f"{len(changes)} label change(s) in all, in {blocks} of {len(run.header.blocks)} block(s)"
    if len(changes) > _CHANGE_ROWS:
        said += f"; the first {_CHANGE_ROWS} are listed"
    rows = [[c.block, str(c.stream), c.before, c.after, str(c.step)] for c in changes[:_CHANGE_ROWS]]
    return said + ". The step is the first measured step where the new label held.", rows


_CHANGE_HEADERS = ["block", "stream", "from", "to", "at step"]


_html_table = html_table


def _html_charts(charts: list[tuple[int, str | None]], missing: str) -> str:
    return "".join(f'<div class="chart">{svg}</div>' if svg else f'<p class="note">{html.escape(missing)} '
                   f"{sid}.</p>" for sid, svg in charts)


def _html_top(run: Run) -> list[str]:
    e = html.escape
    facts = "".join(f"<tr><td><b>{e(k)}</b></td><td>{e(v)}</td></tr>" for k, v in rp.facts(run))
    parts = [f"<h1>resprobe run: {e(run.header.model)}</h1>", f'<table class="facts">{facts}</table>']
    said = rp.notes(run)
    if said:
        parts.append("<h3>Notes</h3><ul>" + "".join(f"<li>{e(n)}</li>" for n in said) + "</ul>")
    return parts


def _html_body(run: Run, steps: Sequence[int] | None) -> list[str]:
    chosen = rp.chosen_steps(run, steps)
    maps, note = _heatmaps(run)
    said, changes = _changes(run)
    headers, rows = rp.summary_rows(run)
    at = ", ".join(str(s.step) for s in chosen)
    return ["<h2>Metrics over training</h2>", f"<p>{html.escape(_HEATMAP_TEXT)}</p>",
            *([f'<p class="note">{html.escape(note)}</p>'] if note else []),
            *(f'<div class="scroll heatmap">{svg}</div>' for svg in maps),
            "<h2>Effective depth over training</h2>", f"<p>{html.escape(_DEPTH_TEXT)}</p>",
            _html_charts(_depth_charts(run), "Effective depth was not measured for stream"),
            "<h2>Gradient norm along depth</h2>", f"<p>At steps {html.escape(at)}.</p>",
            _html_charts(_gradient_charts(run, chosen), "No gradient norm was measured along stream"),
            "<h2>Role changes</h2>", f"<p>{html.escape(said)}</p>",
            *([_html_table(_CHANGE_HEADERS, changes)] if changes else []),
            "<h2>Blocks: first and last measured value</h2>", _html_table(headers, rows)]


def run_html(run: Run, steps: Sequence[int] | None = None) -> str:
    """The run report as one self-contained HTML page (inline CSS and SVG, no script);
    ``steps``: where to draw the gradient along depth (default: first, middle, last)."""
    e = html.escape
    body = _html_body(run, steps) if run.steps else [f'<p class="note">{e(_NO_STEPS)}</p>']
    version = f"<p><small>resprobe {e(__version__)} · run record format {FORMAT}</small></p>"
    parts = [*_html_top(run), *body, version]
    style = f"<style>{_STYLE}{_EXTRA_STYLE}</style>"
    fragment = f'<div class="resprobe-report">{style}' + "\n".join(parts) + "</div>"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>resprobe run: '
            f"{e(run.header.model)}</title></head><body>\n{fragment}\n</body></html>\n")


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return (["| " + " | ".join(md(h) for h in headers) + " |", "|" + " --- |" * len(headers)]
            + ["| " + " | ".join(md(c) for c in r) + " |" for r in rows] + [""])


def _md_svg(charts: list[tuple[int, str | None]], missing: str) -> list[str]:
    """Inline SVG, each in a ``div`` of its own (raw HTML to Markdown), or a sentence."""
    return [f'<div class="chart">\n{svg}\n</div>\n' if svg else f"{md(missing)} {sid}.\n"
            for sid, svg in charts]


def _md_value(step: RunStep, block: str, key: str) -> str:
    v = step.value(block, key)
    return "–" if v is None else rp.metric(key).fmt.format(v)


def _md_heatmaps(run: Run) -> list[str]:
    chosen = rp.chosen_steps(run)
    out = ["## Metrics over training", "",
           md("Each metric per block at the first, middle and last measured step (the HTML report draws "
              "every measured step as a heatmap)."), ""]
    for key in rp.HEATMAPS:
        rows = [[str(b.stream), b.name, *(_md_value(s, b.name, key) for s in chosen)] for b in rp.blocks(run)]
        out += [f"### {md(_legend(key))}", ""]
        out += _md_table(["stream", "block", *(f"step {s.step}" for s in chosen)], rows)
    return out


def _md_body(run: Run, steps: Sequence[int] | None) -> list[str]:
    chosen = rp.chosen_steps(run, steps)
    said, changes = _changes(run)
    headers, rows = rp.summary_rows(run)
    return [*_md_heatmaps(run), "## Effective depth over training", "", md(_DEPTH_TEXT), "",
            *_md_svg(_depth_charts(run), "Effective depth was not measured for stream"),
            "## Gradient norm along depth", "", md(f"At steps {', '.join(str(s.step) for s in chosen)}."), "",
            *_md_svg(_gradient_charts(run, chosen), "No gradient norm was measured along stream"),
            "## Role changes", "", md(said), "", *(_md_table(_CHANGE_HEADERS, changes) if changes else []),
            "## Blocks: first and last measured value", "", *_md_table(headers, rows)]


def run_markdown(run: Run, steps: Sequence[int] | None = None) -> str:
    """The run report as Markdown for a docs site: tables, and the line charts as inline SVG."""
    lines = [f"# resprobe run: {md(run.header.model)}", ""]
    lines += [f"- **{md(k)}**: {md(v)}" for k, v in rp.facts(run)] + [""]
    said = rp.notes(run)
    if said:
        lines += ["### Notes", ""] + [f"- {md(n)}" for n in said] + [""]
    lines += _md_body(run, steps) if run.steps else [md(_NO_STEPS), ""]
    return "\n".join([*lines, md(f"resprobe {__version__} · run record format {FORMAT}"), ""])
