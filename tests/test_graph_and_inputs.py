"""Graph helpers and Inputs parsing."""

from __future__ import annotations

import pytest
import torch

from resprobe import Graph, Inputs, InputsError, Node
from resprobe.inputs import parse_shape


def tiny() -> Graph:
    nodes = (Node(0, "input.x", "input", ""), Node(1, "mul", "Tensor.mul", "", inputs=(0, 0)),
             Node(2, "add", "Tensor.add", "", inputs=(0, 1)))
    return Graph(nodes, inputs=(0,), outputs=(2,))


def test_edges_are_distinct_pairs() -> None:
    g = tiny()
    assert g.edges == [(0, 1), (0, 2), (1, 2)]
    assert g.find("add").id == 2 and g[1].name == "mul" and len(g) == 3
    with pytest.raises(KeyError):
        g.find("nope")
    assert g.summary() == "3 nodes, 3 edges"


def test_parse_shape() -> None:
    assert parse_shape("1x3x8x8").shape == (1, 3, 8, 8)
    t = parse_shape("2x5:int64")
    assert t.dtype == torch.int64 and t.shape == (2, 5)
    for bad in ("", "0x3", "ax3", "2x3:nope"):
        with pytest.raises(InputsError):
            parse_shape(bad)


def test_inputs_of_rejects_non_string_keys() -> None:
    with pytest.raises(InputsError, match="string keys"):
        Inputs.of({1: torch.ones(1)})
    assert Inputs.of(Inputs((1,))).args == (1,)
