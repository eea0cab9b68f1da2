"""Models dispatched by accelerate (layers on the CPU and offloaded to disk, loaded by its hooks
only while a pass runs): analysed where their tensors live, the numbers those of the same model
kept whole, and accelerate's hooks left exactly as found."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

import resprobe
from resprobe.examples import DeepDigitsNet

PROBES = ("verify", "refinement", "gradients", "depth", "lesion")


@pytest.mark.zoo
def test_a_model_offloaded_to_disk_gives_the_numbers_of_the_whole_model(tmp_path: Path) -> None:
    accelerate = pytest.importorskip("accelerate")
    torch.manual_seed(0)
    whole = DeepDigitsNet(True, stages=(2, 2, 2)).eval()
    x = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    device_map = {"stem": "cpu", "layers.0": "cpu", "layers.1": "cpu", "layers.2": "disk", "layers.3": "disk",
                  "layers.4": "cpu", "layers.5": "cpu", "head": "cpu"}
    model = accelerate.dispatch_model(copy.deepcopy(whole), device_map=device_map, offload_dir=str(tmp_path))
    assert sum(p.is_meta for p in model.parameters()) > 0  # the disk layers hold no weights between passes
    hooks = [(m.__dict__.get("_hf_hook"), m.__dict__.get("forward"), dict(m._forward_pre_hooks))
             for m in model.modules()]
    before = model(x)
    got, want = resprobe.analyze(model, x, probes=PROBES), resprobe.analyze(whole, x, probes=PROBES)
    assert [b.name for b in got.blocks] == [b.name for b in want.blocks] and len(got.blocks) == 6
    assert got.result("verify").summary["passed"] == 6  # type: ignore[union-attr]
    on_disk = ("layers.2", "layers.3")
    for a, b in zip(got.blocks, want.blocks):
        for probe in ("refinement", "gradients", "lesion"):
            for key, value in b.metrics[probe].items():
                if key in ("param_grad_norm", "grad_weight_ratio", "param_norm") and a.name in on_disk:
                    assert a.metrics[probe][key] is None  # the weights were on disk: said in a note
                elif isinstance(value, float):
                    assert a.metrics[probe][key] == pytest.approx(value, rel=1e-5), (a.name, key)
    assert any("layers.2, layers.3" in n for n in got.result("gradients").notes)  # type: ignore[union-attr]
    assert [(m.__dict__.get("_hf_hook"), m.__dict__.get("forward"), dict(m._forward_pre_hooks))
            for m in model.modules()] == hooks
    assert torch.equal(model(x), before)


@pytest.mark.zoo
def test_a_model_with_every_weight_on_disk_runs_where_accelerate_runs_it(tmp_path: Path) -> None:
    """Every parameter is on the meta device between passes: the model still has values (its
    hooks load them), so it is measured, not taken for a structure-only model."""
    accelerate = pytest.importorskip("accelerate")
    torch.manual_seed(0)
    whole = DeepDigitsNet(True, stages=(1, 1, 1)).eval()
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    names = ["stem", "layers.0", "layers.1", "layers.2", "head"]
    model = accelerate.dispatch_model(copy.deepcopy(whole), device_map=dict.fromkeys(names, "disk"),
                                      offload_dir=str(tmp_path))
    assert all(p.is_meta for p in model.parameters())
    got, want = (resprobe.analyze(m, x, probes=("refinement", "gradients")) for m in (model, whole))
    assert [b.metrics.refinement.update_ratio for b in got.blocks] == pytest.approx(
        [b.metrics.refinement.update_ratio for b in want.blocks], rel=1e-5)
    assert [b.metrics.gradients.branch_gain for b in got.blocks] == pytest.approx(
        [b.metrics.gradients.branch_gain for b in want.blocks], rel=1e-5)
