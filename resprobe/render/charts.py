"""Small self-contained SVG charts (bars and lines) for the HTML and Markdown reports. The plot
area is sized from its labels, so no text leaves the picture; a chart of one point is a number."""

from __future__ import annotations

import html
import math

__all__ = ["bar_chart", "line_chart", "text_width"]

_W, _H, _TOP = 640, 220, 30
_FONT = 11  # px, the tick labels
_COLOURS = ["#2c7bb6", "#d7191c", "#1a9641", "#7b3294", "#e66101"]
_NAME = 22  # characters of a block name under a bar, before an ellipsis


def text_width(text: str, size: float = _FONT) -> float:
    """A generous estimate of the width of ``text`` in Helvetica at ``size`` px."""
    return len(text) * size * 0.62


def _fmt(v: float) -> str:
    """Short, readable numbers: 3 significant digits, a compact exponent, a real minus sign."""
    if v == 0:
        return "0"
    text = f"{v:.2e}" if abs(v) < 1e-2 or abs(v) >= 1e4 else f"{v:.3g}"
    if "e" in text:
        mantissa, exp = text.split("e")
        text = f"{mantissa.rstrip('0').rstrip('.')}e{int(exp)}"
    return text.replace("-", "−")


def _ticks(lo: float, hi: float, log: bool) -> list[tuple[float, str]]:
    return [(f, _fmt(10 ** (lo + (hi - lo) * f) if log else lo + (hi - lo) * f)) for f in (0.0, 0.5, 1.0)]


class _Plot:
    """The frame: the left margin fits the widest tick label, the bottom one the x labels."""

    def __init__(self, title: str, lo: float, hi: float, log: bool, bottom: float, legend_rows: int = 0,
                 min_left: float = 0.0):
        self.lo, self.hi, self.log = lo, hi, log
        ticks = _ticks(lo, hi, log)
        self.left = max(10 + max(text_width(t) for _, t in ticks), min_left)
        self.top = _TOP + 14 * legend_rows
        self.bottom = _H - bottom
        self.out = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" '
            f'font-family="Helvetica, Arial, sans-serif" font-size="{_FONT}">',
            f'<text x="6" y="16" font-size="13" font-weight="bold">{html.escape(_clip(title, 80))}</text>',
            f'<line x1="{self.left:.1f}" y1="{self.bottom:.1f}" x2="{_W - 10}" y2="{self.bottom:.1f}" '
            'stroke="#999"/>',
            f'<line x1="{self.left:.1f}" y1="{self.top}" x2="{self.left:.1f}" y2="{self.bottom:.1f}" '
            'stroke="#999"/>',
        ]
        for frac, text in ticks:
            self.out.append(f'<text x="{self.left - 4:.1f}" y="{self.y_frac(frac) + 4:.1f}" '
                            f'text-anchor="end">{text}</text>')

    def y_frac(self, frac: float) -> float:
        return self.bottom - frac * (self.bottom - self.top)

    def y(self, v: float) -> float:
        return self.y_frac((v - self.lo) / (self.hi - self.lo))

    def svg(self) -> str:
        return "\n".join([*self.out, "</svg>"])


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else "…" + text[-(n - 1):]


def _scale(values: list[float | None], log: bool) -> tuple[list[float | None], float, float]:
    vs = [None if v is None or not math.isfinite(v) or (log and v <= 0) else (math.log10(v) if log else v)
          for v in values]
    got = [v for v in vs if v is not None]
    if not got:
        return vs, 0.0, 1.0
    lo, hi = min(got), max(got)
    if not log:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    return vs, lo, hi if hi > lo else lo + 1.0


def _number(title: str, label: str, value: float | None) -> str:
    """A chart with a single point says its number instead."""
    shown = "not measured" if value is None or not math.isfinite(value) else _fmt(value)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="60" viewBox="0 0 {_W} 60" '
            'font-family="Helvetica, Arial, sans-serif" font-size="13">'
            f'<text x="6" y="20" font-weight="bold">{html.escape(_clip(title, 80))}</text>'
            f'<text x="6" y="44">{html.escape(_clip(label, 40))}: {shown}</text></svg>')


