"""report.html and the notebook view: styles scoped to the report, pan and zoom inline."""

from __future__ import annotations

import re

import resprobe
from resprobe.examples import digits_resnet


def _report() -> resprobe.Report:
    return resprobe.analyze(digits_resnet(), probes=("verify", "refinement"))


def test_the_notebook_view_restyles_nothing_else() -> None:
    fragment = _report()._repr_html_()
    styles = re.findall(r"<style>(.*?)</style>", fragment, flags=re.S)
    assert styles
    selectors = [sel.strip() for css in styles for rule in re.findall(r"([^{}]+)\{", css)
                 for sel in rule.split(",")]
    assert selectors and all(sel.startswith(".resprobe-report") for sel in selectors), selectors
    assert fragment.startswith('<div class="resprobe-report">')
    assert "<script src" not in fragment and "http" not in "".join(styles)


def test_the_page_holds_pan_and_zoom_inline_and_no_external_request() -> None:
    page = resprobe.report_html(_report())
    assert "addEventListener('wheel'" in page and '<div class="diagram"><svg' in page
    assert not re.search(r"""(src|href)=["']https?:""", page)
    assert '<div class="scroll"><table class="blocks">' in page


def _text_boxes(svg: str) -> list[tuple[str, float, float, float, float]]:
    """Every <text>'s box (x0, y0, x1, y1), estimated as the charts size them, turned as drawn."""
    import math

    from resprobe.render.charts import text_width

    boxes = []
    for attrs, body in re.findall(r"<text([^>]*)>(.*?)</text>", svg):
        get = dict(re.findall(r'([\w-]+)="([^"]*)"', attrs))
        x, y = float(get.get("x", 0)), float(get.get("y", 0))
        size = float(get.get("font-size", 11))
        w = text_width(html_unescape(body), size)
        x0 = {"end": x - w, "middle": x - w / 2}.get(get.get("text-anchor", "start"), x)
        corners = [(x0, y - size), (x0 + w, y - size), (x0, y + 2), (x0 + w, y + 2)]
        turn = re.search(r"rotate\((-?[\d.]+) ([\d.]+) ([\d.]+)\)", get.get("transform", ""))
        if turn:
            a, cx, cy = math.radians(float(turn[1])), float(turn[2]), float(turn[3])
            corners = [(cx + (px - cx) * math.cos(a) - (py - cy) * math.sin(a),
                        cy + (px - cx) * math.sin(a) + (py - cy) * math.cos(a)) for px, py in corners]
        xs, ys = [c[0] for c in corners], [c[1] for c in corners]
        boxes.append((body, min(xs), min(ys), max(xs), max(ys)))
    return boxes


def html_unescape(text: str) -> str:
    import html

    return html.unescape(text)


def test_no_chart_text_leaves_its_svg() -> None:
    """Long block names, tiny negative numbers, many series: every label stays in the picture,
    minus signs included; a one-point chart is a number."""
    from resprobe.render.charts import bar_chart, line_chart

    names = [f"encoder.layers.encoder_layer_{k}.self_attention" for k in range(12)]
    values: list[float | None] = [(-1) ** k * 1.94e-3 * (k + 1) for k in range(12)]
    charts = [
        bar_chart("loss change when each block is deleted", names, values),
        bar_chart("update ratio", ["a", "b"], [4.76e-3, 123456.0]),
        line_chart("share by path length",
                   {"estimate (magnitude)": [0.1, 0.5, 0.4], "estimate (net)": [0.2, 0.5, 0.3],
                    "exact (net)": [0.3, 0.4, 0.3]}, x_label="path length"),
        line_chart("gradient", {"g": [1e-9, 1e3, None, 5.0]}, log=True, x_label="step − 1"),
    ]
    for svg in charts:
        width, height = map(float, re.search(r'viewBox="0 0 ([\d.]+) ([\d.]+)"', svg).groups())  # type: ignore[union-attr]
        for body, x0, y0, x1, y1 in _text_boxes(svg):
            assert x0 >= 0 and y0 >= 0 and x1 <= width and y1 <= height, (body, x0, y0, x1, y1)
    assert "−1.94e-3" in charts[0] or "−0.0194" in charts[0] or "−" in charts[0]
    assert "…" in charts[0]  # long names are cut with an ellipsis, not mid-word silently
    single = line_chart("gradient along stream 1", {"gradient at the join": [0.25]})
    assert "gradient at the join: 0.25" in single and "polyline" not in single
