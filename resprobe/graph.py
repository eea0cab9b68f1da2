"""Node and Graph: the frozen, torch-free record of one forward pass."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import networkx as nx

__all__ = ["Graph", "Node"]


class Node(NamedTuple):
    """One recorded operation (or one model input), in execution order; immutable.

    ``inputs`` are the nodes whose tensors this op read, in argument order (a tensor read
    twice appears twice); parameters and buffers are not nodes and appear by name in
    ``params``/``buffers``. ``consts`` holds the plain numbers passed to the op. An op that
    returns several tensors (``split``, ``chunk``, ``unbind``, ``max(x, dim)``) is one node per
    output, consecutive, each with the op's inputs and ``output_index`` = the output's position
    among the tensors returned (``layer1.split[0]``, ``layer1.split[1]``); it is None for an op
    that returns one tensor.
    """

    id: int
    name: str
    op: str
    module: str
    call: int = 0
    inputs: tuple[int, ...] = ()
    shape: tuple[int, ...] | None = None
    dtype: str | None = None
    params: tuple[str, ...] = ()
    buffers: tuple[str, ...] = ()
    consts: tuple[float, ...] = ()
    inplace: bool = False
    output_index: int | None = None

    @property
    def is_input(self) -> bool:
        return self.op == "input"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "op": self.op, "module": self.module,
            "call": self.call, "inputs": list(self.inputs),
            "shape": None if self.shape is None else list(self.shape), "dtype": self.dtype,
            "params": list(self.params), "buffers": list(self.buffers),
            "consts": list(self.consts), "inplace": self.inplace, "output_index": self.output_index,
        }


@dataclass(frozen=True)
class Graph:
    """Nodes of one recorded forward pass; edges are tensor data flow between them.

    ``modules`` maps each module path to its class name and ``param_sizes`` each parameter
    name to its element count (for display and for naming blocks, never for detection).
    """

    nodes: tuple[Node, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    model: str = ""
    modules: Mapping[str, str] = field(default_factory=dict)
    param_sizes: Mapping[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    device: str = "cpu"
    seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __getitem__(self, node_id: int) -> Node:
        return self.nodes[node_id]

    @property
    def edges(self) -> list[tuple[int, int]]:
        """Distinct ``(producer, consumer)`` pairs in execution order."""
        return [(src, n.id) for n in self.nodes for src in dict.fromkeys(n.inputs)]

    def find(self, name: str) -> Node:
        """The node called ``name`` (e.g. ``'layer1.0.add'``)."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"no node named {name!r}")

    def to_networkx(self) -> nx.DiGraph:
        """A fresh ``networkx.DiGraph`` (acyclic) for analyses resprobe does not do itself: node
        ids as nodes, each with the fields of ``Node.to_dict()`` as attributes, and ``edges``
        as its edges. See "Graphs in networkx" in docs/python-api.md."""
        g = nx.DiGraph()
        for node in self.nodes:
            g.add_node(node.id, **node.to_dict())
        g.add_edges_from(self.edges)
        return g

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "device": self.device, "seconds": self.seconds,
            "inputs": list(self.inputs), "outputs": list(self.outputs),
            "notes": list(self.notes), "modules": dict(self.modules),
            "param_sizes": dict(self.param_sizes),
            "nodes": [n.to_dict() for n in self.nodes],
        }

    def summary(self) -> str:
        return f"{len(self.nodes)} nodes, {len(self.edges)} edges"
