"""Lesion proportions with the number of samples behind them and Wilson intervals."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

import resprobe
from resprobe import Inputs, capture, example_data, find_blocks
from resprobe._cli_text import summary as cli_summary
from resprobe.lesion import lesion, wilson_interval


def _wilson(k: float, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The closed form: the roots in p of (p̂ − p)² = z² p (1 − p) / n."""
    p = k / n
    a, b, c = 1 + z * z / n, -(2 * p + z * z / n), p * p
    root = math.sqrt(b * b - 4 * a * c)
    return (-b - root) / (2 * a), (-b + root) / (2 * a)


def test_wilson_interval_known_values() -> None:
    assert wilson_interval(0, 1) == pytest.approx([0.0, 0.793], abs=5e-4)
    assert wilson_interval(1, 1) == pytest.approx([0.207, 1.0], abs=5e-4)
    assert wilson_interval(16, 16) == pytest.approx([0.806, 1.0], abs=5e-4)
    assert wilson_interval(8, 16) == pytest.approx([0.28, 0.72], abs=5e-3)
    for k, n in [(0, 1), (3, 10), (15.5, 16), (90, 100), (360, 360), (0.25, 1)]:
        assert wilson_interval(k, n) == pytest.approx(list(_wilson(k, n)), abs=1e-6)
    assert wilson_interval(0, 0) is None and wilson_interval(float("nan"), 4) is None


class Tiny(nn.Module):
    """Three residual blocks and a 10-way readout."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.f = nn.ModuleList(nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8)) for _ in range(3))
        self.out = nn.Linear(8, 10)

    def forward(self, x: Tensor) -> Tensor:
        for f in self.f:
            x = x + f(x)
        return self.out(x)  # type: ignore[no-any-return]


def test_lesion_reports_samples_and_intervals() -> None:
    model = Tiny().eval()
    x = torch.randn(5, 8, generator=torch.Generator().manual_seed(0))
    inputs = Inputs.of(x)
    graph = capture(model, inputs)
    blocks = find_blocks(graph)
    got = lesion(model, graph, blocks, example_data(inputs), draws=0, modules=("f.1",))
    assert got["samples"] == 5
    for v in [*got["blocks"].values(), got["modules"]["f.1"]]:
        assert v["samples"] == 5
        assert v["agreement_interval"] == pytest.approx(list(_wilson(v["agreement"] * 5, 5)), abs=1e-6)
        lo, hi = v["agreement_interval"]
        assert lo <= v["agreement"] <= hi
    one = lesion(model, graph, blocks, example_data(Inputs.of(x[:1])), draws=0)
    for v in one["blocks"].values():  # one sample: the agreement can only be 0 or 1
        assert v["samples"] == 1 and v["agreement"] in (0.0, 1.0)
        assert v["agreement_interval"] == (pytest.approx([0.207, 1.0], abs=5e-4) if v["agreement"]
                                           else pytest.approx([0.0, 0.793], abs=5e-4))


def test_lesion_accuracy_interval_with_targets() -> None:
    model = Tiny().eval()
    x = torch.randn(6, 8, generator=torch.Generator().manual_seed(1))
    inputs = Inputs.of(x)
    graph = capture(model, inputs)
    targets = torch.arange(6) % 10
    data = resprobe.Data("tensors", "x", 6, 4, lambda: iter([(Inputs.of(x[:4]), targets[:4]),
                                                             (Inputs.of(x[4:]), targets[4:])]))
    got = lesion(model, graph, find_blocks(graph), data, objective="task", draws=0)
    assert got["samples"] == 6
    for v in got["blocks"].values():
        assert v["samples"] == 6
        for key in ("accuracy", "base_accuracy"):
            assert v[f"{key}_interval"] == pytest.approx(list(_wilson(v[key] * 6, 6)), abs=1e-6)


def test_the_cli_lesion_line_names_the_sample_count() -> None:
    model = Tiny().eval()
    x = torch.randn(16, 8, generator=torch.Generator().manual_seed(2))
    report = resprobe.analyze(resprobe.Loaded(model, Inputs.of(x)), probes=("lesion",),
                              settings=resprobe.Settings(lesion_draws=1))
    result = report.result("lesion")
    assert result is not None and result.summary["samples"] == 16
    line = next(t for t in cli_summary(report).splitlines() if t.startswith("lesions:"))
    assert "keep >= 95% of the top-1 predictions on 16 sample(s);" in line
    assert all(v["samples"] == 16 and len(v["agreement_interval"]) == 2 for v in result.blocks.values())
