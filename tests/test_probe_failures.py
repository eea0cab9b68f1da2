"""A probe that fails leaves the rest of the report intact, with its error as a note; lesions
fall back to one deletion per pass when dim 0 is not the batch inside the model."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import resprobe
from resprobe.cli import main

D = 8


class Folding(nn.Module):
    """Residual blocks on ``[batch * tokens, D]`` rows (windows or patches folded into dim 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.head = nn.Linear(D, D), nn.Linear(D, D), nn.Linear(D, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = x.reshape(b * t, d)
        h = h + torch.tanh(self.fc1(h))
        h = h + torch.tanh(self.fc2(h))
        return self.head(h.reshape(b, t, d).mean(1))


def folding() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return Folding(), torch.randn(4, 5, D)


def test_lesions_of_a_model_that_folds_rows_into_dim_0() -> None:
    model, x = folding()
    report = resprobe.analyze(model, x, probes=("verify", "lesion"))
    lesion = report.result("lesion")
    assert lesion is not None and not lesion.summary.get("failed")
    with torch.no_grad():  # a lesion equals deleting the branch by hand
        base = nn.functional.cross_entropy(model(x), model(x).argmax(-1))
        h = x.reshape(20, D)
        h = h + torch.tanh(model.fc2(h))
        alone = model.head(h.reshape(4, 5, D).mean(1))
        want = nn.functional.cross_entropy(alone, model(x).argmax(-1)) - base
    first = report.blocks[0]["name"]  # the fc1 block
    assert lesion.blocks[first]["loss_change"] == pytest.approx(float(want), rel=1e-4, abs=1e-6)


class Broken:
    name, requires, install = "lesion", (), ""

    def run(self, context: Any) -> Any:
        raise RuntimeError("176 vs 44\nsecond line")


@pytest.fixture
def broken_lesion(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = sys.modules["resprobe.plugins"].Registry
    original = registry.get

    def get(self: Any, kind: str, name: str) -> Any:
        return Broken() if (kind, name) == ("probe", "lesion") else original(self, kind, name)

    monkeypatch.setattr(registry, "get", get)


def test_a_failing_default_probe_leaves_a_note_and_exit_0(broken_lesion: None, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["analyze", "-o", str(tmp_path), "-q"])
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    lesion = next(r for r in report["results"] if r["probe"] == "lesion")
    assert lesion["notes"] == ["failed: lesion: RuntimeError: 176 vs 44"]
    refinement = next(r for r in report["results"] if r["probe"] == "refinement")
    assert refinement["summary"]["measured"] == 6  # the other probes' numbers are intact
    assert "note: failed: lesion: RuntimeError: 176 vs 44" in result.stdout


def test_a_failing_probe_asked_for_by_name_is_exit_1(broken_lesion: None, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["analyze", "--probe", "verify", "--probe", "lesion",
                                       "-o", str(tmp_path), "-q"])
    assert result.exit_code == 1 and "probe(s) lesion failed" in result.stderr
    assert result.stderr.count("\n") == 1
    report = json.loads((tmp_path / "report.json").read_text())  # written all the same
    assert [r["probe"] for r in report["results"]] == ["verify", "lesion"]


def test_blocks_prints_the_table_when_a_block_fails_verification(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(model: Any, inputs: Any, graph: Any, blocks: Any, **kwargs: Any) -> list[Any]:
        assert kwargs.get("strict") is False
        return [resprobe.BlockCheck(b.name, k != 1, 0.0 if k != 1 else 0.5, "join output != skip + branch")
                for k, b in enumerate(blocks)]

    monkeypatch.setattr(sys.modules["resprobe.cli"], "verify_blocks", failing)
    result = CliRunner().invoke(main, ["blocks", "-q"])
    assert result.exit_code == 1
    assert "verified 5/6" in result.stdout and "layers.1 FAILED" in result.stdout
    assert result.stdout.count("\n") >= 8  # the whole table
    assert "1 block(s) failed the numerical check" in result.stderr and result.stderr.count("\n") == 1


class Rerouted(nn.Module):
    """Deleting the first block flips a value-dependent branch (as torchvision's Mask R-CNN
    does with its boxes): that lesion cannot be compared, the others still are."""

    def __init__(self) -> None:
        super().__init__()
        self.lift, self.fc = nn.Linear(D, D), nn.Linear(D, D)
        with torch.no_grad():
            self.lift.weight.zero_()
            self.lift.bias.fill_(100.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x + self.lift(x)
        h = h + torch.tanh(self.fc(h))
        return h * 2 if bool(h.sum() > 0) else h - 1


def test_a_lesion_that_changes_the_path_is_left_out_with_a_note() -> None:
    torch.manual_seed(0)
    model, x = Rerouted(), -torch.ones(3, D)
    report = resprobe.analyze(model, x, probes=("verify", "lesion"))
    lesion = report.result("lesion")
    assert lesion is not None and not lesion.summary.get("failed")
    first, second = (b["name"] for b in report.blocks)
    assert "loss_change" not in lesion.blocks[first] and lesion.blocks[first]["samples"] == 0
    assert lesion.blocks[second]["loss_change"] is not None
    assert any("sent the model down another path" in n and first in n for n in lesion.notes)
