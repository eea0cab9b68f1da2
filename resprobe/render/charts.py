"""Small self-contained SVG charts (bars and lines) for the HTML and Markdown reports."""

from __future__ import annotations

import html
import math

__all__ = ["bar_chart", "line_chart"]

_W, _H, _PAD = 640, 220, 44
_COLOURS = ["#2c7bb6", "#d7191c", "#1a9641", "#7b3294", "#e66101"]


def _frame(title: str, lo: float, hi: float, log: bool) -> list[str]:
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" '
        'font-family="Helvetica, Arial, sans-serif" font-size="11">',
        f'<text x="{_PAD}" y="16" font-size="13" font-weight="bold">{html.escape(title)}</text>',
        f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - 10}" y2="{_H - _PAD}" stroke="#999"/>',
        f'<line x1="{_PAD}" y1="28" x2="{_PAD}" y2="{_H - _PAD}" stroke="#999"/>',
    ]
    for frac in (0.0, 0.5, 1.0):
        v = lo + (hi - lo) * frac
        shown = 10**v if log else v
        y = _H - _PAD - frac * (_H - _PAD - 28)
        out.append(f'<text x="{_PAD - 4}" y="{y + 4:.1f}" text-anchor="end">{_fmt(shown)}</text>')
    return out


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    return f"{v:.2e}" if abs(v) < 1e-2 or abs(v) >= 1e4 else f"{v:.3g}"


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


def bar_chart(title: str, labels: list[str], values: list[float | None]) -> str:
    """One bar per label (None: no bar); labels under the axis when there is room."""
    vs, lo, hi = _scale(values, False)
    out = _frame(title, lo, hi, False)
    n = max(len(vs), 1)
    width = (_W - _PAD - 14) / n
    zero = _H - _PAD - (0 - lo) / (hi - lo) * (_H - _PAD - 28)
    for k, (label, v) in enumerate(zip(labels, vs)):
        x = _PAD + 2 + k * width
        if v is not None:
            y = _H - _PAD - (v - lo) / (hi - lo) * (_H - _PAD - 28)
            top, h = min(y, zero), abs(zero - y)
            out.append(
                f'<rect x="{x:.1f}" y="{top:.1f}" width="{max(width - 2, 1):.1f}" height="{max(h, 0.5):.1f}" '
                f'fill="#2c7bb6"><title>{html.escape(label)}: {_fmt(values[k] or 0.0)}</title></rect>'
            )
        if n <= 32:
            out.append(
                f'<text x="{x + width / 2:.1f}" y="{_H - _PAD + 12}" text-anchor="end" font-size="9" '
                f'transform="rotate(-40 {x + width / 2:.1f} {_H - _PAD + 12})">'
                f"{html.escape(label[-18:])}</text>"
            )
    out.append("</svg>")
    return "\n".join(out)


def line_chart(
    title: str, series: dict[str, list[float | None]], *, log: bool = False, x_label: str = "",
    x_ticks: list[str] | None = None,
) -> str:
    """One line per series over positions 0..n-1 (None: a gap); a legend in the corner."""
    flat = [v for vs in series.values() for v in vs]
    _, lo, hi = _scale(flat, log)
    out = _frame(title, lo, hi, log)
    n = max((len(v) for v in series.values()), default=1)
    step = (_W - _PAD - 20) / max(n - 1, 1)
    for c, (name, values) in enumerate(series.items()):
        colour = _COLOURS[c % len(_COLOURS)]
        scaled, _, _ = _scale(values, log)
        points = [
            (_PAD + 4 + k * step, _H - _PAD - (v - lo) / (hi - lo) * (_H - _PAD - 28))
            for k, v in enumerate(scaled)
            if v is not None
        ]
        if points:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
            out += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"/>' for x, y in points]
        out.append(
            f'<text x="{_W - 12}" y="{30 + 14 * c}" text-anchor="end" fill="{colour}">'
            f"{html.escape(name)}</text>"
        )
    for k in sorted({0, n - 1, (n - 1) // 2}):
        tick = x_ticks[k] if x_ticks is not None and k < len(x_ticks) else str(k)
        out.append(
            f'<text x="{_PAD + 4 + k * step:.1f}" y="{_H - _PAD + 14}" text-anchor="middle">'
            f"{html.escape(tick)}</text>"
        )
    if x_label:
        out.append(f'<text x="{_W / 2:.0f}" y="{_H - 8}" text-anchor="middle">{html.escape(x_label)}</text>')
    out.append("</svg>")
    return "\n".join(out)
