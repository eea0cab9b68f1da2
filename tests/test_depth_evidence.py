"""The effective-depth evidence of docs/effective-depth.md, checked on the committed networks:
a 24-block residual network and the plain network of the same depth, trained on digits."""

from __future__ import annotations

import pytest

import resprobe
from resprobe.examples import digits_deep_plain, digits_deep_resnet, digits_test_path


def _analyse(loaded: resprobe.Loaded, probes: tuple[str, ...],
             settings: resprobe.Settings) -> resprobe.Report:
    assert loaded.inputs is not None
    data = resprobe.load_data(digits_test_path(), loaded.inputs, batch_size=180)
    return resprobe.analyze(loaded, probes=probes, data=data, settings=settings)


@pytest.fixture(scope="module")
def residual() -> resprobe.Report:
    return _analyse(digits_deep_resnet(), ("gradients", "depth", "lesion"), resprobe.Settings(exact=True))


def test_effective_depth_is_well_below_nominal_depth(residual: resprobe.Report) -> None:
    depth = residual.result("depth")
    assert depth is not None
    stream = depth.summary["streams"][0]
    assert stream["nominal"] == 24 and depth.summary["parametric_depth"] == 50
    assert stream["exact"]["check"] < 1e-4
    assert stream["exact"]["mean"] < 24 / 2 and stream["effective_depth"] < 24 / 2
    assert stream["exact"]["window"][1] < 16  # no gradient worth counting in paths of 16+ blocks


def test_single_lesions_barely_matter_except_early_and_projection_blocks(residual: resprobe.Report) -> None:
    lesions = residual.result("lesion")
    assert lesions is not None
    base = next(iter(lesions.blocks.values()))["base_accuracy"]
    assert base > 0.95
    projections = {b["name"] for b in residual.blocks if b["skip"] == "projection"}
    assert projections == {"layers.8", "layers.16"}
    later = {n: v["accuracy"] for n, v in lesions.blocks.items() if int(n.split(".")[1]) >= 3}
    assert all(base - acc < 0.03 for n, acc in later.items() if n not in projections)
    assert min(later.values()) == min(later[n] for n in projections)  # the worst later lesion: a projection
    curve = lesions.summary["curve"]
    assert curve[0]["accuracy"] > curve[-1]["accuracy"]  # degrades smoothly as more blocks go


def test_lesions_wreck_the_plain_network() -> None:
    names = tuple(f"layers.{i}" for i in range(24) if i not in (0, 8, 16))
    plain = _analyse(digits_deep_plain(), ("lesion",), resprobe.Settings(lesion_modules=names))
    assert not plain.blocks  # no skips: no residual blocks
    result = plain.result("lesion")
    assert result is not None
    modules = result.summary["modules"]
    assert set(modules) == set(names)
    assert all(v["accuracy"] < 0.3 for v in modules.values())  # every single deletion: near chance
