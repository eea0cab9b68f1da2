"""The docs stay true to what ships: the CLI reference matches the commands' own help."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_cli_reference_is_current() -> None:
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "scripts" / "cli_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (ROOT / "docs" / "cli-reference.md").read_text(encoding="utf-8") == module.reference(), (
        "docs/cli-reference.md is out of date: run python scripts/cli_reference.py")


def test_every_docs_page_is_in_the_site_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = [p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")]
    assert pages and all(p in nav for p in pages), [p for p in pages if p not in nav]


def test_metric_tables_are_generated_from_the_catalogue() -> None:
    spec = importlib.util.spec_from_file_location("metrics_table", ROOT / "scripts" / "metrics_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    assert "<!-- metrics:refinement -->" in text and "<!-- metrics:gradients -->" in text
    assert module.rewritten(text) == text, (
        "docs/metrics.md is out of date: run python scripts/metrics_table.py")
