"""The running sums behind every per-block number: exact against a float64 recomputation, and
the same however the values are split into batches."""

from __future__ import annotations

import statistics

import pytest
import torch

from resprobe._stats import Sums, mean, std


@pytest.mark.parametrize("splits", [[4096], [2048, 2048], [1, 7, 4000, 88]])
def test_mean_and_std_are_exact_for_any_split(splits: list[int]) -> None:
    """Values with a large mean and a small spread (update ratios of one block over many
    tokens) are where float32 squares and ``q/c - (s/c)^2`` cancel; float64 sums do not."""
    gen = torch.Generator().manual_seed(0)
    values = (3.0 + 1e-3 * torch.randn(4096, generator=gen)).float()
    sums = Sums()
    for part in values.split(splits):
        sums.add("k", part)
    entry = sums.host()["k"]
    exact = [float(v) for v in values.double()]
    assert mean(entry) == pytest.approx(statistics.fmean(exact), rel=1e-12)
    assert std(entry) == pytest.approx(statistics.pstdev(exact), rel=1e-6)


def test_weighted_values_drop_what_has_weight_zero() -> None:
    values = torch.tensor([[1.0, 2.0, 1e30, 4.0]])
    weights = torch.tensor([[1.0, 1.0, 0.0, 1.0]])
    sums = Sums()
    sums.add("k", values, weights)
    entry = sums.host()["k"]
    assert mean(entry) == pytest.approx(7 / 3) and std(entry) == pytest.approx(statistics.pstdev([1, 2, 4]))
