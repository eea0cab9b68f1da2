"""The wide real-architecture sweep's shared checks: counts against expectations derived from
each model's source, and a whole analysis that must end with a finite report."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

import resprobe


@dataclass(frozen=True)
class Case:
    """One architecture: how to build it (small config, random weights) with example inputs,
    and what its source says: residual adds (identity + projection skips), how many of those
    have a projection shortcut, concat skips, and why (one line, from reading the source)."""

    id: str
    build: Callable[[], tuple[torch.nn.Module, Any]]
    adds: int
    projection: int
    concat: int
    why: str
    analyze: bool = True  # also run a whole analysis (all default probes)
    known: str = ""  # a known miss: the family in docs/concepts.md ("known limits") it belongs to


def counts(model: torch.nn.Module, inputs: Any) -> dict[str, int]:
    graph = resprobe.capture(model, inputs)
    kinds = Counter(b.skip_kind for b in resprobe.find_blocks(graph))
    return {"adds": kinds["identity"] + kinds["projection"], "projection": kinds["projection"],
            "concat": kinds["concat"]}


def check_counts(case: Case) -> None:
    if case.known:
        pytest.xfail(case.known)
    torch.manual_seed(0)
    model, inputs = case.build()
    got = counts(model.eval(), inputs)
    want = {"adds": case.adds, "projection": case.projection, "concat": case.concat}
    assert got == want, f"{case.id}: {case.why}"


def check_analysis(case: Case, tmp_path: Path) -> None:
    """Every default probe runs, every block verifies, and report.json is strict, finite JSON."""
    torch.manual_seed(0)
    model, inputs = case.build()
    report = resprobe.analyze(model.eval(), inputs)
    report.save(tmp_path, ("json",))
    text = (tmp_path / "report.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"{case.id}: {c} in report.json"))
    verify = report.result("verify")
    assert verify is not None and verify.summary["passed"] == verify.summary["checked"], case.id
    failed = [n for r in report.results for n in r.notes if n.startswith("failed:")]
    assert not failed, f"{case.id}: {failed}"
    for r in report.results:
        for block in r.blocks.values():
            for v in block.values():
                assert not (isinstance(v, float) and not math.isfinite(v)), case.id
