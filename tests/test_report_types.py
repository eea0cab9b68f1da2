"""The typed report: frozen parts with report.json's keys, a round trip that keeps report.json
byte for byte, and fresh analyses that still equal the reports recorded in tests/golden/."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import resprobe
from resprobe.metrics import CATALOGUE
from resprobe.report import (
    BlockMetrics,
    BlockReport,
    GradientNumbers,
    LesionNumbers,
    ModelInfo,
    Numbers,
    RefinementNumbers,
    VerifyNumbers,
)

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
GALLERY = ROOT / "docs" / "gallery"
MODELS = ("digits-resnet", "unet", "gpt2")  # small gallery models: a CNN, a U-Net, a transformer


def _gallery() -> Any:
    spec = importlib.util.spec_from_file_location("_gallery_script", ROOT / "scripts" / "gallery.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fresh(slug: str) -> dict[str, Any]:
    """report.json of gallery model ``slug``, analysed now (capture time zeroed: it is a timing)."""
    build = {s: b for s, _, b in _gallery().PAGES}[slug]
    torch.manual_seed(0)
    made = build()
    loaded, data = made if isinstance(made, tuple) else (made, None)
    d = resprobe.analyze(loaded, data=data).to_dict()
    d["graph"]["capture_seconds"] = 0
    d["resprobe_version"] = "golden"
    return d


def _text(d: dict[str, Any]) -> str:
    """report.json's bytes, as the json exporter writes them."""
    return json.dumps(d, indent=2, allow_nan=False) + "\n"


def _close(a: Any, b: Any, where: str = "") -> None:
    """Equal, numbers to 1e-6 relative (other machines' float libraries may differ in the last
    digit); keys, their order, strings and counts exactly."""
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, (int, float)) and isinstance(b, (int, float)), where
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9), f"{where}: {a} != {b}"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for k in a:
            _close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for k, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{where}[{k}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.parametrize("slug", MODELS)
def test_a_fresh_analysis_equals_the_recorded_report(slug: str) -> None:
    if slug == "gpt2":
        pytest.importorskip("transformers")
    golden = json.loads((GOLDEN / f"{slug}.report.json").read_text(encoding="utf-8"))
    _close(fresh(slug), golden, slug)


def _reports() -> list[Path]:
    return sorted([*GOLDEN.glob("*.report.json"), *GALLERY.glob("*/report.json")])


def test_there_are_reports_to_round_trip() -> None:
    assert len(_reports()) >= len(MODELS) + 10


@pytest.mark.parametrize("path", _reports(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_report_json_round_trips_byte_for_byte(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    report = resprobe.Report.from_dict(json.loads(text))
    assert _text(report.to_dict()) == text
    assert resprobe.Report.from_dict(report.to_dict()) == report


@pytest.fixture(scope="module")
def report() -> resprobe.Report:
    return resprobe.Report.from_dict(json.loads((GOLDEN / "digits-resnet.report.json").read_text()))


def test_the_parts_are_typed_and_say_what_report_json_says(report: resprobe.Report) -> None:
    d = report.to_dict()
    assert isinstance(report.model, ModelInfo)
    assert report.model.class_name == d["model"]["class"] == "DigitsResNet"
    assert report.model.inputs[0].shape == tuple(d["model"]["inputs"][0]["shape"])
    assert report.graph.nodes == d["graph"]["nodes"]
    assert report.streams[0].blocks == tuple(d["streams"][0]["blocks"])
    for b, raw in zip(report.blocks, d["blocks"]):
        assert isinstance(b, BlockReport) and b.name == raw["name"] and b.label == raw["label"]
        m = b.metrics
        assert isinstance(m, BlockMetrics) and list(m) == list(raw["metrics"])
        assert isinstance(m.refinement, RefinementNumbers) and isinstance(m.gradients, GradientNumbers)
        assert isinstance(m.lesion, LesionNumbers) and isinstance(m.verify, VerifyNumbers)
        assert m.refinement.update_ratio == raw["metrics"]["refinement"]["update_ratio"]
        assert m.gradients.branch_gain == raw["metrics"]["gradients"]["branch_gain"]
        assert m.lesion.agreement_interval == tuple(raw["metrics"]["lesion"]["agreement_interval"])
        assert m.verify.ok is raw["metrics"]["verify"]["ok"] is True
        assert b["metrics"]["refinement"]["update_ratio"] == m.refinement.update_ratio  # dict form
    assert [b.name for b in report.residual] == [b.name for b in report.blocks if b.skip != "concat"]
    assert report.block("layers.0") is report.blocks[0] and report.block("nope") is None


def test_the_report_cannot_be_written_into(report: resprobe.Report) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.blocks[0].label = "refine"  # type: ignore[misc]
    with pytest.raises(TypeError):
        report.blocks[0].metrics["refinement"]["update_ratio"] = 0.0  # type: ignore[index]
    with pytest.raises(TypeError):
        report.blocks[0]["metrics"]["refinement"] = {}
    with pytest.raises((TypeError, AttributeError)):
        report.results[0].summary["checked"] = 0  # type: ignore[index]
    with pytest.raises(AttributeError):
        report.streams[0].blocks.append("x")  # type: ignore[attr-defined]
    copy = report.to_dict()
    copy["blocks"][0]["metrics"]["refinement"]["update_ratio"] = 0.0  # a plain copy: the report keeps its
    assert report.blocks[0].metrics.refinement is not None
    assert report.blocks[0].metrics.refinement.update_ratio != 0.0


def test_every_catalogue_metric_of_a_typed_probe_is_an_attribute() -> None:
    """Renaming a metric in resprobe/metrics.py without its typed attribute fails here."""
    views = {"refinement": RefinementNumbers, "gradients": GradientNumbers, "lesion": LesionNumbers}
    for m in CATALOGUE:
        if m.probe in views:
            assert hasattr(views[m.probe], m.key), f"{views[m.probe].__name__} has no {m.key}"


def test_numbers_read_numbers_only() -> None:
    n = Numbers({"a": 1, "b": True, "c": "x", "d": None, "e": [1, {"f": 2}]})
    assert n.number("a") == 1.0 and n.number("b") is None and n.number("c") is None
    assert n.number("missing") is None and n["e"][1]["f"] == 2 and isinstance(n["e"], tuple)
    assert n.to_dict() == {"a": 1, "b": True, "c": "x", "d": None, "e": [1, {"f": 2}]}


if __name__ == "__main__":  # python tests/test_report_types.py --write: record the goldens anew
    if sys.argv[1:] == ["--write"]:
        for slug in MODELS:
            (GOLDEN / f"{slug}.report.json").write_text(_text(fresh(slug)), encoding="utf-8")
