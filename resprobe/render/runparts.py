"""What run-report.html, run-report.md and the report command's summary share, computed from a Run."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import UsageError
from ..metrics import Metric, by_key
from ..runlog import Run, RunBlock, RunStep

__all__ = ["HEATMAPS", "MAX_COLUMNS", "Change", "DepthPoint", "blocks", "chosen_steps", "columns",
           "depth_series", "facts", "grid", "label", "measured", "metric", "notes", "profile",
           "role_changes", "subsampled", "summary_lines", "summary_rows"]

HEATMAPS = ("update_ratio", "block_influence", "branch_gain", "grad_norm")
_SUMMARY = ("update_ratio", "branch_gain", "grad_norm", "block_influence")
_PROBES = {"update_ratio": "refinement", "block_influence": "refinement", "branch_gain": "gradients",
           "grad_norm": "gradients"}
MAX_COLUMNS = 200  # measured steps a heatmap shows at most (evenly spaced above it)


@dataclass(frozen=True)
class Change:
    """A block's label changed: ``step`` is the first measured step where ``after`` held."""

    block: str
    stream: int
    before: str
    after: str
    step: int


@dataclass(frozen=True)
class DepthPoint:
    """One stream's effective depth at one step (None where it was not measured)."""

    step: int
    depth: float | None
    window: tuple[int, int] | None
    nominal: int


def metric(key: str) -> Metric:
    """The catalogue entry of a per-block key of a step record."""
    return by_key(_PROBES.get(key, "refinement"), key)


def blocks(run: Run) -> list[RunBlock]:
    """The blocks in stream order: by stream, then by position on it."""
    return sorted(run.header.blocks, key=lambda b: (b.stream, b.step))


def _every(run: Run) -> str:
    return f"every {run.header.every}" if run.header.every > 1 else "every step"


def measured(run: Run) -> str:
    """Which steps were measured, in words."""
    steps = run.steps
    if not steps:
        return "none: no step was measured"
    if len(steps) == 1:
        return f"1 (step {steps[0].step})"
    return f"{len(steps)}: steps {steps[0].step}–{steps[-1].step} ({_every(run)})"


def facts(run: Run) -> list[tuple[str, str]]:
    h, streams = run.header, run.header.streams()
    each = "; ".join(f"stream {sid}: {len(names)} block(s)" for sid, names in sorted(streams.items()))
    out = [("model", h.model),
           ("blocks", f"{len(h.blocks)} residual on {len(streams)} stream(s)"),
           ("streams", each or "none"),
           ("steps measured", measured(run)),
           ("processes", str(h.world_size) + (" (their numbers merged)" if h.world_size > 1 else ""))]
    if run.steps and run.steps[-1].samples:
        out.append(("samples per measured step", str(run.steps[-1].samples)))
    if h.started:
        out.append(("started", h.started))
    return out


def notes(run: Run) -> list[str]:
    """The header's notes, then each step's new notes (with the first step that said it)."""
    out = dict.fromkeys(str(n) for n in run.header.notes)
    seen = set(out)
    for s in run.steps:
        for n in map(str, s.notes):
            if n not in seen:
                seen.add(n)
                out[f"step {s.step}: {n}"] = None
    return list(out)


def subsampled(steps: Sequence[RunStep], limit: int = MAX_COLUMNS) -> list[RunStep]:
    """At most ``limit`` steps, evenly spaced, the first and the last included."""
    n = len(steps)
    if n <= limit:
        return list(steps)
    return [steps[round(k * (n - 1) / (limit - 1))] for k in range(limit)]


def columns(run: Run) -> tuple[list[RunStep], str]:
    """The heatmaps' columns and, when they are a subsample, a sentence that says so."""
    cols = subsampled(run.steps)
    if len(cols) == len(run.steps):
        return cols, ""
    return cols, (f"Showing {len(cols)} of {len(run.steps)} measured steps, evenly spaced "
                  f"(the first and the last included).")


def grid(run: Run, key: str, cols: Sequence[RunStep]) -> list[list[float | None]]:
    """One row per block (stream order), one value per column."""
    return [[s.value(b.name, key) for s in cols] for b in blocks(run)]


