"""Block × step heatmaps as self-contained SVG: a colour scale (linear or log10) with its legend."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .charts import _clip, _fmt, text_width
from .refinement import _PALETTE

__all__ = ["Scale", "heatmap", "scale"]

_PLOT_W = 800  # px: the columns share it (thin cells when many), up to _CELL each
_CELL = 24
_NAME = 28  # characters of a block name on the left, before an ellipsis
_TOP = 64
_FONT = 9
_NA = "#e6e6e6"  # a missing value: this grey, hatched


@dataclass(frozen=True)
class Scale:
    """Values from ``lo`` to ``hi`` (their log10 when ``log``) onto the palette, low to high."""

    lo: float
    hi: float
    log: bool

    def position(self, v: float) -> float:
        x = math.log10(v) if self.log and v > 0 else (-math.inf if self.log else v)
        return min(max((x - self.lo) / (self.hi - self.lo), 0.0), 1.0)

    def colour(self, v: float) -> str:
        return _blend(self.position(v))

    def ticks(self) -> list[tuple[float, str]]:
        """(position 0..1, label) at the ends and the middle."""
        at = [(f, self.lo + (self.hi - self.lo) * f) for f in (0.0, 0.5, 1.0)]
        return [(f, _fmt(10**x if self.log else x)) for f, x in at]

    @property
    def name(self) -> str:
        return "log10 colour scale" if self.log else "linear colour scale"


def scale(values: Iterable[float | None], *, log: bool | None = None) -> Scale:
    """The scale over the finite ``values``; ``log=None``: log10 when they are all positive and
    span more than two decades, else linear."""
    got = [v for v in values if v is not None and math.isfinite(v)]
    if log is None:
        log = bool(got) and min(got) > 0 and max(got) / min(got) > 100
    if log:
        got = [math.log10(v) for v in got if v > 0]
    lo, hi = (min(got), max(got)) if got else (0.0, 1.0)
    if hi <= lo:  # one value: it sits in the middle of the scale
        pad = abs(lo) * 0.5 or 0.5
        lo, hi = lo - pad, hi + pad
    return Scale(lo, hi, log)


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def _blend(t: float) -> str:
    """The palette read continuously at ``t`` in 0..1."""
    x = t * (len(_PALETTE) - 1)
    k = min(int(x), len(_PALETTE) - 2)
    a, b, f = _rgb(_PALETTE[k]), _rgb(_PALETTE[k + 1]), x - k
    return "#" + "".join(f"{round(p + (q - p) * f):02x}" for p, q in zip(a, b))


def _defs(uid: str) -> str:
    last = len(_PALETTE) - 1
    stops = "".join(f'<stop offset="{k / last:.2f}" stop-color="{c}"/>' for k, c in enumerate(_PALETTE))
    return (f'<defs><linearGradient id="{uid}-scale">{stops}</linearGradient>'
            f'<pattern id="{uid}-na" width="4" height="4" patternUnits="userSpaceOnUse" '
            f'patternTransform="rotate(45)"><rect width="4" height="4" fill="{_NA}"/>'
            '<line x1="0" y1="0" x2="0" y2="4" stroke="#aaaaaa" stroke-width="1.5"/></pattern></defs>')


def _legend(uid: str, title: str, legend: str, sc: Scale) -> list[str]:
    """The title, then the colour bar with its ticks, its name and the missing-value swatch."""
    out = [f'<text x="6" y="16" font-size="13" font-weight="bold">{html.escape(_clip(title, 100))}</text>',
           f'<rect x="8" y="26" width="200" height="10" fill="url(#{uid}-scale)" stroke="#999"/>']
    for f, text in sc.ticks():
        anchor = ("start", "middle", "end")[round(f * 2)]
        out.append(f'<text x="{8 + 200 * f:.1f}" y="48" text-anchor="{anchor}">{text}</text>')
    out.append(f'<text x="218" y="35">{html.escape(f"{legend}, {sc.name}")}</text>')
    x = 226 + text_width(f"{legend}, {sc.name}", _FONT)
    out.append(f'<rect x="{x:.1f}" y="26" width="10" height="10" fill="url(#{uid}-na)" stroke="#999"/>'
               f'<text x="{x + 14:.1f}" y="35">not measured</text>')
    return out


@dataclass(frozen=True)
class _Frame:
    left: float
    cell: float
    row: float
    rows: int
    cols: int

    @property
    def right(self) -> float:
        return self.left + self.cell * self.cols

    @property
    def bottom(self) -> float:
        return _TOP + self.row * self.rows


def _frame(names: Sequence[str], cols: int) -> _Frame:
    n = max(len(names), 1)
    left = 10 + max((text_width(_clip(s, _NAME), _FONT) for s in names), default=0.0)
    row = 12.0 if n <= 50 else max(600 / n, 2.0)
    return _Frame(max(left, 60.0), min(_PLOT_W / max(cols, 1), _CELL), row, len(names), cols)


def _cells(fr: _Frame, uid: str, rows: Sequence[tuple[str, int]], steps: Sequence[int],
           values: Sequence[Sequence[float | None]], sc: Scale) -> list[str]:
    out = ['<g shape-rendering="crispEdges">']
    w, h = f"{fr.cell:.2f}", f"{fr.row:.2f}"
    for r, ((name, _), vals) in enumerate(zip(rows, values)):
        y = f"{_TOP + r * fr.row:.2f}"
        for c, (step, v) in enumerate(zip(steps, vals)):
            fill = f"url(#{uid}-na)" if v is None else sc.colour(v)
            said = "not measured" if v is None else repr(v)
            out.append(f'<rect x="{fr.left + c * fr.cell:.2f}" y="{y}" width="{w}" height="{h}" '
                       f'fill="{fill}"><title>{html.escape(name)} · step {step}: {said}</title></rect>')
    return [*out, "</g>"]


def _rows_axis(fr: _Frame, rows: Sequence[tuple[str, int]]) -> list[str]:
    """Block names on the left (every k-th when rows are thin), stream boundaries and names."""
    every = max(1, math.ceil(10 / fr.row))
    out = [f'<text x="{fr.left - 4:.1f}" y="{_TOP + (r + 0.5) * fr.row + 3:.1f}" text-anchor="end">'
           f"{html.escape(_clip(name, _NAME))}</text>" for r, (name, _) in enumerate(rows) if r % every == 0]
    starts = [r for r in range(len(rows)) if r == 0 or rows[r][1] != rows[r - 1][1]]
    for k, r in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else len(rows)
        y0, y1 = _TOP + r * fr.row, _TOP + end * fr.row
        if r:
            out.append(f'<line x1="0" y1="{y0:.2f}" x2="{fr.right + 4:.1f}" y2="{y0:.2f}" stroke="#222" '
                       'stroke-width="1.5"/>')
        out.append(f'<text x="{fr.right + 6:.1f}" y="{(y0 + y1) / 2 + 3:.1f}">stream {rows[r][1]}</text>')
    return out


def _steps_axis(fr: _Frame, steps: Sequence[int]) -> list[str]:
    """Step numbers under a few columns (as many as fit, up to five), and the axis name."""
    room = text_width(str(max(steps, default=0)), _FONT) + 8
    fit = max(1, min(5, int(fr.cell * fr.cols // room)))
    picks = sorted({round(k * (len(steps) - 1) / max(fit - 1, 1)) for k in range(fit)}) if steps else []
    out = [f'<text x="{fr.left + (c + 0.5) * fr.cell:.1f}" y="{fr.bottom + 12:.1f}" text-anchor="middle">'
           f"{steps[c]}</text>" for c in picks]
    out.append(f'<text x="{(fr.left + fr.right) / 2:.1f}" y="{fr.bottom + 26:.1f}" text-anchor="middle">'
               "step</text>")
    return out


def heatmap(title: str, rows: Sequence[tuple[str, int]], steps: Sequence[int],
            values: Sequence[Sequence[float | None]], *, legend: str, log: bool | None = None,
            uid: str = "heatmap") -> str:
    """One row per (block name, stream) in stream order, one column per step; ``legend`` names
    the metric and its unit; ``uid`` makes the SVG's ids unique on a page holding several."""
    sc = scale((v for row in values for v in row), log=log)
    fr = _frame([name for name, _ in rows], len(steps))
    width = max(fr.right + 70, 226 + text_width(f"{legend}, {sc.name}", _FONT) + 90)
    height = fr.bottom + 34
    return "\n".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="Helvetica, Arial, sans-serif" '
        f'font-size="{_FONT}">',
        _defs(uid), *_legend(uid, title, legend, sc),
        f'<text x="{fr.left - 4:.1f}" y="{_TOP - 4}" text-anchor="end" font-style="italic">block</text>',
        *_cells(fr, uid, rows, steps, values, sc), *_rows_axis(fr, rows), *_steps_axis(fr, steps), "</svg>"])
