"""The refinement view of a Report as Graphviz DOT: each residual stream a spine, each block a
box beside it labelled as a refinement step, coloured by a metric, repeats folded into "× N"."""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass
from typing import Any

from ..metrics import colour_metrics
from ..report import BlockReport, Report, StreamInfo

__all__ = ["METRICS", "refinement_dot"]

# --color-by name -> (probe, key, label, format), from the metric catalogue (resprobe/metrics.py)
METRICS: dict[str, tuple[str, str, str, str]] = {
    name: (m.probe, m.key, m.label, m.fmt_short) for name, m in colour_metrics().items()}
_MEANING = {name: m.unit for name, m in colour_metrics().items()}  # what each colour is, in the legend
_SHOWN = ("update_ratio", "block_influence", "branch_gain")
_PALETTE = ["#2c7bb6", "#abd9e9", "#ffffbf", "#fdae61", "#d7191c"]  # low -> high
FOLD_ABOVE = 24  # fold by default when a stream has more blocks than this


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _value(block: BlockReport, metric: str) -> float | None:
    probe, key, _, _ = METRICS[metric]
    numbers = block.metrics.get(probe)
    v = None if numbers is None else numbers.number(key)
    return v if v is not None and math.isfinite(v) else None


def _colour(v: float | None, lo: float, hi: float) -> str:
    if v is None:
        return "#eeeeee"
    t = 0.0 if hi <= lo else min(max((v - lo) / (hi - lo), 0.0), 1.0)
    return _PALETTE[min(int(t * len(_PALETTE)), len(_PALETTE) - 1)]


@dataclass
class _Unit:
    """One box: a block, or a layer of several blocks, or a folded run of repeats."""

    names: list[str]
    steps: list[int]
    signature: tuple[Any, ...]
    count: int = 1
    label: str = ""


def _signature(blocks: list[BlockReport], prefix: str) -> tuple[Any, ...]:
    """What a unit is made of, with its own name and every index taken out."""

    def strip(m: str) -> str:
        rel = m[len(prefix) :] if prefix and m.startswith(prefix) else m
        return re.sub(r"\d+", "#", rel)

    return tuple((b.skip, b.join, tuple(strip(m) for m in b.branch_modules)) for b in blocks)


def _units(
    stream: StreamInfo, by_name: dict[str, BlockReport], layers: list[Any]
) -> list[_Unit]:
    names = list(stream.blocks)
    groups: list[tuple[str, list[str]]] = []
    in_layer = {n: layer for layer in layers for n in layer["blocks"]}
    k = 0
    while k < len(names):
        layer = in_layer.get(names[k])
        if layer is not None and layer["blocks"][0] == names[k]:
            groups.append((layer["name"], list(layer["blocks"])))
            k += len(layer["blocks"])
        else:
            groups.append((names[k], [names[k]]))
            k += 1
    out = []
    for name, members in groups:
        blocks = [by_name[m] for m in members]
        prefix = re.sub(r"#\d+$", "", name) + "."
        out.append(_Unit(members, [int(b.step or 0) for b in blocks], _signature(blocks, prefix), 1, name))
    return out


def _fold(units: list[_Unit], least: int, longest: int = 4) -> list[_Unit]:
    """Runs of at least ``least`` consecutive repeats of one pattern of up to ``longest`` units
    (a block, or attention + MLP when no layers are known) become one unit "× N"."""
    out: list[_Unit] = []
    k = 0
    while k < len(units):
        best_p, best_r = 1, 1
        for p in range(1, longest + 1):
            pattern = [u.signature for u in units[k : k + p]]
            if len(pattern) < p:
                break
            r = 1
            while [u.signature for u in units[k + r * p : k + (r + 1) * p]] == pattern:
                r += 1
            if r >= least and r * p > best_r * best_p:
                best_p, best_r = p, r
        if best_r >= least:
            run = units[k : k + best_p * best_r]
            first, last = run[0].label, run[best_p - 1].label if best_p > 1 else run[0].label
            label = f"{first} … {run[-1].label}" if best_p == 1 else f"({first} … {last}) … {run[-1].label}"
            out.append(
                _Unit(
                    [n for u in run for n in u.names],
                    [s for u in run for s in u.steps],
                    tuple(sig for u in run[:best_p] for sig in u.signature),
                    best_r,
                    label,
                )
            )
            k += best_p * best_r
        else:
            out.append(units[k])
            k += 1
    return out