def label(step: RunStep, block: str) -> str | None:
    v = step.blocks.get(block, {}).get("label")
    return v if isinstance(v, str) else None


def role_changes(run: Run) -> list[Change]:
    """Every label change, block by block (stream order), steps without a label skipped."""
    out = []
    for b in blocks(run):
        last: str | None = None
        for s in run.steps:
            now = label(s, b.name)
            if now is not None and last is not None and now != last:
                out.append(Change(b.name, b.stream, last, now, s.step))
            last = now if now is not None else last
    return out


def chosen_steps(run: Run, steps: Sequence[int] | None = None) -> list[RunStep]:
    """The records of ``steps`` (default: the first, middle and last measured step)."""
    if not steps:
        n = len(run.steps)
        return [run.steps[k] for k in sorted({0, (n - 1) // 2, n - 1})] if n else []
    by_number = {s.step: s for s in run.steps}
    for k in steps:
        if k not in by_number:
            raise UsageError(f"step {k} was not measured in this run (measured: {measured(run)}); "
                             "pass a measured step")
    return [by_number[k] for k in dict.fromkeys(steps)]


def profile(step: RunStep, names: Sequence[str]) -> list[float | None]:
    """The gradient norm at each block's join along one stream, at one step."""
    return [step.value(n, "grad_norm") for n in names]


def _number(v: object) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def depth_series(run: Run) -> dict[int, list[DepthPoint]]:
    """Per stream (header order), its effective depth at every measured step."""
    streams = run.header.streams()
    out: dict[int, list[DepthPoint]] = {sid: [] for sid in sorted(streams)}
    for s in run.steps:
        by_id = {x.id: x for x in s.streams}
        for sid, points in out.items():
            x = by_id.get(sid)
            nominal = x.nominal if x is not None else len(streams[sid])
            depth = _number(x.effective_depth) if x is not None else None
            points.append(DepthPoint(s.step, depth, x.window if x is not None else None, nominal))
    return out


def _shown(v: float | str | None, fmt: str) -> str:
    if v is None:
        return "–"
    try:
        return fmt.format(v)
    except (TypeError, ValueError):
        return str(v)


def _first_last(run: Run, block: str, key: str) -> tuple[float | str | None, float | str | None]:
    if key == "label":
        got: list[float | str] = [x for x in (label(s, block) for s in run.steps) if x is not None]
    else:
        got = [x for x in (s.value(block, key) for s in run.steps) if x is not None]
    return (got[0], got[-1]) if got else (None, None)


def summary_rows(run: Run) -> tuple[list[str], list[list[str]]]:
    """Per block: the first and last measured value of the main metrics and of its label."""
    keys = [*_SUMMARY, "label"]
    headers = ["stream", "step", "block"] + [f"{metric(k).label} (first → last)" for k in keys]
    changes: dict[str, int] = {}
    for c in role_changes(run):
        changes[c.block] = changes.get(c.block, 0) + 1
    body = []
    for b in blocks(run):
        cells = [" → ".join(_shown(v, metric(k).fmt) for v in _first_last(run, b.name, k)) for k in keys]
        body.append([str(b.stream), str(b.step), b.name, *cells, str(changes.get(b.name, 0))])
    return headers + ["label changes"], body


def _depth_line(run: Run) -> str:
    parts = []
    for sid, points in depth_series(run).items():
        got = [p for p in points if p.depth is not None]
        if got:
            parts.append(f"stream {sid} {got[0].depth:.2f} → {got[-1].depth:.2f} of {got[-1].nominal} blocks")
        else:
            parts.append(f"stream {sid} not measured")
    return "effective depth, first → last: " + ("; ".join(parts) or "no stream")


def summary_lines(run: Run) -> list[str]:
    """A few lines of plain text: what was watched, the steps, depth and role changes."""
    h = run.header
    lines = [f"{h.model}: {len(h.blocks)} residual block(s) on {len(h.streams())} stream(s), "
             f"{h.world_size} process(es)", f"steps measured: {measured(run)}"]
    if run.steps:
        changes = role_changes(run)
        lines += [_depth_line(run), f"role changes: {len(changes)} in {len({c.block for c in changes})} "
                  "block(s)" if changes else "role changes: none"]
    return lines
