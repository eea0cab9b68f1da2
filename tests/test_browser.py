"""report.html in a real browser: headless Chromium loads it without console errors and the
screenshot shows the page (skipped where no Chromium is installed: apt-get install chromium)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

import resprobe

_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_html.py"


def _checker():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("check_html", _SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_report_loads_in_headless_chromium(tmp_path: Path) -> None:
    check = _checker()
    if check.browser() is None:
        pytest.skip("no Chromium installed (apt-get install chromium)")
    report = resprobe.analyze(resprobe.load("resprobe.examples:digits_resnet"), probes=(
        "verify", "refinement", "gradients", "depth", "lesion", "attribution"))
    (page,) = report.save(tmp_path, ("html",))
    shot = tmp_path / "shot.png"
    assert check.check(page, shot) == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