def _numbers(unit: _Unit, by_name: dict[str, BlockReport]) -> str:
    parts = []
    for metric in _SHOWN:
        values = [v for v in (_value(by_name[n], metric) for n in unit.names) if v is not None]
        if not values:
            continue
        _, _, label, fmt = METRICS[metric]
        if len(values) == 1:
            parts.append(f"{label} {fmt.format(values[0])}")
        else:
            parts.append(f"{label} {fmt.format(min(values))}–{fmt.format(max(values))}")
    return "\n".join(parts) if parts else "not measured"


def _unit_label(unit: _Unit, by_name: dict[str, BlockReport]) -> str:
    steps = f"step {unit.steps[0]}" if len(unit.steps) == 1 else f"steps {unit.steps[0]}–{unit.steps[-1]}"
    times = f" × {unit.count}" if unit.count > 1 else ""
    kinds = sorted({by_name[n].skip for n in unit.names} - {"identity"})
    extra = f" · {', '.join(kinds)} skip" if kinds else ""
    labels = [str(by_name[n].label) for n in unit.names if by_name[n].label]
    verdict = ""
    if labels:
        counts = ", ".join(f"{labels.count(k)} {k}" for k in ("refine", "rebuild", "idle") if labels.count(k))
        verdict = f"\n{counts}" if len(labels) > 1 else f"\n{labels[0]}"
    return f"{steps}{times} · {unit.label}{extra}{verdict}\n{_numbers(unit, by_name)}"


def refinement_dot(
    report: Report, *, color_by: str = "update_ratio", fold: bool | None = None, fold_min: int = 3
) -> str:
    """Deterministic DOT of ``report``'s residual streams. ``fold``: fold runs of at least
    ``fold_min`` consecutive units (layers, or blocks) of the same structure into one box
    (default: when a stream has more than ``FOLD_ABOVE`` blocks); skip edges stay drawn.
    ``color_by`` is one of ``METRICS``; unmeasured blocks are grey."""
    if color_by not in METRICS:
        raise ValueError(f"color_by must be one of {', '.join(METRICS)}, not {color_by!r}")
    by_name = {b.name: b for b in report.blocks}
    values = [v for v in (_value(b, color_by) for b in report.blocks) if v is not None]
    lo, hi = (min(values), max(values)) if values else (0.0, 0.0)
    layers = _layers(report)
    lines = [
        f"digraph {_quote(report.model.class_name or 'model')} {{",
        "  rankdir=TB; newrank=true; nodesep=0.3; ranksep=0.25;",
        '  fontname="Helvetica"; node [fontname="Helvetica", fontsize=10]; '
        'edge [arrowsize=0.6, fontname="Helvetica"];',
    ]
    for stream in report.streams:
        folding = fold if fold is not None else len(stream.blocks) > FOLD_ABOVE
        # --no-fold shows every block: no grouping into layers either
        units = _units(stream, by_name, [] if fold is False else layers.get(stream.id, []))
        lines += _stream(stream, _fold(units, fold_min) if folding else units, by_name, color_by, lo, hi)
    lines += _concat([b for b in report.blocks if not b.is_residual])
    lines += _legend(color_by, lo, hi, bool(values))
    lines.append("}")
    return "\n".join(lines) + "\n"


