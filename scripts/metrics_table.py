"""Write the per-block metric tables of docs/metrics.md from the metric catalogue
(resprobe/metrics.py), between the `<!-- metrics:PROBE -->` and `<!-- /metrics -->` markers
(run after changing the catalogue; a test checks the file is current).

Run:  python scripts/metrics_table.py
"""

from __future__ import annotations

import re
from pathlib import Path

from resprobe.metrics import CATALOGUE

DOC = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"
_BLOCK = re.compile(r"(<!-- metrics:(\w+) -->\n).*?(<!-- /metrics -->)", re.S)


def table(probe: str) -> str:
    rows = ["| key | definition | unit | literature |", "| --- | --- | --- | --- |"]
    rows += [f"| `{m.key}` | {m.definition} | {m.unit} | {m.literature} |"
             for m in CATALOGUE if m.probe == probe]
    return "\n".join(rows) + "\n"


def rewritten(text: str) -> str:
    return _BLOCK.sub(lambda m: m.group(1) + table(m.group(2)) + m.group(3), text)


def main() -> None:
    DOC.write_text(rewritten(DOC.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
