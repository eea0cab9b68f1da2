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