def _stream(
    stream: StreamInfo,
    units: list[_Unit],
    by_name: dict[str, BlockReport],
    color_by: str,
    lo: float,
    hi: float,
) -> list[str]:
    """One stream's cluster: the spine of states, and a box per unit beside it."""
    sid = stream.id
    n = len(stream.blocks)
    title = f"stream {sid} · {n} block{'' if n == 1 else 's'}"
    dot = '[shape=circle, width=0.12, label="", style=filled, fillcolor="#555555"];'
    lines = [
        f"  subgraph cluster_s{sid} {{",
        f'    label={_quote(title)}; fontname="Helvetica"; fontsize=11; color="#cccccc";',
        f"    s{sid}_0 {dot}",
    ]
    for k, unit in enumerate(units, 1):
        v = [x for x in (_value(by_name[n], color_by) for n in unit.names) if x is not None]
        fill = _colour(sum(v) / len(v) if v else None, lo, hi)
        shape = "box3d" if unit.count > 1 else "box"
        labels = {by_name[n].label for n in unit.names}
        border = ', penwidth=2.5, color="#b2182b"' if "rebuild" in labels else ""  # seen without colour
        skips = {by_name[n].skip for n in unit.names}
        spine = (
            'color="#e66101", style=dashed, penwidth=2, label=" projection", fontsize=9'
            if "projection" in skips
            else 'color="#555555", penwidth=3'
        )
        lines += [
            f'    s{sid}_b{k} [shape={shape}, style="rounded,filled", fillcolor="{fill}"{border}, '
            f"label={_quote(_unit_label(unit, by_name))}];",
            f"    s{sid}_{k} {dot}",
            f"    s{sid}_{k - 1} -> s{sid}_{k} [{spine}, weight=10];",
            f'    s{sid}_{k - 1} -> s{sid}_b{k} [color="#888888"];',
            f'    s{sid}_b{k} -> s{sid}_{k} [color="#888888"];',
            f"    {{rank=same; s{sid}_{k - 1}; s{sid}_b{k};}}",
        ]
    return [*lines, "  }"]


def _concat(concat: list[BlockReport]) -> list[str]:
    """Concat skips (DenseNet, U-Net): a dotted cluster of their own, each box naming what is
    concatenated with what: the module whose output the skip carries → where it is joined."""
    if not concat:
        return []
    lines = [
        "  subgraph cluster_concat {",
        f'    label={_quote(f"concat skips · {len(concat)}")}; fontname="Helvetica"; fontsize=11; '
        'color="#cccccc";',
    ]
    for k, b in enumerate(concat):
        into = b.module or "(top level)"
        label = f"{b.name}\n{b.fork_module or '(top level)'} → {into}"
        lines.append(f'    c{k} [shape=box, style="rounded,dotted", label={_quote(label)}];')
        if k:
            lines.append(f"    c{k - 1} -> c{k} [style=invis];")  # stacks the boxes; no flow between them
    return [*lines, "  }"]


def _layers(report: Report) -> dict[int, list[Any]]:
    refinement = report.result("refinement")
    if refinement is None:
        return {}
    return {s["id"]: s.get("layers", []) for s in refinement.summary.get("streams", [])}


def _legend(metric: str, lo: float, hi: float, measured: bool) -> list[str]:
    """The colour scale with the metric's name, definition and tick values, and how the
    verdict shows without colour."""
    _, _, label, fmt = METRICS[metric]
    if not measured:
        return [f"  legend [shape=note, fontsize=9, label={_quote(f'colour: {label} (not measured)')}];"]
    e = html.escape
    k = len(_PALETTE)
    cells = "".join(f'<td bgcolor="{c}" width="34" height="12"> </td>' for c in _PALETTE)
    ticks = "".join(f'<td><font point-size="8">{e(fmt.format(lo + (hi - lo) * (j + 0.5) / k))}</font></td>'
                    for j in range(k))
    title = f"colour: {label} ({_MEANING[metric]}), low → high"
    verdict = "each box names its verdict (refine / rebuild / idle); rebuild boxes have a thick red border"
    return [
        f'  legend [shape=plaintext, fontsize=9, label=<<table border="0" cellspacing="1">'
        f'<tr><td colspan="{k}"><b>{e(title)}</b></td></tr><tr>{cells}</tr><tr>{ticks}</tr>'
        f'<tr><td colspan="{k}">{e(verdict)}</td></tr></table>>];'
    ]
