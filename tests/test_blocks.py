"""find_blocks on the tiny edge-case zoo: every case has one exact answer."""

from __future__ import annotations

import pytest
import torch
import zoo

import resprobe
from resprobe import find_blocks, streams

CASES = zoo.cases()


@pytest.mark.parametrize("name", sorted(CASES))
def test_zoo_case(name: str) -> None:
    case = zoo.cases()[name]
    graph = resprobe.capture(case.model, case.inputs)
    found = find_blocks(graph)
    assert [b.skip_kind for b in found] == case.skips
    if case.joins is not None:
        assert [b.join_kind for b in found] == case.joins
    if case.names is not None:
        assert [b.name for b in found] == case.names
    assert [len(s.blocks) for s in streams(found)] == case.streams


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if c.skips))
def test_zoo_blocks_check_out_numerically(name: str) -> None:
    case = zoo.cases()[name]
    graph = resprobe.capture(case.model, case.inputs)
    found = find_blocks(graph)
    checks = resprobe.verify_blocks(case.model, case.inputs, graph, found)
    assert [c.name for c in checks] == [b.name for b in found]
    assert all(c.ok for c in checks), checks


def test_steps_number_each_stream_from_one() -> None:
    case = zoo.cases()["nested"]
    found = find_blocks(resprobe.capture(case.model, case.inputs))
    by_name = {b.name: b for b in found}
    outer = [by_name["g1"], by_name["g2"]]
    assert [b.step for b in outer] == [1, 2] and outer[0].stream == outer[1].stream
    inner = [by_name["g1.a"], by_name["g1.b"]]
    assert [b.step for b in inner] == [1, 2] and inner[0].stream != outer[0].stream
    assert by_name["g2.a"].stream not in (inner[0].stream, outer[0].stream)


def test_control_flow_records_the_path_taken() -> None:
    model = zoo.ControlFlow()
    x = torch.randn(2, zoo.D).abs() + 0.1
    taken_a = find_blocks(resprobe.capture(model, x))
    taken_b = find_blocks(resprobe.capture(model, -x))
    assert [b.name for b in taken_a] == ["stack_a.0", "stack_a.1", "stack_a.2"]
    assert [b.name for b in taken_b] == ["stack_b.0", "stack_b.1"]


def test_block_parts_point_at_the_right_nodes() -> None:
    case = zoo.cases()["projection_shortcut"]
    graph = resprobe.capture(case.model, case.inputs)
    (block,) = find_blocks(graph)
    assert graph[block.fork].name == "input.x"
    assert [graph[i].module for i in block.skip] == ["down.0", "down.1"]
    assert {graph[i].module for i in block.branch} == {"conv1", "bn1", "", "conv2", "bn2"}
    assert block.branch_modules == ("conv1", "bn1", "conv2", "bn2")
    assert graph[block.join].op == "Tensor.add"


def test_block_json_has_the_documented_keys() -> None:
    case = zoo.cases()["identity_mlp"]
    (block,) = find_blocks(resprobe.capture(case.model, case.inputs))
    d = block.to_dict()
    assert {"name", "stream", "step", "skip", "join", "branch_modules"} <= set(d)
    assert d["skip"] == "identity" and d["join"] == "add" and d["step"] == 1
    assert d["branch_modules"] == ["f.0", "f.1", "f.2"]


def test_concat_skips_are_not_refinement_steps() -> None:
    case = zoo.cases()["unet3"]
    found = find_blocks(resprobe.capture(case.model, case.inputs))
    assert all(b.stream is None and b.step is None and not b.is_residual for b in found)
    assert [b.name for b in found] == ["cat", "cat_1", "cat_2"]  # concatenated in the root module
