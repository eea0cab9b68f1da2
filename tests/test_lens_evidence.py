"""The readout-lens evidence of docs/lens.md, checked on the committed trained models and their
random-init twins (numbers from scripts/lens_evidence.py)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from lens_evidence import lens_of, rows  # noqa: E402


@pytest.fixture(scope="module")
def tables() -> dict[str, list[tuple[str, float, float, float, float | None]]]:
    return {source: rows(lens_of(source), classes) for source, classes in
            (("small_lm", 256), ("small_lm_random", 256), ("digits_vit", 10), ("digits_vit_random", 10),
             ("digits_deep_resnet", 10))}


def test_the_trained_lm_converges_early_and_keeps_correcting(tables: dict) -> None:  # type: ignore[type-arg]
    trained = tables["small_lm"]
    assert len(trained) == 8 and trained[-1][1] == 0.0
    assert trained[1][2] < 0.15  # after the first MLP the prediction is mostly in place
    losses = [r[4] for r in trained]
    assert all(a is not None and b is not None and b < a for a, b in zip(losses, losses[1:-1]))
    assert losses[0] is not None and losses[-1] is not None and losses[0] - losses[-1] > 1.0


def test_the_random_lm_predicts_nothing_at_any_depth(tables: dict) -> None:  # type: ignore[type-arg]
    random = tables["small_lm_random"]
    assert all(r[4] is not None and abs(r[4] - math.log(256)) < 0.1 for r in random)
    assert random[0][2] > 0.5 > tables["small_lm"][0][2]


def test_the_trained_vit_agrees_early_its_random_twin_never(tables: dict) -> None:  # type: ignore[type-arg]
    trained, random = tables["digits_vit"], tables["digits_vit_random"]
    assert trained[2][3] > 0.9 and trained[2][2] < 0.15
    assert all(r[3] < 0.05 for r in random[:-1]) and random[0][2] > 1.0


def test_kl_falls_monotonically_over_the_resnets_last_stage(tables: dict) -> None:  # type: ignore[type-arg]
    stage = tables["digits_deep_resnet"]
    assert [r[0] for r in stage] == [f"layers.{i}" for i in range(16, 24)]
    kls = [r[1] for r in stage]
    assert all(b < a for a, b in zip(kls, kls[1:])) and kls[-1] == 0.0
