"""The measurement plan for one graph: the gates, each stream's blocks in step order, and the
repeating layers of each stream (attention + MLP in a transformer)."""

from __future__ import annotations

from .blocks import Block, by_stream
from .graph import Graph
from .instrument import Instrument

__all__ = ["Plan", "layers"]


def layers(graph: Graph, blocks: list[Block]) -> list[tuple[str, list[int], int | None]]:
    """Groups of consecutive blocks that make one repeating layer (attention + MLP in a
    transformer): the blocks' module classes repeat with a period p >= 2 that divides their
    count. Each group: its name (the blocks' common module path), block positions in
    ``blocks``, and the node that leaves the layer (its output), if found."""
    classes = [graph.modules.get(b.name.split("#")[0], b.name) for b in blocks]
    n = len(blocks)
    period = next((p for p in range(1, n // 2 + 1) if n % p == 0
                   and all(classes[k] == classes[k % p] for k in range(n))), n)
    if period < 2 or period == n:
        return []
    groups = []
    for start in range(0, n, period):
        idx = list(range(start, start + period))
        name = _common([blocks[k].name.split("#")[0] for k in idx])
        groups.append((name, idx, _layer_output(graph, name, blocks[idx[0]].skip_operand)))
    return groups


def _common(names: list[str]) -> str:
    parts = [n.split(".") for n in names]
    common = []
    for column in zip(*parts):
        if len(set(column)) != 1:
            break
        common.append(column[0])
    return ".".join(common)


def _layer_output(graph: Graph, name: str, like: int) -> int | None:
    inside = {n.id for n in graph.nodes if name and (n.module == name or n.module.startswith(name + "."))}
    shape = graph.nodes[like].shape
    leaving = {i for n in graph.nodes if n.id not in inside for i in n.inputs if i in inside}
    leaving |= inside & set(graph.outputs)
    found = [i for i in leaving if graph.nodes[i].shape == shape]
    return max(found) if found else None


class Plan:
    """Gates, stream order and layers for one graph."""

    def __init__(self, graph: Graph, blocks: list[Block]):
        self.graph = graph
        self.blocks = [b for b in blocks if b.is_residual]
        pos = {b.name: k for k, b in enumerate(self.blocks)}
        chains = by_stream(self.blocks)
        self.stream_ids = list(chains)
        self.streams = [[pos[b.name] for b in chain] for chain in chains.values()]
        self.layers: list[tuple[str, list[int], int | None]] = []
        for idx in self.streams:
            for name, ks, out in layers(graph, [self.blocks[k] for k in idx]):
                self.layers.append((name, [idx[k] for k in ks], out))
        watch = tuple(out for _, _, out in self.layers if out is not None)
        self.instrument = Instrument(graph, self.blocks, watch)
        self.names = [b.name for b in self.blocks]
        self.params: dict[str, list[str]] = {
            b.name: list(dict.fromkeys(p for i in b.branch for p in graph.nodes[i].params))
            for b in self.blocks}