def bar_chart(title: str, labels: list[str], values: list[float | None]) -> str:
    """One bar per label (None: no bar); labels under the axis when there is room."""
    if len(values) == 1:
        return _number(title, labels[0], values[0])
    vs, lo, hi = _scale(values, False)
    n = max(len(vs), 1)
    named = n <= 32
    shown = [_clip(label, _NAME) for label in labels]
    # names are turned 40°: their height (sin) sets the bottom margin, their width (cos) the left one
    longest = max((text_width(s, 9) for s in shown), default=0.0) if named else 0.0
    first = 0.77 * text_width(shown[0], 9) if named and shown else 0.0  # the first name, turned
    plot = _Plot(title, lo, hi, False, bottom=16 + 0.65 * longest if named else 20, min_left=first)
    width = (_W - plot.left - 14) / n
    zero = plot.y(0.0)
    for k, (label, v) in enumerate(zip(labels, vs)):
        x = plot.left + 2 + k * width
        if v is not None:
            y = plot.y(v)
            top, h = min(y, zero), abs(zero - y)
            plot.out.append(
                f'<rect x="{x:.1f}" y="{top:.1f}" width="{max(width - 2, 1):.1f}" height="{max(h, 0.5):.1f}" '
                f'fill="#2c7bb6"><title>{html.escape(label)}: {_fmt(values[k] or 0.0)}</title></rect>'
            )
        if named:
            cx = x + width / 2
            plot.out.append(
                f'<text x="{cx:.1f}" y="{plot.bottom + 12:.1f}" text-anchor="end" font-size="9" '
                f'transform="rotate(-40 {cx:.1f} {plot.bottom + 12:.1f})">{html.escape(shown[k])}</text>'
            )
    return plot.svg()


def line_chart(
    title: str, series: dict[str, list[float | None]], *, log: bool = False, x_label: str = "",
    x_ticks: list[str] | None = None,
) -> str:
    """One line per series over positions 0..n-1 (None: a gap), the legend above the plot."""
    n = max((len(v) for v in series.values()), default=1)
    if n <= 1:
        name, values = next(iter(series.items()), ("value", [None]))
        return _number(title, name, values[0] if values else None)
    flat = [v for vs in series.values() for v in vs]
    _, lo, hi = _scale(flat, log)
    plot = _Plot(title, lo, hi, log, bottom=34 if x_label else 22, legend_rows=1)
    step = (_W - plot.left - 20) / max(n - 1, 1)
    x = plot.left + 4
    for c, (name, values) in enumerate(series.items()):
        colour = _COLOURS[c % len(_COLOURS)]
        scaled, _, _ = _scale(values, log)
        points = [(plot.left + 4 + k * step, plot.y(v)) for k, v in enumerate(scaled) if v is not None]
        if points:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            plot.out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
            plot.out += [f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="{colour}"/>'
                         for px, py in points]
        label = _clip(name, 30)  # the legend: one row above the plot, never over the data
        if x + 14 + text_width(label) < _W:
            plot.out.append(f'<rect x="{x:.1f}" y="{_TOP - 2}" width="10" height="3" fill="{colour}"/>'
                            f'<text x="{x + 14:.1f}" y="{_TOP + 3}" fill="{colour}">'
                            f"{html.escape(label)}</text>")
        x += 24 + text_width(label)
    for k in sorted({0, n - 1, (n - 1) // 2}):
        tick = x_ticks[k] if x_ticks is not None and k < len(x_ticks) else str(k)
        plot.out.append(f'<text x="{plot.left + 4 + k * step:.1f}" y="{plot.bottom + 14:.1f}" '
                        f'text-anchor="middle">{html.escape(tick)}</text>')
    if x_label:
        plot.out.append(f'<text x="{_W / 2:.0f}" y="{_H - 6}" text-anchor="middle">'
                        f"{html.escape(x_label)}</text>")
    return plot.svg()
