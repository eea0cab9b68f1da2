"""The run report's line charts: effective depth over training and the gradient norm along depth."""

from __future__ import annotations

import html
from collections.abc import Sequence

from ..runlog import RunStep
from .charts import _COLOURS, _fmt, line_chart, text_width
from .runparts import DepthPoint, profile

__all__ = ["depth_chart", "gradient_chart"]

_W, _H, _LEFT, _RIGHT, _TOP, _BOTTOM = 640, 230, 48, 16, 44, 40
_BAND = "#abd9e9"


class _Axes:
    """Steps onto x (first to last measured), path lengths 0..``top`` onto y."""

    def __init__(self, first: int, last: int, top: float):
        self.first, self.span, self.top = first, last - first, top

    def x(self, step: int) -> float:
        """The step's x; one measured step sits in the middle."""
        f = (step - self.first) / self.span if self.span else 0.5
        return _LEFT + f * (_W - _LEFT - _RIGHT)

    def y(self, v: float) -> float:
        return _H - _BOTTOM - v / self.top * (_H - _BOTTOM - _TOP)


def _runs(points: Sequence[DepthPoint], has: str) -> list[list[DepthPoint]]:
    """Consecutive points that all have ``has`` (``depth`` or ``window``): gaps split lines."""
    out: list[list[DepthPoint]] = [[]]
    for p in points:
        if getattr(p, has) is None:
            out.append([])
        else:
            out[-1].append(p)
    return [r for r in out if r]


def _band(ax: _Axes, points: Sequence[DepthPoint]) -> list[str]:
    out = []
    for run in _runs(points, "window"):
        upper = [f"{ax.x(p.step):.1f},{ax.y(p.window[1]):.1f}" for p in run if p.window]
        lower = [f"{ax.x(p.step):.1f},{ax.y(p.window[0]):.1f}" for p in reversed(run) if p.window]
        width = ' stroke-width="4"' if len(run) == 1 else ""
        out.append(f'<polygon points="{" ".join(upper + lower)}" fill="{_BAND}" stroke="{_BAND}"{width}/>')
    return out


def _depth_line(ax: _Axes, points: Sequence[DepthPoint]) -> list[str]:
    out = []
    for run in _runs(points, "depth"):
        path = " ".join(f"{ax.x(p.step):.1f},{ax.y(p.depth or 0.0):.1f}" for p in run)
        out.append(f'<polyline points="{path}" fill="none" stroke="{_COLOURS[0]}" stroke-width="2"/>')
    for p in points:
        if p.depth is not None:
            window = f", window {p.window[0]}–{p.window[1]}" if p.window else ""
            tip = f"step {p.step}: effective depth {p.depth!r}{window} of {p.nominal} blocks"
            out.append(f'<circle cx="{ax.x(p.step):.1f}" cy="{ax.y(p.depth):.1f}" r="2.5" '
                       f'fill="{_COLOURS[0]}"><title>{tip}</title></circle>')
    return out


def _nominal(ax: _Axes, points: Sequence[DepthPoint]) -> str:
    """The nominal depth, dashed (across the whole plot when one step was measured)."""
    xy = [(ax.x(p.step), ax.y(p.nominal)) for p in points]
    if len(xy) == 1:
        xy = [(_LEFT, xy[0][1]), (_W - _RIGHT, xy[0][1])]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
    return f'<polyline points="{path}" fill="none" stroke="#555" stroke-width="1.5" stroke-dasharray="6 4"/>'


def _frame(title: str, ax: _Axes, first: int, last: int) -> list[str]:
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" '
           'font-family="Helvetica, Arial, sans-serif" font-size="11">',
           f'<text x="6" y="16" font-size="13" font-weight="bold">{html.escape(title)}</text>',
           f'<line x1="{_LEFT}" y1="{ax.y(0):.1f}" x2="{_W - _RIGHT}" y2="{ax.y(0):.1f}" stroke="#999"/>',
           f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{ax.y(0):.1f}" stroke="#999"/>']
    for v in (0.0, ax.top / 2, ax.top):
        out.append(f'<text x="{_LEFT - 4}" y="{ax.y(v) + 4:.1f}" text-anchor="end">{_fmt(v)}</text>')
    for s in sorted({first, (first + last) // 2, last}):
        out.append(f'<text x="{ax.x(s):.1f}" y="{_H - _BOTTOM + 14}" text-anchor="middle">{s}</text>')
    out.append(f'<text x="{_W / 2:.0f}" y="{_H - 8}" text-anchor="middle">step</text>')
    return out


def _key() -> list[str]:
    out, x = [], float(_LEFT)
    for colour, name, dash in ((_COLOURS[0], "effective depth", ""), (_BAND, "90% window", ""),
                               ("#555", "nominal depth", ' stroke-dasharray="6 4"')):
        out.append(f'<line x1="{x:.1f}" y1="{_TOP - 14}" x2="{x + 16:.1f}" y2="{_TOP - 14}" '
                   f'stroke="{colour}" stroke-width="{6 if name == "90% window" else 2}"{dash}/>'
                   f'<text x="{x + 20:.1f}" y="{_TOP - 10}">{name}</text>')
        x += 36 + text_width(name)
    return out


def depth_chart(stream: int, points: Sequence[DepthPoint]) -> str | None:
    """Effective depth against step for one stream, or None when it was never measured."""
    if not any(p.depth is not None for p in points):
        return None
    top = max([p.nominal for p in points] + [p.window[1] for p in points if p.window]
              + [p.depth for p in points if p.depth is not None]) or 1.0
    first, last = points[0].step, points[-1].step
    ax = _Axes(first, last, float(top))
    body = _band(ax, points) + [_nominal(ax, points)] + _depth_line(ax, points)
    title = f"effective depth over training, stream {stream} (blocks)"
    return "\n".join(_frame(title, ax, first, last) + _key() + body + ["</svg>"])


def gradient_chart(stream: int, names: Sequence[str], steps: Sequence[RunStep]) -> str | None:
    """‖∂L/∂y‖ at each block's join along one stream, one line per step (log scale), or None
    when none of them has a value."""
    series = {f"step {s.step}": profile(s, names) for s in steps}
    if not any(v is not None for vs in series.values() for v in vs):
        return None
    ticks = [str(k) for k in range(1, len(names) + 1)]
    return line_chart(f"‖∂L/∂y‖ along stream {stream} (log scale)", series, log=True,
                      x_label="block (position on the stream)", x_ticks=ticks)
